"""Data sets drawn from a sampler: fresh or fixed training data, fixed held-out sets.

The toy shapes and the simulators share this: examples (or pairs (x, c))
come from an exact sampler, the validation and test sets are drawn once
with their own seed, and the training set is either fresh in every batch
(infinite data) or fixed.
"""

from __future__ import annotations

import abc

import numpy as np
import torch
from torch import Tensor

from probgen.core import InvalidInput
from probgen.data.base import SPLITS, Dataset

__all__ = ["SampledDataset", "split_seed"]


def split_seed(seed: int, split: str) -> int:
    """A seed for ``split`` derived from ``seed``, independent across splits and seeds.

    Uses NumPy's ``SeedSequence((seed, i))``, ``i`` the index of the split,
    so the training, validation and test draws never share a stream.
    """
    state = np.random.SeedSequence((seed, SPLITS.index(split))).generate_state(1, np.uint64)
    return int(state[0]) >> 1  # torch seeds are signed 64-bit


class SampledDataset(Dataset, abc.ABC):
    """Examples drawn by ``_sample(n, generator) -> (x, c | None)``, split by split.

    ``sizes[split]`` is the size of the fixed set of ``split``, or None for
    the training split when every batch is fresh. Each fixed set is drawn
    once, on first use, with a generator seeded ``split_seed(seed, split)``
    on ``device``; batches of a fixed set are drawn uniformly with
    replacement, and its conditions (``conditions(split)``) are those of
    the same rows.
    """

    def __init__(
        self, sizes: dict[str, int | None], seed: int, device: torch.device | None = None
    ) -> None:
        for name, n in sizes.items():
            if n is not None and n < 1:
                raise InvalidInput(f"n_{name} must be >= 1, got {n}")
        self.seed = seed
        self._sizes = sizes
        self._device = device if device is not None else torch.device("cpu")
        self._fixed: dict[str, tuple[Tensor, Tensor | None]] = {}

    @abc.abstractmethod
    def _sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor | None]:
        """n fresh examples ``(n, *event_shape)`` and their conditions (None if unconditional)."""

    @property
    def train_size(self) -> int | None:
        """``n_train``: None for fresh exact samples in every batch."""
        return self._sizes["train"]

    def draw(
        self, split: str, batch_size: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor | None]:
        """A batch and its conditions: fresh draws, or rows of the fixed set."""
        self._check_split(split)
        if self._sizes[split] is None:
            with torch.no_grad():
                return self._sample(batch_size, generator)
        x, c = self._fixed_set(split)
        idx = torch.randint(len(x), (batch_size,), generator=generator)
        return x[idx], None if c is None else c[idx]

    def batch(self, split: str, batch_size: int, generator: torch.Generator) -> Tensor:
        """A batch ``(batch_size, *event_shape)``: fresh samples, or rows of a fixed set."""
        return self.draw(split, batch_size, generator)[0]

    def split(self, split: str) -> Tensor:
        """The fixed set of ``split``, ``(N, *event_shape)``; an infinite train split raises."""
        return self._fixed_set(split)[0]

    def conditions(self, split: str) -> Tensor | None:
        """The conditions of the rows of ``split(split)`` (None for unconditional data)."""
        return self._fixed_set(split)[1]

    def _fixed_set(self, split: str) -> tuple[Tensor, Tensor | None]:
        self._check_split(split)
        n = self._sizes[split]
        if n is None:
            raise InvalidInput(
                "the training split is infinite (n_train=None): draw batches, or pass "
                "n_train to fix a training set"
            )
        if split not in self._fixed:
            generator = torch.Generator(self._device).manual_seed(split_seed(self.seed, split))
            with torch.no_grad():
                self._fixed[split] = self._sample(n, generator)
        return self._fixed[split]
