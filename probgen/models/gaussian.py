"""The reference model: a full-covariance Gaussian with a learnable mean and Cholesky factor."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from probgen.core import GenerativeModel, InvalidInput, Likelihood
from probgen.tensors import flatten_events

__all__ = ["GaussianModel"]


class GaussianModel(GenerativeModel):
    """p_θ(x) = N(vec x; μ, L Lᵀ) over events of any shape, flattened to D entries.

    L is lower triangular with a positive diagonal: its strict lower triangle
    is unconstrained and its diagonal is ``exp(log_diag)``. With z = L⁻¹(x - μ),

        log p_θ(x) = -D/2 log 2π - Σ_i log L_ii - ½ ‖z‖².

    Trained by maximum likelihood it converges to the closed-form MLE: the
    sample mean and the biased sample covariance (1/N) Σ_n (x_n - x̄)(x_n - x̄)ᵀ.
    Shapes: ``x`` is (B, *event_shape); ``log_prob`` returns (B,).

    Reference: Bishop (2006), Pattern Recognition and Machine Learning, §2.3.4.
    """

    likelihood = Likelihood.EXACT

    def __init__(self, event_shape: tuple[int, ...]) -> None:
        super().__init__(event_shape)
        d = math.prod(self.event_shape)
        if d < 1:
            raise InvalidInput(
                f"GaussianModel: expected a non-empty event shape, got {event_shape}"
            )
        self.dim = d
        self.loc = nn.Parameter(torch.zeros(d))
        self.tril = nn.Parameter(torch.zeros(d, d))  # only the strict lower triangle is used
        self.log_diag = nn.Parameter(torch.zeros(d))

    @property
    def scale_tril(self) -> Tensor:
        """The Cholesky factor L, (D, D)."""
        return torch.tril(self.tril, diagonal=-1) + torch.diag(self.log_diag.exp())

    @property
    def covariance(self) -> Tensor:
        """Σ = L Lᵀ, (D, D)."""
        scale = self.scale_tril
        return scale @ scale.T

    def log_prob(self, x: Tensor) -> Tensor:
        x = flatten_events(self._check(x))  # (B, D)
        diff = (x - self.loc).unsqueeze(-1)  # (B, D, 1)
        z = torch.linalg.solve_triangular(self.scale_tril, diff, upper=False).squeeze(-1)
        return (
            -0.5 * self.dim * math.log(2 * math.pi)
            - self.log_diag.sum()
            - 0.5 * z.pow(2).sum(dim=-1)
        )

    def sample(self, n: int, generator: torch.Generator | None = None, **options: Any) -> Tensor:
        """x = μ + L ε with ε ~ N(0, I); returns (n, *event_shape)."""
        if options:
            raise InvalidInput(f"GaussianModel.sample: unknown options {sorted(options)}")
        eps = torch.randn(
            n, self.dim, generator=generator, device=self.loc.device, dtype=self.loc.dtype
        )
        return (self.loc + eps @ self.scale_tril.T).reshape(n, *self.event_shape)

    def rsample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """x = μ + L ε, ε ~ N(0, I), differentiable in (μ, L): (n, *event_shape)."""
        return self.sample(n, generator=generator)

    def entropy(self) -> Tensor:
        """H = D/2 (1 + log 2π) + Σ_i log L_ii, a scalar in nats."""
        return 0.5 * self.dim * (1 + math.log(2 * math.pi)) + self.log_diag.sum()
