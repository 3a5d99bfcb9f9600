"""A data set whose training split is the union of several of its splits.

After early stopping has chosen a number of steps on the validation split,
``probgen.train.refit`` trains a fresh model on training and validation
together: a model fitted to a few hundred points gains from every point.
"""

from __future__ import annotations

import torch
from torch import Tensor

from probgen.core import InvalidInput
from probgen.data.base import Dataset

__all__ = ["MergedTraining"]


class MergedTraining(Dataset):
    """``dataset`` with ``split("train")`` = the concatenation of ``splits`` (train first).

    A batch of the merged split takes k ~ Binomial(B, n_s / N) rows from each
    split s (multinomially, N = Σ n_s) and draws them with that split's own
    ``draw``, so a data set's batch transform (dynamic binarisation, fresh
    samples) is kept; rows are then shuffled. Every other split, the spec, the
    truth, the feature net and any other attribute are the data set's own.

    Raises ``InvalidInput`` for an unknown split, a list without "train", or
    an infinite training split (nothing to merge).
    """

    def __init__(self, dataset: Dataset, splits: tuple[str, ...] = ("train", "validation")) -> None:
        if not splits or splits[0] != "train" or len(set(splits)) != len(splits):
            raise InvalidInput(f"train.splits: expected 'train' first, then others, got {splits!r}")
        for s in splits:
            self._check_split(s)
        if dataset.train_size is None:
            raise InvalidInput("train.splits: the training split is infinite; nothing to merge")
        self.dataset, self.splits = dataset, tuple(splits)
        self.spec, self.truth = dataset.spec, dataset.truth
        self.categorical, self.feature_net = dataset.categorical, dataset.feature_net
        self._sizes = torch.tensor([float(len(dataset.split(s))) for s in self.splits])

    def __getattr__(self, name: str) -> object:
        """Everything else (a text corpus's ``encode`` / ``decode``, …) is the data set's own."""
        if name == "dataset":  # not yet set (unpickling, copying): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def split(self, split: str) -> Tensor:
        if split != "train":
            return self.dataset.split(split)
        return torch.cat([self.dataset.split(s) for s in self.splits])

    def conditions(self, split: str) -> Tensor | None:
        if split != "train":
            return self.dataset.conditions(split)
        parts = [self.dataset.conditions(s) for s in self.splits]
        return None if parts[0] is None else torch.cat(parts)  # type: ignore[arg-type]

    @property
    def train_size(self) -> int:
        return int(self._sizes.sum())

    def draw(
        self, split: str, batch_size: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor | None]:
        if split != "train":
            return self.dataset.draw(split, batch_size, generator)
        which = torch.multinomial(self._sizes, batch_size, replacement=True, generator=generator)
        counts = torch.bincount(which, minlength=len(self.splits)).tolist()
        sizes = zip(self.splits, counts, strict=True)
        pairs = [self.dataset.draw(s, k, generator) for s, k in sizes if k]
        order = torch.randperm(batch_size, generator=generator)
        x = torch.cat([p[0] for p in pairs])[order]
        c = None if pairs[0][1] is None else torch.cat([p[1] for p in pairs])[order]  # type: ignore[misc]
        return x, c

    def batch(self, split: str, batch_size: int, generator: torch.Generator) -> Tensor:
        return self.draw(split, batch_size, generator)[0]
