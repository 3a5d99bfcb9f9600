"""The data-set interface the engine, the evaluators and the CLI rely on."""

from __future__ import annotations

import abc

import torch
from torch import Tensor

from probgen.core import DataSpec, GenerativeModel, InvalidInput

__all__ = ["SPLITS", "ArrayDataset", "Dataset"]

SPLITS = ("train", "validation", "test")


class Dataset(abc.ABC):
    """A data set with train / validation / test splits.

    Attributes:
        spec: event shape and number of levels (``None`` = continuous).
        truth: the exact data distribution when it is known (toy shapes),
            else ``None``; lets evaluators compute true entropies and KLs.
        categorical: whether the levels are unordered labels (token ids), so
            that distances between values mean nothing; False for ordered
            levels (pixel intensities) and continuous data. The evaluators
            leave out raw-value sample metrics on categorical data.
        feature_net: the shipped feature network trained on this data (a key
            of ``probgen.evaluate.features.SHIPPED``), or ``None``: the
            evaluators then pick one by event shape and say it was not trained
            on this data.
    """

    spec: DataSpec
    truth: GenerativeModel | None = None
    categorical: bool = False
    feature_net: str | None = None

    @abc.abstractmethod
    def batch(self, split: str, batch_size: int, generator: torch.Generator) -> Tensor:
        """A random batch ``(batch_size, *spec.event_shape)`` drawn with ``generator``."""

    @abc.abstractmethod
    def split(self, split: str) -> Tensor:
        """The whole split as one tensor ``(N, *spec.event_shape)``."""

    @property
    def train_size(self) -> int | None:
        """Examples in the training split; None when every batch is fresh (infinite data)."""
        return len(self.split("train"))

    def fitting_sample(self, n: int = 10_000, seed: int = 0) -> Tensor:
        """Training examples to fit a data map on: the whole training split when it is
        finite, else ``n`` fresh draws with a generator seeded by ``seed``."""
        if self.train_size is not None:
            return self.split("train")
        return self.batch("train", n, torch.Generator().manual_seed(seed))

    @staticmethod
    def _check_split(split: str) -> None:
        if split not in SPLITS:
            raise InvalidInput(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")


class ArrayDataset(Dataset):
    """A data set held in memory as three tensors; batches are drawn with replacement."""

    def __init__(self, train: Tensor, validation: Tensor, test: Tensor, spec: DataSpec) -> None:
        self.spec = spec
        self._splits = {"train": train, "validation": validation, "test": test}
        for name, t in self._splits.items():
            if tuple(t.shape[1:]) != spec.event_shape:
                raise InvalidInput(
                    f"{name} split: expected events of shape {spec.event_shape}, "
                    f"got {tuple(t.shape[1:])}"
                )

    def batch(self, split: str, batch_size: int, generator: torch.Generator) -> Tensor:
        data = self.split(split)
        idx = torch.randint(len(data), (batch_size,), generator=generator)
        return data[idx]

    def split(self, split: str) -> Tensor:
        self._check_split(split)
        return self._splits[split]
