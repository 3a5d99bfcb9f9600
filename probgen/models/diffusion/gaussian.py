"""The exact denoiser of Gaussian data, the ground truth every sampler and likelihood is checked on.

For data x_0 ~ N(μ, Σ) every marginal of the forward process is Gaussian,

    p_t = N(α_t μ, C_t),   C_t = α_t² Σ + σ_t² I,   ∇ log p_t(x) = −C_t⁻¹ (x − α_t μ),

so the score, E[x_0 | x_t] (by Tweedie's formula), the noise prediction and
the marginal velocity are known in closed form. With Σ = U diag(λ) Uᵀ,
C_t⁻¹ = U diag(1/(α_t² λ + σ_t²)) Uᵀ, so one eigendecomposition serves every time t.

For Gaussian classes x_0 | k ~ N(μ_k, Σ_k) with weights π_k, the marginal is
the mixture p_t = Σ_k π_k N(α_t μ_k, C_{k,t}), the exact noisy classifier is
p(k | x_t) = softmax_k(log π_k + log N(x_t; α_t μ_k, C_{k,t})) and the mixture's
score is Σ_k p(k | x_t) ∇ log p_t(x_t | k) (``ExactGaussianMixtureDenoiser``).
``mixture_posterior`` computes all of it for K components at once (the
reference of ``probgen.models.diffusion.reference`` and the exact mixture
denoiser both read it). ``PerClassDenoiser`` makes a conditional denoiser (condition features of
``guidance.condition_features``) from one exact denoiser per class and one for
the null condition: the ground truth of classifier-free guidance.

Reference: Song et al. (2021), "Score-based generative modeling through SDEs";
Efron (2011), "Tweedie's formula and selection bias".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from probgen.core import InvalidInput
from probgen.models.diffusion.parametrizations import Coefficient, Denoiser, Prediction
from probgen.models.diffusion.processes import ForwardProcess

__all__ = [
    "ExactGaussianDenoiser",
    "ExactGaussianMixtureDenoiser",
    "MixturePosterior",
    "PerClassDenoiser",
    "mixture_posterior",
]


class MixturePosterior(NamedTuple):
    """What x_t says about x_0 when x_0 ~ Σ_k π_k N(μ_k, Σ_k): every field for x_t (B, D).

    Attributes:
        log_joint: log π_k + log N(x_t; α_t μ_k, C_k) (B, K); its logsumexp is log p_t(x_t).
        data: E[x_0 | x_t] (B, D).
        noise: E[ε | x_t] (B, D).
        score: ∇ log p_t(x_t) (B, D).
    """

    log_joint: Tensor
    data: Tensor
    noise: Tensor
    score: Tensor


def mixture_posterior(
    x: Tensor,
    alpha: Coefficient,
    sigma: Coefficient,
    log_weights: Tensor,
    means: Tensor,
    eigenvalues: Tensor,
    eigenvectors: Tensor,
) -> MixturePosterior:
    """The exact posterior of x_t = α_t x_0 + σ_t ε for Gaussian-mixture data, K components.

    With Σ_k = U_k diag(λ_k) U_kᵀ, C_k = α² Σ_k + σ² I = U_k diag(α² λ_k + σ²) U_kᵀ,
    d_k = x − α μ_k and r_k = p(k | x_t) = softmax_k(log π_k + log N(x; α μ_k, C_k)),

        ∇ log p_t(x) = −Σ_k r_k C_k⁻¹ d_k,          E[ε | x_t] = σ Σ_k r_k C_k⁻¹ d_k,
        E[x_0 | x_t] = Σ_k r_k (μ_k + α Σ_k C_k⁻¹ d_k),

    so α E[x_0 | x_t] + σ E[ε | x_t] = x. Every field is regular wherever each
    C_k is positive definite (σ > 0, or α > 0 with Σ_k positive definite),
    also at α = 0, where the Tweedie form x̂_0 = (x + σ² ŝ)/α divides by zero.

    Args:
        x: x_t (B, D).
        alpha, sigma: α_t and σ_t, Python floats or tensors of B (or 1) elements.
        log_weights: log π (K,); means: μ (K, D); eigenvalues: λ (K, D);
            eigenvectors: U (K, D, D), orthonormal columns.

    Reference: Wang & Vastola (2023), "The hidden linear structure in score-based
    models and its application"; Efron (2011), "Tweedie's formula and selection bias".
    """
    a = torch.as_tensor(alpha, dtype=x.dtype, device=x.device).reshape(-1, 1, 1)  # (B|1, 1, 1)
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1, 1)
    centred = x[:, None, :] - a * means  # d_k (B, K, D)
    rotated = torch.einsum("bkd,kde->bke", centred, eigenvectors)  # U_kᵀ d_k
    variances = a.square() * eigenvalues + s.square()  # eigenvalues of C_k (B|1, K, D)
    whitened = rotated / variances  # U_kᵀ C_k⁻¹ d_k
    log_joint = log_weights - 0.5 * (
        (rotated * whitened).sum(-1) + variances.log().sum(-1) + x.shape[-1] * math.log(2 * math.pi)
    )  # (B, K)
    r = torch.softmax(log_joint, dim=-1)[..., None]  # (B, K, 1)
    precision_d = torch.einsum("bke,kde->bkd", whitened, eigenvectors)  # C_k⁻¹ d_k
    shrunk = torch.einsum("bke,kde->bkd", eigenvalues * whitened, eigenvectors)  # Σ_k C_k⁻¹ d_k
    pull = (r * precision_d).sum(1)  # Σ_k r_k C_k⁻¹ d_k (B, D)
    data = (r * (means + a * shrunk)).sum(1)
    return MixturePosterior(log_joint, data, s[:, :, 0] * pull, -pull)


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
        """The posterior mean E[x_0 | x_t] = μ + α_t Σ C_t⁻¹ (x − α_t μ) (Tweedie), regular
        wherever σ_t > 0 (also at α_t = 0, where the score form ε̂ → x̂_0 divides by α_t)."""
        times = t.expand(x.shape[0])
        rotated, variances = self._whiten(x, times)
        alpha = self.process.alpha_sigma(times)[0]
        shrunk = alpha[:, None] * self.eigenvalues * rotated / variances  # (B, D)
        return self.from_data(x, t, self.mean + shrunk @ self.eigenvectors.mT)


class ExactGaussianMixtureDenoiser(Denoiser):
    """The exact score of p_t for data Σ_k π_k N(μ_k, Σ_k); events (D,).

    Args:
        components: one ``ExactGaussianDenoiser`` per class, on one process.
        weights: π (K,), positive, summing to one.
    """

    def __init__(self, components: Sequence[ExactGaussianDenoiser], weights: Tensor) -> None:
        if not components or len(weights) != len(components) or not (weights > 0).all():
            raise InvalidInput(
                f"expected K >= 1 components and K positive weights, got {len(components)} "
                f"and {tuple(weights.shape)}"
            )
        super().__init__(components[0].process)
        self.components = nn.ModuleList(components)
        self.register_buffer("log_weights", (weights / weights.sum()).log())

    def posterior(self, x: Tensor, t: Tensor) -> MixturePosterior:
        """``mixture_posterior`` of x (B, D) at times t (B,) or 0-dim."""
        alpha, sigma = self.process.alpha_sigma(t.expand(x.shape[0]))
        stacked = (torch.stack([getattr(c, k) for c in self.components]) for k in _BUFFERS)
        return mixture_posterior(x, alpha, sigma, self.log_weights, *stacked)

    def class_log_posterior(self, x: Tensor, t: Tensor) -> Tensor:
        """log p(k | x_t) (B, K) for x (B, D), t (B,) or 0-dim: the exact noisy classifier."""
        return torch.log_softmax(self.posterior(x, t).log_joint, dim=-1)

    def forward(self, x: Tensor, t: Tensor) -> Prediction:
        return self.from_score(x, t, self.posterior(x, t).score)


_BUFFERS = ("mean", "eigenvalues", "eigenvectors")
"""The buffers of ``ExactGaussianDenoiser`` that ``mixture_posterior`` reads, in its order."""


class PerClassDenoiser(Denoiser):
    """A conditional denoiser from one denoiser per class and one for the null condition.

    ``forward(x, t, condition=h)`` with h (B, K + 1) the features of
    ``guidance.condition_features`` (one-hot class, or the null flag in the
    last column) returns, row by row, the prediction of that row's denoiser.

    Args:
        classes: K denoisers of p_t(x | k), on one process.
        unconditional: the denoiser of the null condition, p_t(x).
    """

    def __init__(self, classes: Sequence[Denoiser], unconditional: Denoiser) -> None:
        super().__init__(unconditional.process)
        self.table = nn.ModuleList([*classes, unconditional])

    def forward(self, x: Tensor, t: Tensor, condition: Tensor | None = None) -> Prediction:
        if condition is None or condition.shape != (x.shape[0], len(self.table)):
            got = None if condition is None else tuple(condition.shape)
            raise InvalidInput(
                f"condition: expected features ({x.shape[0]}, {len(self.table)}), got {got}"
            )
        scores = torch.stack([d(x, t).score for d in self.table], dim=1)  # (B, K + 1, D)
        return self.from_score(x, t, (condition[..., None].to(x.dtype) * scores).sum(1))
