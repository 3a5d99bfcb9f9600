"""A learned conditional base distribution for flows: N(μ(c), diag σ(c)²).

Glow's class-conditional prior (Kingma & Dhariwal 2018) makes the latent
mean and log-scale a learned linear function of the one-hot class: per class
a learned mean and log-scale of every latent entry.
The same linear map of a continuous condition's features gives a Gaussian
base whose location and scale move with c.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from probgen.conditions import ConditionSpec
from probgen.core import GenerativeModel, Likelihood

__all__ = ["ConditionalNormal"]

_LOG_2PI = math.log(2.0 * math.pi)


class ConditionalNormal(GenerativeModel):
    """p(z | c) = N(z; μ(c), diag σ(c)²) with (μ(c), log σ(c)) = W φ(c) + b.

    φ(c) (B, w) are the condition's features (``ConditionSpec.features``: the
    one-hot class, so W holds one mean and one log-scale per class and entry,
    or the flattened vector). W and b start at zero, so the base starts as
    N(0, I) for every c. With D = prod(event_shape),

        log p(z | c) = -½ Σ_d ((z_d − μ_d(c)) / σ_d(c))² − Σ_d log σ_d(c) − (D/2) log 2π.

    Args:
        event_shape: shape of one latent z.
        condition: what c is.

    Inputs z (B, *event_shape) and c (B,) labels or (B, *shape) vectors.

    Reference: Kingma & Dhariwal (2018), "Glow: Generative Flow with
    Invertible 1×1 Convolutions".
    """

    likelihood = Likelihood.EXACT

    def __init__(self, event_shape: tuple[int, ...], condition: ConditionSpec) -> None:
        super().__init__(event_shape)
        self.condition_spec = condition
        self.dim = math.prod(self.event_shape)
        self.linear = nn.Linear(condition.width, 2 * self.dim)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def loc_log_scale(self, c: Tensor) -> tuple[Tensor, Tensor]:
        """μ(c) and log σ(c), each (B, *event_shape), for checked conditions c."""
        h = self.linear(self.condition_spec.features(c, self.linear.weight.dtype))  # (B, 2D)
        loc, log_scale = h.reshape(len(c), 2, *self.event_shape).unbind(1)
        return loc, log_scale

    def log_prob(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """log p(z | c) per example: z (B, *event_shape) -> (B,)."""
        x = self._check(x)
        loc, log_scale = self.loc_log_scale(self._condition(condition, len(x)))
        z = (x - loc) * torch.exp(-log_scale)
        return (-0.5 * z.square() - log_scale).flatten(1).sum(1) - 0.5 * self.dim * _LOG_2PI

    def sample(
        self, n: int, condition: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """z = μ(c) + σ(c) ⊙ ε, ε ~ N(0, I): (n, *event_shape); one c for all n, or n of them."""
        loc, log_scale = self.loc_log_scale(self._condition(condition, n, expand=True))
        eps = torch.randn(loc.shape, generator=generator, dtype=loc.dtype, device=loc.device)
        return loc + log_scale.exp() * eps
