"""Finite mixtures of full-covariance Gaussians with exact density and sampling."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from probgen.core import InvalidInput
from probgen.distributions.base import Distribution

__all__ = ["GaussianMixture", "isotropic_covariances"]

_LOG_2PI = math.log(2.0 * math.pi)


def isotropic_covariances(means: Tensor, std: float | Tensor) -> Tensor:
    """Covariances σ_k² I for K components of dimension D: std scalar or (K,) -> (K, D, D)."""
    k, d = means.shape
    std = torch.as_tensor(std, dtype=means.dtype, device=means.device).expand(k)
    eye = torch.eye(d, dtype=means.dtype, device=means.device)
    return std.square()[:, None, None] * eye


class GaussianMixture(Distribution):
    """Mixture of K Gaussians, p(x) = Σ_k π_k N(x; μ_k, Σ_k), events of shape (D,).

    ``log_prob`` is exact by log-sum-exp over the components; ``sample`` draws
    the component k ~ Cat(π) and then x = μ_k + L_k ε with Σ_k = L_k L_kᵀ.
    The mode attributes ``means`` (K, D) and ``component_stds`` (K,) serve
    mode-coverage metrics (e.g. Srivastava et al., 2017, VEEGAN; Lin et al.,
    2018, PacGAN: a sample is "high quality" within 3 σ_k of its nearest μ_k).

    Args:
        weights: π, shape (K,), non-negative, normalised here to sum to 1.
        means: μ, shape (K, D).
        covariances: Σ, shape (K, D, D), each symmetric positive definite.
    """

    def __init__(self, weights: Tensor, means: Tensor, covariances: Tensor) -> None:
        for name, value in (("weights", weights), ("means", means), ("covariances", covariances)):
            if not isinstance(value, Tensor) or not value.is_floating_point():
                raise InvalidInput(f"{name}: expected a floating-point torch.Tensor")
            if not torch.isfinite(value).all():
                raise InvalidInput(f"{name}: contains non-finite values (NaN or inf)")
        if means.dim() != 2:
            raise InvalidInput(f"means: expected shape (K, D), got {tuple(means.shape)}")
        k, d = means.shape
        if tuple(weights.shape) != (k,):
            raise InvalidInput(f"weights: expected shape ({k},), got {tuple(weights.shape)}")
        if tuple(covariances.shape) != (k, d, d):
            raise InvalidInput(
                f"covariances: expected shape ({k}, {d}, {d}), got {tuple(covariances.shape)}"
            )
        if (weights < 0).any() or weights.sum() <= 0:
            raise InvalidInput("weights: expected non-negative values with a positive sum")
        weights, means, covariances = (t.detach().to(means) for t in (weights, means, covariances))
        scale_tril, info = torch.linalg.cholesky_ex(covariances)
        if (info != 0).any():
            raise InvalidInput("covariances: expected positive definite matrices")
        super().__init__(event_shape=(d,))
        self.register_buffer("log_weights", (weights / weights.sum()).log())
        self.register_buffer("means", means.clone())
        self.register_buffer("scale_tril", scale_tril)

    @classmethod
    def isotropic(cls, weights: Tensor, means: Tensor, std: float | Tensor) -> GaussianMixture:
        """Mixture of isotropic components N(μ_k, σ_k² I); ``std`` is a scalar or (K,)."""
        return cls(weights, means, isotropic_covariances(means, std))

    @property
    def weights(self) -> Tensor:
        """π, shape (K,)."""
        return self.log_weights.exp()

    @property
    def covariances(self) -> Tensor:
        """Σ_k = L_k L_kᵀ, shape (K, D, D)."""
        return self.scale_tril @ self.scale_tril.mT

    @property
    def component_stds(self) -> Tensor:
        """Largest standard deviation of each component, √λ_max(Σ_k), shape (K,).

        Equal to σ_k for isotropic components.
        """
        return torch.linalg.eigvalsh(self.covariances)[:, -1].sqrt()

    def component_log_probs(self, x: Tensor) -> Tensor:
        """log N(x_b; μ_k, Σ_k) for every example and component, shape (B, K)."""
        x = self._check(x)
        diff = (x[None] - self.means[:, None]).mT  # (K, D, B)
        z = torch.linalg.solve_triangular(self.scale_tril, diff, upper=False)  # (K, D, B)
        half_log_det = self.scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # (K,)
        log_norm = half_log_det + 0.5 * self.event_shape[0] * _LOG_2PI  # (K,)
        return (-0.5 * z.square().sum(1) - log_norm[:, None]).mT

    def log_prob(self, x: Tensor) -> Tensor:
        return torch.logsumexp(self.component_log_probs(x) + self.log_weights, dim=1)

    def responsibilities(self, x: Tensor) -> Tensor:
        """Posterior p(k | x_b) = π_k N(x_b; μ_k, Σ_k) / p(x_b), shape (B, K)."""
        return torch.softmax(self.component_log_probs(x) + self.log_weights, dim=1)

    def sample_with_components(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Samples (n, D) together with the index (n,) of the component that drew each."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = self._randn((n, *self.event_shape), generator)
        x = self.means[k] + (self.scale_tril[k] @ eps[..., None])[..., 0]
        return x, k

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.sample_with_components(n, generator)[0]
