"""The exact posterior of a Gaussian mean: ground truth for every weight posterior.

Model: x_n ~ N(θ, σ² I) in D dimensions, prior θ ~ N(0, s² I). Then

    p(θ | x_1..N) = N(μ_N, σ_N² I),   1/σ_N² = 1/s² + N/σ²,   μ_N = σ_N² Σ_n x_n / σ²,
    p(x | x_1..N) = N(μ_N, (σ² + σ_N²) I),

and, with d = x - μ_N, the epistemic uncertainty of log p_θ(x) = Σ_d -(x_d - θ_d)²/(2σ²) + c is

    Var_θ[log p_θ(x)] = Σ_d (d_d² σ_N² + σ_N⁴ / 2) / σ⁴,

which grows with the distance from the posterior mean.

Reference: Bishop (2006), Pattern Recognition and Machine Learning, §2.3.6.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from probgen.core import InvalidInput
from probgen.tensors import flatten_events

__all__ = ["GaussianMeanPosterior"]


@dataclass(frozen=True)
class GaussianMeanPosterior:
    """p(θ | data) = N(mean, var I) for a Gaussian with known noise ``noise_std`` (see module).

    Attributes:
        mean: μ_N, shape (D,).
        var: σ_N², a float.
        noise_std: σ.
    """

    mean: Tensor
    var: float
    noise_std: float

    @classmethod
    def from_data(cls, x: Tensor, noise_std: float, prior_std: float) -> GaussianMeanPosterior:
        """Bayes' theorem for the data ``x`` (N, *event_shape), flattened to (N, D)."""
        if x.dim() < 1 or len(x) < 1:
            raise InvalidInput(f"x: expected a non-empty batch (N, …), got shape {tuple(x.shape)}")
        x = flatten_events(x)
        var = 1.0 / (1.0 / prior_std**2 + len(x) / noise_std**2)
        return cls(mean=var * x.sum(dim=0) / noise_std**2, var=var, noise_std=noise_std)

    def predictive_log_prob(self, x: Tensor) -> Tensor:
        """log N(x; μ_N, (σ² + σ_N²) I) for x (B, D), shape (B,)."""
        v = self.noise_std**2 + self.var
        d = flatten_events(x) - self.mean
        return -0.5 * (d.square().sum(dim=1) / v + d.shape[1] * math.log(2 * math.pi * v))

    def log_prob_variance(self, x: Tensor) -> Tensor:
        """Var_{θ~posterior}[log p_θ(x)] for x (B, D), shape (B,)."""
        d = flatten_events(x) - self.mean
        per_dim = d.square() * self.var + 0.5 * self.var**2
        return per_dim.sum(dim=1) / self.noise_std**4
