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

    def batch(self, split: str, batch_size: int, generator: torch.Generator) -> Tensor:
        """``batch_size`` examples drawn uniformly with replacement, ``(B, *spec.event_shape)``."""
        self._check_split(split)
        rows = self._draw(self.stored(split), split, batch_size, generator)
        return rows.to(torch.get_default_dtype())

    def _draw(
        self, data: Tensor, split: str, batch_size: int, generator: torch.Generator
    ) -> Tensor:
        """``batch_size`` rows of ``data`` drawn uniformly with replacement."""
        if len(data) == 0:
            raise InvalidInput(
                f"{type(self).__name__}: the {split} split is empty; {self.empty_split_hint}"
            )
        return data[torch.randint(len(data), (batch_size,), generator=generator)]
