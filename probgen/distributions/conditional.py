"""Analytic conditional laws p(x | c) with exact density and sampling: ground truth for p(x | c).

A ``ConditionalDistribution`` is a ``GenerativeModel`` whose calls take the
condition keyword (``probgen.conditions``) and whose law of conditions p(c)
is part of it:

    log_prob(x, condition=c)   log p(x | c), exact          (B,)
    log_prob(x)                log p(x) = log ∫ p(x | c) p(c) dc, exact where known
    sample(n, condition=c)     n exact draws of p(· | c)    (n, *event_shape)
    sample_joint(n)            (x, c) with c ~ p(c), x ~ p(· | c): a data set of pairs

Two families of the 2-D shapes: a Gaussian mixture conditioned on its
component (``ConditionalMixture``, c = k), and any shape rotated by an angle
(``RotatedShape``, c = θ).
"""

from __future__ import annotations

import abc
import math

import torch
from torch import Tensor

from probgen.core import ConditionSpec, GenerativeModel, InvalidInput
from probgen.distributions.base import Distribution
from probgen.distributions.mixture import GaussianMixture
from probgen.distributions.shapes import _rotate

__all__ = ["ConditionalDistribution", "ConditionalMixture", "RotatedShape"]

_LOG_2PI = math.log(2.0 * math.pi)


