"""The exact denoiser of Gaussian data, the ground truth every sampler and likelihood is checked on.

For data x_0 ~ N(μ, Σ) every marginal of the forward process is Gaussian,

    p_t = N(α_t μ, C_t),   C_t = α_t² Σ + σ_t² I,   ∇ log p_t(x) = −C_t⁻¹ (x − α_t μ),

so the score, E[x_0 | x_t] (by Tweedie's formula) and the noise prediction
are known in closed form. With Σ = U diag(λ) Uᵀ, C_t⁻¹ = U diag(1/(α_t² λ + σ_t²)) Uᵀ,
so one eigendecomposition serves every time t.

Reference: Song et al. (2021), "Score-based generative modeling through SDEs";
Efron (2011), "Tweedie's formula and selection bias".
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from probgen.core import InvalidInput
from probgen.models.diffusion.parametrizations import Denoiser, Prediction
from probgen.models.diffusion.processes import ForwardProcess

__all__ = ["ExactGaussianDenoiser"]


class ExactGaussianDenoiser(Denoiser):
    """The exact score of p_t for data N(μ, Σ) in D dimensions; events (D,).

    Args:
        process: the forward process.
        mean: μ, shape (D,).
        covariance: Σ, symmetric positive definite, shape (D, D).
    """

    def __init__(self, process: ForwardProcess, mean: Tensor, covariance: Tensor) -> None:
        super().__init__(process)
        d = mean.shape[-1]
        if mean.dim() != 1 or tuple(covariance.shape) != (d, d):
            raise InvalidInput(
                f"expected mean (D,) and covariance (D, D), got {tuple(mean.shape)} "
                f"and {tuple(covariance.shape)}"
            )
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance.detach())
        if not (eigenvalues > 0).all():
            raise InvalidInput("covariance: expected a positive definite matrix")
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("covariance", covariance.detach().clone())
        self.register_buffer("eigenvalues", eigenvalues)  # λ (D,)
        self.register_buffer("eigenvectors", eigenvectors)  # U (D, D)

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean α_t μ (B, D) and covariance C_t = α_t² Σ + σ_t² I (B, D, D) at times t (B,)."""
        alpha, sigma = self.process.alpha_sigma(t)
        eye = torch.eye(len(self.mean), dtype=self.mean.dtype, device=self.mean.device)
        cov = alpha[:, None, None] ** 2 * self.covariance + sigma[:, None, None] ** 2 * eye
        return alpha[:, None] * self.mean, cov

    def _whiten(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """(Uᵀ(x − α_t μ) (B, D), the eigenvalues α_t² λ + σ_t² of C_t (B, D))."""
        alpha, sigma = self.process.alpha_sigma(t)
        rotated = (x - alpha[:, None] * self.mean) @ self.eigenvectors
        return rotated, alpha[:, None] ** 2 * self.eigenvalues + sigma[:, None] ** 2

    def log_prob(self, x: Tensor, t: Tensor) -> Tensor:
        """log p_t(x) = log N(x; α_t μ, C_t) for x (B, D), t (B,) -> (B,)."""
        rotated, variances = self._whiten(x, t)
        return -0.5 * (
            (rotated.square() / variances).sum(-1)
            + variances.log().sum(-1)
            + x.shape[-1] * math.log(2 * math.pi)
        )

    def forward(self, x: Tensor, t: Tensor) -> Prediction:
        rotated, variances = self._whiten(x, t.expand(x.shape[0]))
        score = -(rotated / variances) @ self.eigenvectors.mT  # (B, D)
        return self.from_score(x, t, score)
