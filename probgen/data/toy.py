"""Data sets drawn from a known distribution (the 2-D toy shapes), so the truth is exact."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from probgen.core import DataSpec, GenerativeModel, InvalidInput
from probgen.data.sampled import SampledDataset, split_seed
from probgen.distributions.conditional import (
    ConditionalDistribution,
    ConditionalMixture,
    RotatedShape,
)
from probgen.distributions.mixture import GaussianMixture
from probgen.distributions.shapes import make_shape
from probgen.models.standardize import Standardized

__all__ = ["TOY_CONDITIONS", "ToyDataset", "split_seed"]

TOY_CONDITIONS = ("component", "rotation")
"""The conditions a toy shape can be paired with (``ToyDataset(condition=...)``)."""


def _conditioned(truth: GenerativeModel, condition: str) -> ConditionalDistribution:
    """The conditional law of the shape ``truth`` given ``condition`` (one of TOY_CONDITIONS)."""
    if condition == "component":
        if not isinstance(truth, GaussianMixture):
            raise InvalidInput(
                f"condition='component' needs a Gaussian mixture (8gaussians, 25gaussians), "
                f"got {type(truth).__name__}"
            )
        return ConditionalMixture(truth)
    if condition == "rotation":
        return RotatedShape(truth)
    raise InvalidInput(
        f"unknown condition {condition!r}; choose one of: {', '.join(TOY_CONDITIONS)}"
    )


class ToyDataset(SampledDataset):
    """Samples of an analytic distribution, e.g. one of the 2-D toy shapes.

    ``truth`` is the distribution itself: ``make_shape(shape, **shape_options)``
    when ``shape`` is a name (see ``probgen.distributions.SHAPES``), or the
    given model with exact ``sample(n, generator=...)``. ``spec`` is
    ``DataSpec(truth.event_shape)`` (continuous; ``(2,)`` for the shapes).
    With ``scale`` s or ``shift`` m the data are m + s·y, y ~ the shape, and
    ``truth`` is that law exactly (log-density minus D log s): the shapes in
    any units, to check that no model depends on them.

    With ``condition`` (or a ``ConditionalDistribution`` given as ``shape``,
    whose ``sample_joint`` draws the pairs) the data are pairs (x, c) and ``truth`` is the exact
    conditional law p(x | c) (a ``ConditionalDistribution``, whose
    ``log_prob(x)`` without a condition is the shape's own density):

        "component"   c = k ~ π, x ~ N(μ_k, Σ_k), for the Gaussian mixtures
                      (``ConditionalMixture``; ``spec.condition`` K classes)
        "rotation"    c = θ ~ U[0, 2π), x = R(θ) y, y ~ the shape
                      (``RotatedShape``; ``spec.condition`` a vector (1,))

    Training data: with ``n_train=None`` every ``batch("train", …)`` is a
    fresh exact sample drawn with the given generator (infinite data, no
    overfitting); with an int, a fixed set of ``n_train`` samples. The
    validation and test sets are fixed, ``n_validation`` and ``n_test``
    samples. Each fixed set is drawn once, on first use, with its own seed
    ``split_seed(seed, split)``; batches of fixed sets are drawn uniformly
    with replacement (see ``SampledDataset``).
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
        condition: str | None = None,
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
        if condition is not None:
            truth = _conditioned(truth, condition)
        self._joint = truth if isinstance(truth, ConditionalDistribution) else None
        if not (math.isfinite(scale) and scale > 0 and math.isfinite(shift)):
            raise InvalidInput(f"expected a finite scale > 0 and shift, got {scale}, {shift}")
        if scale != 1.0 or shift != 0.0:  # x = shift + scale · y, y ~ the shape: exact density
            like = torch.ones(truth.event_shape)
            truth = Standardized(truth, shift * like, scale * like)
        self.truth = truth
        self.spec = DataSpec(tuple(truth.event_shape), condition=truth.condition_spec)
        sizes = {"train": n_train, "validation": n_validation, "test": n_test}
        super().__init__(sizes, seed, truth.device)

    def _sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor | None]:
        if self._joint is None:
            return self.truth.sample(n, generator=generator), None
        x, c = self._joint.sample_joint(n, generator)
        if isinstance(self.truth, Standardized):
            x = self.truth.from_inner(x)
        return x, c
