"""Integer-valued data sets (pixels in {0, …, K-1}) stored compactly, served as floats.

The library's convention for discrete data: ordinal values (pixel
intensities, binary pixels) are served as floating-point tensors of the
default dtype holding the integers ``0 … K-1`` (``spec.levels = K``), so
that continuous models, dequantization and discrete likelihoods all read the
same batches; a model with a categorical likelihood casts with ``.long()``.
Nominal symbols (text tokens) are served as ``torch.long`` ids instead, see
``probgen.data.text``.
"""

from __future__ import annotations

import abc

import torch
from torch import Tensor

from probgen.core import InvalidInput
from probgen.data.base import Dataset

__all__ = ["QuantizedDataset"]


class QuantizedDataset(Dataset):
    """A data set whose splits are integer tensors ``(N, *event_shape)`` kept in memory.

    Subclasses implement ``stored(split)``, returning the split in its
    compact integer dtype (e.g. uint8); ``split`` and ``batch`` return it as
    floating point in ``torch.get_default_dtype()``.
    """

    @abc.abstractmethod
    def stored(self, split: str) -> Tensor:
        """The split as stored: an integer tensor ``(N, *spec.event_shape)``."""

    def split(self, split: str) -> Tensor:
        """The whole split as floats ``(N, *spec.event_shape)`` holding integers 0…K-1."""
        self._check_split(split)
        return self.stored(split).to(torch.get_default_dtype())

    @property
    def train_size(self) -> int:
        """Examples in the training split (counted without converting them)."""
        return len(self.stored("train"))

    empty_split_hint = "see the data set's options for its split sizes"
    """Appended to the error raised when a batch is asked of an empty split."""

    def labels(self, split: str) -> Tensor:
        """The class of every example of ``split``, ``(N,)`` torch.long (labelled data sets)."""
        raise InvalidInput(f"{type(self).__name__} has no class labels")

    def conditions(self, split: str) -> Tensor | None:
        """``labels(split)`` when the data set is conditional (``spec.condition``), else None."""
        self._check_split(split)
        return None if self.spec.condition is None else self.labels(split)

    def draw(
        self, split: str, batch_size: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor | None]:
        """``batch_size`` examples drawn uniformly with replacement, ``(B, *spec.event_shape)``,
        with the labels of the same rows ``(B,)`` when the data set is conditional."""
        self._check_split(split)
        source = self._source(split)
        if len(source) == 0:
            raise InvalidInput(
                f"{type(self).__name__}: the {split} split is empty; {self.empty_split_hint}"
            )
        idx = torch.randint(len(source), (batch_size,), generator=generator)
        x = self._rows(split, source[idx], generator).to(torch.get_default_dtype())
        return x, None if self.spec.condition is None else self.labels(split)[idx]

    def batch(self, split: str, batch_size: int, generator: torch.Generator) -> Tensor:
        """``batch_size`` examples drawn uniformly with replacement, ``(B, *spec.event_shape)``."""
        return self.draw(split, batch_size, generator)[0]

    def _source(self, split: str) -> Tensor:
        """The stored rows batches of ``split`` are drawn from (``stored`` by default)."""
        return self.stored(split)

    def _rows(self, split: str, rows: Tensor, generator: torch.Generator) -> Tensor:
        """The drawn rows as served (a subclass may redraw them, e.g. binarize); same shape."""
        return rows