class ConditionalDistribution(Distribution, abc.ABC):
    """An analytic p(x | c) together with the law p(c) of its conditions.

    Subclasses set ``condition_spec`` in ``__init__`` and implement
    ``log_prob(x, condition=None)``, ``sample(n, condition=None, generator=None)``
    and ``sample_joint``. With ``condition=None`` both calls are those of the
    marginal p(x) = ∫ p(x | c) p(c) dc (``unconditional_mode``), where a
    subclass knows it exactly; one that does not sets ``unconditional_mode =
    False`` and the base class then raises for a missing condition.
    """

    condition_spec: ConditionSpec
    unconditional_mode = True

    @abc.abstractmethod
    def log_prob(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """log p(x | c) (log p(x) for ``condition=None``) per example, (B,), in nats."""

    @abc.abstractmethod
    def sample(
        self, n: int, condition: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """``n`` exact draws of p(· | c) (of p(x) for ``condition=None``), ``(n, *event_shape)``."""

    @abc.abstractmethod
    def sample_joint(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """``n`` pairs (x, c): c ~ p(c), then x ~ p(· | c); shapes (n, *event_shape), (n, …)."""


class ConditionalMixture(ConditionalDistribution, GaussianMixture):
    """A Gaussian mixture conditioned on its component: p(x | k) = N(x; μ_k, Σ_k).

    The conditions are the component labels k ∈ {0, …, K−1}
    (``ConditionSpec(classes=K)``) with law p(k) = π_k; the marginal is the
    mixture itself, Σ_k π_k N(x; μ_k, Σ_k), so ``log_prob(x)`` without a
    condition and ``responsibilities`` (the exact Bayes posterior p(k | x))
    are those of the mixture. ``sample(n, condition=k)`` is μ_k + L_k ε.

    Args:
        mixture: the mixture, e.g. ``EightGaussians()`` or ``TwentyFiveGaussians()``.
    """

    def __init__(self, mixture: GaussianMixture) -> None:
        if not isinstance(mixture, GaussianMixture):
            raise InvalidInput(
                f"ConditionalMixture: expected a GaussianMixture, got {type(mixture).__name__}"
            )
        GaussianMixture.__init__(self, mixture.weights, mixture.means, mixture.covariances)
        self.condition_spec = ConditionSpec(classes=len(self.means))

    def log_prob(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """log N(x; μ_k, Σ_k) for the k of each row, (B,); the mixture's log p(x) for None."""
        x = self._check(x)
        k = self._condition(condition, len(x))
        if k is None:
            return torch.logsumexp(self.component_log_probs(x) + self.log_weights, dim=1)
        k = k.to(self.means.device)
        diff = (x - self.means[k])[..., None]  # (B, D, 1)
        z = torch.linalg.solve_triangular(self.scale_tril[k], diff, upper=False)[..., 0]
        half_log_det = self.scale_tril[k].diagonal(dim1=-2, dim2=-1).log().sum(-1)  # (B,)
        return -0.5 * z.square().sum(1) - half_log_det - 0.5 * self.event_shape[0] * _LOG_2PI

    def sample(
        self, n: int, condition: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        k = self._condition(condition, n, expand=True)
        if k is None:
            return self.sample_with_components(n, generator)[0]
        k = k.to(self.means.device)
        eps = self._randn((n, *self.event_shape), generator)
        return self.means[k] + (self.scale_tril[k] @ eps[..., None])[..., 0]

    def sample_joint(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """(x, k): k ~ Cat(π), x ~ N(μ_k, Σ_k); shapes (n, D) and (n,) torch.long."""
        return self.sample_with_components(n, generator)


class RotatedShape(ConditionalDistribution):
    """A 2-D shape rotated by an angle: x = R(θ) y, y ~ the shape, c = θ ~ U[0, 2π).

    R(θ) = [[cos θ, −sin θ], [sin θ, cos θ]] has unit Jacobian, so
    log p(x | θ) = log p_shape(R(−θ) x) exactly (θ in radians, shape (B, 1):
    ``ConditionSpec(shape=(1,))``; any real θ is accepted). The marginal over
    θ ~ U[0, 2π) is known in closed form when the shape is a mixture of
    isotropic Gaussians N(μ_k, σ_k² I) (8gaussians, 25gaussians): each
    component averages over the circle of radius ρ_k = ‖μ_k‖ to

        p_k(x) = exp(−(r² + ρ_k²) / 2σ_k²) I₀(r ρ_k / σ_k²) / (2π σ_k²),   r = ‖x‖,

    (the Rice law of the radius, spread evenly over the angle), with I₀ the
    modified Bessel function of order 0, evaluated as ``i0e`` for stability;
    ``unconditional_mode`` is True exactly then.

    Args:
        shape: any analytic 2-D law with exact ``log_prob`` and ``sample``.
    """

    def __init__(self, shape: GenerativeModel) -> None:
        if tuple(shape.event_shape) != (2,):
            raise InvalidInput(
                f"RotatedShape: expected a shape of events (2,), got {tuple(shape.event_shape)}"
            )
        super().__init__(event_shape=(2,))
        self.shape = shape
        self.condition_spec = ConditionSpec(shape=(1,))
        self.unconditional_mode = _is_isotropic_mixture(shape)

    def log_prob(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        x = self._check(x)
        theta = self._condition(condition, len(x))
        if theta is None:
            return self._marginal_log_prob(x)
        return self.shape.log_prob(_rotate(x, -theta[:, 0].to(x)))

    def sample(
        self, n: int, condition: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        theta = self._condition(condition, n, expand=True)
        if theta is None:
            return self.sample_joint(n, generator)[0]
        y = self.shape.sample(n, generator=generator)
        return _rotate(y, theta[:, 0].to(y))

    def sample_joint(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """(x, θ): θ ~ U[0, 2π), x = R(θ) y, y ~ the shape; shapes (n, 2) and (n, 1)."""
        y = self.shape.sample(n, generator=generator)
        u = torch.rand((n, 1), generator=generator, dtype=y.dtype, device=y.device)
        theta = 2.0 * math.pi * u
        return _rotate(y, theta[:, 0]), theta

    def _marginal_log_prob(self, x: Tensor) -> Tensor:
        """log Σ_k π_k p_k(x) with p_k the rotation-averaged component (class docstring)."""
        mixture = self.shape
        assert isinstance(mixture, GaussianMixture)  # unconditional_mode guarantees it
        var = mixture.scale_tril[:, 0, 0].square()  # σ_k², (K,)
        rho = mixture.means.norm(dim=1)  # (K,)
        r = x.norm(dim=1, keepdim=True)  # (B, 1)
        log_bessel = torch.special.i0e(r * rho / var).log()  # log I₀(z) − z, (B, K)
        log_pk = -(r - rho).square() / (2 * var) + log_bessel - torch.log(2 * math.pi * var)
        return torch.logsumexp(log_pk + mixture.log_weights, dim=1)


def _is_isotropic_mixture(shape: GenerativeModel) -> bool:
    """Whether ``shape`` is a mixture whose every Cholesky factor is σ_k I (exactly)."""
    if not isinstance(shape, GaussianMixture):
        return False
    tril = shape.scale_tril
    sigma = tril[:, :1, :1]  # (K, 1, 1)
    return bool((tril == sigma * torch.eye(tril.shape[-1], dtype=tril.dtype)).all())
