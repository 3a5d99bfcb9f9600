"""Gaussian distributions: diagonal (any event shape), standard normal, full covariance."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from probgen.core import InvalidInput
from probgen.distributions.base import Distribution
from probgen.tensors import sum_events

__all__ = ["DiagonalGaussian", "Gaussian", "StandardNormal"]

_LOG_2PI = math.log(2.0 * math.pi)


def _as_float_tensor(value: Tensor, name: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise InvalidInput(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise InvalidInput(f"{name}: expected a floating-point tensor, got {value.dtype}")
    if not torch.isfinite(value).all():
        raise InvalidInput(f"{name}: contains non-finite values (NaN or inf)")
    return value.detach().clone()


class DiagonalGaussian(Distribution):
    """Gaussian with independent entries, N(μ, diag σ²), over events of any shape.

    log p(x) = -½ Σ_d ((x_d - μ_d)/σ_d)² - Σ_d log σ_d - (D/2) log 2π, summed over
    every entry of the event, so it serves as the base of flows on vectors (B, D)
    and on images (B, C, H, W) alike. Samples are reparameterised, x = μ + σ ⊙ ε
    with ε ~ N(0, I), so gradients reach learnable parameters.

    Args:
        mean: μ, shape ``event_shape``.
        std: σ > 0, broadcastable to ``mean``.
        learnable: store μ and log σ as ``nn.Parameter`` s (else as buffers).
    """

    def __init__(self, mean: Tensor, std: Tensor, learnable: bool = False) -> None:
        mean = _as_float_tensor(mean, "mean")
        std = _as_float_tensor(torch.as_tensor(std, dtype=mean.dtype), "std")
        try:
            std = torch.broadcast_to(std, mean.shape).to(mean)
        except RuntimeError as err:
            raise InvalidInput(
                f"std: expected a shape broadcastable to {tuple(mean.shape)}, "
                f"got {tuple(std.shape)}"
            ) from err
        if not (std > 0).all():
            raise InvalidInput("std: expected every entry > 0")
        super().__init__(event_shape=tuple(mean.shape))
        if learnable:
            self.loc = nn.Parameter(mean)
            self.log_scale = nn.Parameter(std.log())
        else:
            self.register_buffer("loc", mean)
            self.register_buffer("log_scale", std.log())

    @property
    def mean(self) -> Tensor:
        """μ, shape ``event_shape``."""
        return self.loc

    @property
    def std(self) -> Tensor:
        """σ, shape ``event_shape``."""
        return self.log_scale.exp()

    @property
    def variance(self) -> Tensor:
        """σ², shape ``event_shape``."""
        return (2.0 * self.log_scale).exp()

    @property
    def covariance(self) -> Tensor:
        """diag σ² over the flattened event, shape (D, D) with D = prod(event_shape)."""
        return torch.diag_embed(self.variance.flatten())

    def log_prob(self, x: Tensor) -> Tensor:
        x = self._check(x)
        z = (x - self.loc) * torch.exp(-self.log_scale)  # (B, *event_shape)
        d = self.loc.numel()
        return -0.5 * sum_events(z.square()) - self.log_scale.sum() - 0.5 * d * _LOG_2PI

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        eps = self._randn((n, *self.event_shape), generator)
        return self.loc + self.std * eps

    def closed_form_entropy(self) -> Tensor:
        """H = (D/2)(1 + log 2π) + Σ_d log σ_d."""
        return 0.5 * self.loc.numel() * (1.0 + _LOG_2PI) + self.log_scale.sum()


class StandardNormal(DiagonalGaussian):
    """The standard normal N(0, I) over events of shape ``event_shape`` (buffers only)."""

    def __init__(self, event_shape: tuple[int, ...]) -> None:
        shape = tuple(int(s) for s in event_shape)
        super().__init__(torch.zeros(shape), torch.ones(shape))


class Gaussian(Distribution):
    """Multivariate Gaussian N(μ, Σ) with full covariance, held by its Cholesky factor.

    Σ = L Lᵀ with L lower triangular (``scale_tril``);
    log p(x) = -½ ‖L⁻¹(x - μ)‖² - Σ_d log L_dd - (D/2) log 2π;
    samples x = μ + L ε, ε ~ N(0, I). Events have shape (D,).

    Args:
        mean: μ, shape (D,).
        covariance: Σ, symmetric positive definite, shape (D, D).
    """

    def __init__(self, mean: Tensor, covariance: Tensor) -> None:
        mean = _as_float_tensor(mean, "mean")
        covariance = _as_float_tensor(covariance, "covariance").to(mean)
        if mean.dim() != 1:
            raise InvalidInput(f"mean: expected shape (D,), got {tuple(mean.shape)}")
        d = mean.shape[0]
        if tuple(covariance.shape) != (d, d):
            raise InvalidInput(
                f"covariance: expected shape ({d}, {d}), got {tuple(covariance.shape)}"
            )
        if not torch.allclose(covariance, covariance.mT):
            raise InvalidInput("covariance: expected a symmetric matrix")
        scale_tril, info = torch.linalg.cholesky_ex(covariance)
        if info.item() != 0:
            raise InvalidInput("covariance: expected a positive definite matrix")
        super().__init__(event_shape=(d,))
        self.register_buffer("loc", mean)
        self.register_buffer("scale_tril", scale_tril)

    @property
    def mean(self) -> Tensor:
        """μ, shape (D,)."""
        return self.loc

    @property
    def covariance(self) -> Tensor:
        """Σ = L Lᵀ, shape (D, D)."""
        return self.scale_tril @ self.scale_tril.mT

    def log_prob(self, x: Tensor) -> Tensor:
        x = self._check(x)
        diff = (x - self.loc).mT  # (D, B)
        z = torch.linalg.solve_triangular(self.scale_tril, diff, upper=False)  # (D, B)
        half_log_det = self.scale_tril.diagonal().log().sum()
        return -0.5 * z.square().sum(dim=0) - half_log_det - 0.5 * self.event_shape[0] * _LOG_2PI

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        eps = self._randn((n, *self.event_shape), generator)
        return self.loc + eps @ self.scale_tril.mT

    def closed_form_entropy(self) -> Tensor:
        """H = (D/2)(1 + log 2π) + Σ_d log L_dd."""
        return 0.5 * self.event_shape[0] * (1.0 + _LOG_2PI) + self.scale_tril.diagonal().log().sum()
