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

    def draw(
        self, split: str, batch_size: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor | None]:
        """A batch and its conditions: ``(x, c)``, c None for unconditional data.

        For data with a condition (``spec.condition``) the rows of c belong to
        the rows of x: (B,) labels or (B, *shape) vectors. The engine trains on
        these pairs; unconditional data sets need not override this.
        """
        return self.batch(split, batch_size, generator), None

    def conditions(self, split: str) -> Tensor | None:
        """The conditions of the rows of ``split(split)``, or None for unconditional data."""
        self._check_split(split)
        return None

    @property
    def train_size(self) -> int | None:
        """Examples in the training split; None when every batch is fresh (infinite data)."""
        return len(self.split("train"))

    def fitting_sample(self, n: int = 10_000, seed: int = 0) -> tuple[Tensor, Tensor | None]:
        """Training pairs (x, c) to fit a data map on: the whole training split when it
        is finite, else ``n`` fresh draws with a generator seeded by ``seed``."""
        if self.train_size is not None:
            return self.split("train"), self.conditions("train")
        return self.draw("train", n, torch.Generator().manual_seed(seed))

    @staticmethod
    def _check_split(split: str) -> None:
        if split not in SPLITS:
            raise InvalidInput(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")


class ArrayDataset(Dataset):
    """A data set held in memory as three tensors; batches are drawn with replacement.

    With ``conditions`` (one tensor per split, rows paired with the examples)
    and ``spec.condition`` set, it is a data set of pairs (x, c).
    """

    def __init__(
        self,
        train: Tensor,
        validation: Tensor,
        test: Tensor,
        spec: DataSpec,
        conditions: tuple[Tensor, Tensor, Tensor] | None = None,
    ) -> None:
        self.spec = spec
        self._splits = {"train": train, "validation": validation, "test": test}
        for name, t in self._splits.items():
            if tuple(t.shape[1:]) != spec.event_shape:
                raise InvalidInput(
                    f"{name} split: expected events of shape {spec.event_shape}, "
                    f"got {tuple(t.shape[1:])}"
                )
        if (conditions is None) != (spec.condition is None):
            raise InvalidInput(
                "ArrayDataset: give conditions exactly when spec.condition describes them"
            )
        self._conditions: dict[str, Tensor] = {}
        if conditions is not None and spec.condition is not None:
            for name, c in zip(SPLITS, conditions, strict=True):
                rows = len(self._splits[name])
                self._conditions[name] = spec.condition.check(c, rows, name=f"{name} conditions")

    def draw(
        self, split: str, batch_size: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor | None]:
        c = self._conditions.get(split)
        if c is None:
            return self.batch(split, batch_size, generator), None
        data = self.split(split)
        idx = torch.randint(len(data), (batch_size,), generator=generator)
        return data[idx], c[idx]

    def batch(self, split: str, batch_size: int, generator: torch.Generator) -> Tensor:
        data = self.split(split)
        return data[torch.randint(len(data), (batch_size,), generator=generator)]

    def split(self, split: str) -> Tensor:
        self._check_split(split)
        return self._splits[split]

    def conditions(self, split: str) -> Tensor | None:
        self._check_split(split)
        return self._conditions.get(split)
