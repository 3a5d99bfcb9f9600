"""Continuous models on discrete data through uniform dequantization, done once.

Data with K levels are floats holding integers x ∈ {0, …, K-1}^D (docs/data.md).
A density p on [0, 1)^D defines a probability mass on the bins,

    P(x) = ∫_{[0,1)^D} p((x + u)/K) K^{-D} du,

and by Jensen's inequality, with y = (x + u)/K and u ~ U[0, 1)^D,

    log P(x) ≥ E_u[ log p(y) ] − D log K,

with equality when p is constant on every bin. ``Dequantized`` wraps any
density model p so that it becomes a model of integer data: it trains p on
y, scores x by one draw of log p(y) − D log K (an unbiased estimate of that
lower bound) and samples x = min(⌊K y⌋, K − 1) with y ~ p. ``build_model``
wraps exactly the models that do not define probabilities over levels
themselves (``GenerativeModel.handles_levels``), so no family repeats this.

References: Theis, van den Oord & Bethge (2016), "A note on the evaluation
of generative models"; Uria, Murray & Larochelle (2013), "RNADE: the
real-valued neural autoregressive density-estimator"; Ho, Chen, Srinivas,
Duan & Abbeel (2019), "Flow++: improving flow-based generative models with
variational dequantization and architecture design".
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from probgen.core import GenerativeModel, InvalidInput, Likelihood, call_log_prob
from probgen.data.dequantize import uniform_dequantize
from probgen.models.wrapper import DataWrapper

__all__ = ["Dequantized"]

_BOUND_OF = {
    Likelihood.EXACT: Likelihood.BOUND,
    Likelihood.ESTIMATE: Likelihood.BOUND,
    Likelihood.BOUND: Likelihood.BOUND,
    Likelihood.UNNORMALIZED: Likelihood.UNNORMALIZED,
    Likelihood.NONE: Likelihood.NONE,
}
"""What log p(y) − D log K is, given what the inner log p(y) is."""


class Dequantized(DataWrapper):
    """A density model p on [0, 1)^D turned into a model of integers x ∈ {0, …, K-1}^D.

    With y = (x + u)/K, u ~ U[0, 1)^D (``probgen.data.dequantize.uniform_dequantize``):

        log_prob(x) = log p(y) − D log K      one draw; E_u[·] ≤ log P(x)
        loss(x, player) = inner loss(y, player)
        sample(n) = min(⌊K y⌋, K − 1),  y ~ p

    ``likelihood`` is BOUND when the inner one is EXACT, ESTIMATE or BOUND
    (a single draw of u is an unbiased estimate of a lower bound on
    log P(x)); UNNORMALIZED and NONE stay as they are. The players and their
    parameters are the inner model's. Inputs (B, *event_shape) must be
    floating-point tensors holding integers in {0, …, K-1}; anything else
    raises ``InvalidInput``.

    Args:
        model: the density model of y, a ``GenerativeModel`` with
            ``handles_levels`` False, over the data's event shape.
        levels: K ≥ 2.

    Attributes:
        model: the inner density model.
        levels: K.
        log_volume: D log K, subtracted from log p(y).
    """

    def __init__(self, model: GenerativeModel, levels: int) -> None:
        super().__init__(model)
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
            raise InvalidInput(f"Dequantized: expected levels an integer >= 2, got {levels!r}")
        if model.handles_levels:
            raise InvalidInput(
                f"Dequantized: {type(model).__name__} already defines probabilities over "
                "integer data (handles_levels is True); use it without dequantization"
            )
        self.levels = levels
        self.log_volume = math.prod(self.event_shape) * math.log(levels)

    @property  # type: ignore[override]
    def likelihood(self) -> Likelihood:
        """BOUND for an inner density (exact, estimated or bounded); else the inner label."""
        return _BOUND_OF[self.model.likelihood]

    @property
    def handles_levels(self) -> bool:
        """Always: this model defines (a bound on) a probability mass over the levels."""
        return True

    def dequantize(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """y = (x + u)/K ∈ [0, 1)^D for validated levels x (B, *event_shape); same shape."""
        return uniform_dequantize(self._check_levels(x), self.levels, generator)

    def log_prob(
        self,
        x: Tensor,
        condition: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """One draw of log p(y) − D log K, y = (x + u)/K: (B, *event_shape) -> (B,), nats.

        u, and any draw of the inner ``log_prob``, come from ``generator``.
        """
        y = self.dequantize(x, generator)
        return call_log_prob(self.model, y, generator, condition) - self.log_volume

    def loss(self, x: Tensor, player: str = "model", condition: Tensor | None = None) -> Tensor:
        """The inner model's loss for ``player`` on y = (x + u)/K, x (B, *event_shape)."""
        self._check_player(player)
        return self.model.loss(self.dequantize(x), player, condition=condition)

    def sample(self, n: int, condition: Tensor | None = None, **options: Any) -> Tensor:
        """min(⌊K y⌋, K − 1) clamped at 0, y = inner ``sample(n, **options)``; (n, *event_shape).

        Floats holding integers in {0, …, K-1}, the data convention.
        """
        with torch.no_grad():
            y = self.model.sample(n, condition=condition, **options)
        return (y * self.levels).floor().clamp(0, self.levels - 1)

    def _check_levels(self, x: Any) -> Tensor:
        x = self._check(x)
        whole = torch.equal(x, x.round())
        if not (whole and (x >= 0).all() and (x <= self.levels - 1).all()):
            raise InvalidInput(
                f"Dequantized x: expected integer values in {{0, …, {self.levels - 1}}}, got "
                f"values in [{x.min().item():g}, {x.max().item():g}]"
                + ("" if whole else " with non-integers")
            )
        return x
