"""Data sets drawn from a known distribution (the 2-D toy shapes), so the truth is exact."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from probgen.core import DataSpec, GenerativeModel, InvalidInput
from probgen.data.base import SPLITS, Dataset
from probgen.distributions.shapes import make_shape
from probgen.models.standardize import Standardized

__all__ = ["ToyDataset", "split_seed"]


def split_seed(seed: int, split: str) -> int:
    """A seed for ``split`` derived from ``seed``, independent across splits and seeds.

    Uses NumPy's ``SeedSequence((seed, i))``, ``i`` the index of the split,
    so the training, validation and test draws never share a stream.
    """
    state = np.random.SeedSequence((seed, SPLITS.index(split))).generate_state(1, np.uint64)
    return int(state[0]) >> 1  # torch seeds are signed 64-bit


class ToyDataset(Dataset):
    """Samples of an analytic distribution, e.g. one of the 2-D toy shapes.

    ``truth`` is the distribution itself: ``make_shape(shape, **shape_options)``
    when ``shape`` is a name (see ``probgen.distributions.SHAPES``), or the
    given model with exact ``sample(n, generator=...)``. ``spec`` is
    ``DataSpec(truth.event_shape)`` (continuous; ``(2,)`` for the shapes).
    With ``scale`` s or ``shift`` m the data are m + s·y, y ~ the shape, and
    ``truth`` is that law exactly (log-density minus D log s): the shapes in
    any units, to check that no model depends on them.

    Training data: with ``n_train=None`` every ``batch("train", …)`` is a
    fresh exact sample drawn with the given generator (infinite data, no
    overfitting); with an int, a fixed set of ``n_train`` samples. The
    validation and test sets are fixed, ``n_validation`` and ``n_test``
    samples. Each fixed set is drawn once, on first use, with its own seed
    ``split_seed(seed, split)``; batches of fixed sets are drawn uniformly
    with replacement.
    """

    def __init__(
        self,
        shape: str | GenerativeModel,
        n_train: int | None = None,
        n_validation: int = 10_000,
        n_test: int = 10_000,
        seed: int = 0,
        scale: float = 1.0,
        shift: float = 0.0,
        **shape_options: Any,
    ) -> None:
        if isinstance(shape, str):
            truth = make_shape(shape, **shape_options)
        elif shape_options:
            raise InvalidInput(
                f"shape options {sorted(shape_options)} apply only to a shape given by name"
            )
        else:
            truth = shape
        if not (math.isfinite(scale) and scale > 0 and math.isfinite(shift)):
            raise InvalidInput(f"expected a finite scale > 0 and shift, got {scale}, {shift}")
        if scale != 1.0 or shift != 0.0:  # x = shift + scale · y, y ~ the shape: exact density
            like = torch.ones(truth.event_shape)
            truth = Standardized(truth, shift * like, scale * like)
        self.truth = truth
        sizes = {"train": n_train, "validation": n_validation, "test": n_test}
        for name, n in sizes.items():
            if n is not None and n < 1:
                raise InvalidInput(f"n_{name} must be >= 1, got {n}")
        self.spec = DataSpec(tuple(self.truth.event_shape))
        self.seed = seed
        self._sizes = sizes
        self._fixed: dict[str, Tensor] = {}

    @property
    def train_size(self) -> int | None:
        """``n_train``: None for fresh exact samples in every batch."""
        return self._sizes["train"]

    def batch(self, split: str, batch_size: int, generator: torch.Generator) -> Tensor:
        """A batch ``(batch_size, *event_shape)``: fresh samples, or rows of a fixed set."""
        self._check_split(split)
        if self._sizes[split] is None:
            with torch.no_grad():
                return self.truth.sample(batch_size, generator=generator)
        data = self.split(split)
        return data[torch.randint(len(data), (batch_size,), generator=generator)]

    def split(self, split: str) -> Tensor:
        """The fixed set of ``split``, ``(N, *event_shape)``; an infinite train split raises."""
        self._check_split(split)
        n = self._sizes[split]
        if n is None:
            raise InvalidInput(
                "the training split is infinite (n_train=None): draw batches, or pass "
                "n_train to fix a training set"
            )
        if split not in self._fixed:
            generator = torch.Generator(self.truth.device).manual_seed(split_seed(self.seed, split))
            with torch.no_grad():
                self._fixed[split] = self.truth.sample(n, generator=generator)
        return self._fixed[split]
