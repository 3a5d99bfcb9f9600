"""Two known 1-D Gaussians with exact densities and a quadrature rule over their support."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

from probgen.distributions import DiagonalGaussian


@dataclass
class GaussianPair:
    """P = N(0, 1) and Q = N(0.5, 1.3²) on events of shape (1,); Q has the heavier tails,
    so every f-divergence and its Monte Carlo variance is finite."""

    p: DiagonalGaussian
    q: DiagonalGaussian
    grid: Tensor  # (K, 1), fine enough for the trapezoid rule to be exact to ~1e-10

    def quad(self, integrand: Callable[[Tensor, Tensor, Tensor], Tensor]) -> Tensor:
        """∫ integrand(x, p(x), q(x)) dx by the trapezoid rule on ``grid``."""
        p, q = self.p.log_prob(self.grid).exp(), self.q.log_prob(self.grid).exp()
        return torch.trapezoid(integrand(self.grid[:, 0], p, q), self.grid[:, 0])


@pytest.fixture
def gaussians() -> GaussianPair:
    return GaussianPair(
        p=DiagonalGaussian(torch.tensor([0.0]), torch.tensor([1.0])),
        q=DiagonalGaussian(torch.tensor([0.5]), torch.tensor([1.3])),
        grid=torch.linspace(-25.0, 25.0, 200_001)[:, None],
    )
