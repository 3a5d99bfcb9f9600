"""Simulators for simulation-based inference: a prior p(θ), a simulator x ~ p(x | θ).

Amortised posterior estimation learns p(θ | x) from simulated pairs (θ, x):
θ is the modelled variable and the observation x is the condition. Each
``Simulator`` draws the pairs (``sample_joint``), states its prior and its
likelihood exactly (``log_prior``, ``log_likelihood``), and gives its exact
posterior as a ``ConditionalDistribution`` where it is closed-form.

The two tasks follow sbibm's definitions (Lueckmann et al. 2021,
"Benchmarking simulation-based inference", AISTATS), re-derived here.
"""

from __future__ import annotations

import abc
import math

import torch
from torch import Tensor

from probgen.core import ConditionSpec, InvalidInput, check_input
from probgen.distributions.conditional import ConditionalDistribution

__all__ = ["GaussianLinear", "GaussianLinearPosterior", "Simulator", "TwoMoonsSimulator"]

_LOG_2PI = math.log(2.0 * math.pi)


def _normal_log_prob(z: Tensor, variance: float) -> Tensor:
    """log N(z; 0, v I) summed over the last dimension, (B, D) -> (B,)."""
    return -0.5 * (z.square().sum(-1) / variance + z.shape[-1] * (_LOG_2PI + math.log(variance)))


class Simulator(abc.ABC):
    """A prior p(θ) over parameters ``(P,)`` and a simulator of observations ``(X,)``.

    Tensors are made in ``torch.get_default_dtype()`` at the time of the call.
    """

    parameter_shape: tuple[int, ...]
    observation_shape: tuple[int, ...]

    @property
    def condition_spec(self) -> ConditionSpec:
        """The condition of p(θ | x): the observation, a vector of ``observation_shape``."""
        return ConditionSpec(shape=self.observation_shape)

    @abc.abstractmethod
    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws θ ~ p(θ), shape ``(n, *parameter_shape)``."""

    @abc.abstractmethod
    def simulate(self, theta: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One x ~ p(x | θ) per row of θ ``(B, *parameter_shape)``: ``(B, *observation_shape)``."""

    @abc.abstractmethod
    def log_prior(self, theta: Tensor) -> Tensor:
        """log p(θ) per row, (B,)."""

    @abc.abstractmethod
    def log_likelihood(self, x: Tensor, theta: Tensor) -> Tensor:
        """log p(x | θ) per row, exact, (B,)."""

    def posterior(self) -> ConditionalDistribution | None:
        """The exact posterior p(θ | x) where it is closed-form, else None."""
        return None

    def sample_joint(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """n pairs (θ, x): θ ~ p(θ), x ~ p(x | θ)."""
        theta = self.sample_prior(n, generator)
        return theta, self.simulate(theta, generator)

    def _check_theta(self, theta: Tensor) -> Tensor:
        return check_input(theta, self.parameter_shape, name="theta")


class GaussianLinear(Simulator):
    """sbibm's ``gaussian_linear``: θ ~ N(0, v₀ I_D), x | θ ~ N(θ, v₁ I_D).

    sbibm's defaults are D = 10 and covariances v₀ = v₁ = 0.1 (its
    ``prior_scale`` and ``simulator_scale`` enter as covariance matrices
    0.1 · I, so the standard deviations are √0.1 ≈ 0.316). The posterior is
    Gaussian (``GaussianLinearPosterior``):

        p(θ | x) = N(θ; v₀/(v₀ + v₁) x, v₀v₁/(v₀ + v₁) I_D).
    """

    def __init__(self, dim: int = 10, prior_variance: float = 0.1, noise_variance: float = 0.1):
        if dim < 1 or not (prior_variance > 0 and noise_variance > 0):
            raise InvalidInput(
                "GaussianLinear: expected dim >= 1 and variances > 0, got "
                f"{dim}, {prior_variance}, {noise_variance}"
            )
        self.dim = int(dim)
        self.prior_variance = float(prior_variance)
        self.noise_variance = float(noise_variance)
        self.parameter_shape = self.observation_shape = (self.dim,)

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return math.sqrt(self.prior_variance) * torch.randn((n, self.dim), generator=generator)

    def simulate(self, theta: Tensor, generator: torch.Generator | None = None) -> Tensor:
        theta = self._check_theta(theta)
        noise = torch.randn(theta.shape, generator=generator, dtype=theta.dtype)
        return theta + math.sqrt(self.noise_variance) * noise.to(theta.device)

    def log_prior(self, theta: Tensor) -> Tensor:
        return _normal_log_prob(self._check_theta(theta), self.prior_variance)

    def log_likelihood(self, x: Tensor, theta: Tensor) -> Tensor:
        x = check_input(x, self.observation_shape)
        return _normal_log_prob(x - self._check_theta(theta), self.noise_variance)

    def posterior(self) -> GaussianLinearPosterior:
        return GaussianLinearPosterior(self)


class GaussianLinearPosterior(ConditionalDistribution):
    """The exact posterior of ``GaussianLinear``: p(θ | x) = N(θ; a x, s² I), by conjugacy.

    a = v₀ / (v₀ + v₁), s² = v₀ v₁ / (v₀ + v₁) (precisions add: 1/s² = 1/v₀ + 1/v₁).
    Events θ ``(D,)``, conditions x ``(B, D)``; without a condition it is the
    prior N(0, v₀ I), the marginal of θ. ``sample_joint`` draws (θ, x) from
    the prior and the simulator.
    """

    def __init__(self, simulator: GaussianLinear) -> None:
        super().__init__(event_shape=simulator.parameter_shape)
        self.simulator = simulator
        self.condition_spec = simulator.condition_spec
        v0, v1 = simulator.prior_variance, simulator.noise_variance
        self.gain = v0 / (v0 + v1)
        self.variance = v0 * v1 / (v0 + v1)

    def log_prob(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        theta = self._check(x)
        obs = self._condition(condition, len(theta))
        if obs is None:
            return self.simulator.log_prior(theta)
        return _normal_log_prob(theta - self.gain * obs.to(theta), self.variance)

    def sample(
        self, n: int, condition: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        obs = self._condition(condition, n, expand=True)
        if obs is None:
            return self.simulator.sample_prior(n, generator)
        eps = torch.randn((n, *self.event_shape), generator=generator, dtype=obs.dtype)
        return self.gain * obs + math.sqrt(self.variance) * eps.to(obs.device)

    def sample_joint(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """(θ, x): θ ~ N(0, v₀ I), x ~ N(θ, v₁ I); both (n, D)."""
        return self.simulator.sample_joint(n, generator)

    def closed_form_entropy(self) -> Tensor:
        """H[p(θ | x)] = (D/2)(1 + log 2π s²), the same for every x."""
        d = self.event_shape[0]
        return torch.tensor(0.5 * d * (1.0 + _LOG_2PI + math.log(self.variance)))


class TwoMoonsSimulator(Simulator):
    """sbibm's ``two_moons``: θ ~ U[−1, 1]², x = p + (−|θ₁ + θ₂|/√2, (θ₂ − θ₁)/√2).

    p = (r cos a + 0.25, r sin a) with a ~ U(−π/2, π/2), r ~ N(0.1, 0.01²): a
    half ring. The likelihood is exact by the change to polar coordinates:
    with u = x − (−|z₀|, z₁) − (0.25, 0), ρ = ‖u‖ and r = ±ρ (the sign of u₁;
    r < 0, of probability Φ(−10), lands on the mirrored half),

        p(x | θ) = N(r; 0.1, 0.01²) / (π ρ).

    (sbibm's potential leaves out the 1/(πρ) Jacobian; its reference
    posterior samples are exact.) The posterior is bimodal and its
    normaliser has no closed form, so ``posterior()`` is None.
    """

    parameter_shape = (2,)
    observation_shape = (2,)
    radius_mean, radius_std, offset = 0.1, 0.01, 0.25

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return 2.0 * torch.rand((n, 2), generator=generator) - 1.0

    def simulate(self, theta: Tensor, generator: torch.Generator | None = None) -> Tensor:
        theta = self._check_theta(theta)
        n = len(theta)
        a = math.pi * (torch.rand(n, generator=generator, dtype=theta.dtype) - 0.5)
        r = self.radius_mean + self.radius_std * torch.randn(
            n, generator=generator, dtype=theta.dtype
        )
        p = torch.stack([r * a.cos() + self.offset, r * a.sin()], dim=1).to(theta.device)
        return p + self._shift(theta)

    def log_prior(self, theta: Tensor) -> Tensor:
        theta = self._check_theta(theta)
        inside = (theta.abs() <= 1.0).all(1)
        log_density = torch.full_like(theta[:, 0], -math.log(4.0))
        return torch.where(inside, log_density, torch.full_like(log_density, -math.inf))

    def log_likelihood(self, x: Tensor, theta: Tensor) -> Tensor:
        x = check_input(x, self.observation_shape)
        u = x - self._shift(self._check_theta(theta))
        u = torch.stack([u[:, 0] - self.offset, u[:, 1]], dim=1)
        rho = u.norm(dim=1)
        r = torch.where(u[:, 0] >= 0, rho, -rho)
        z = (r - self.radius_mean) / self.radius_std
        log_radius = -0.5 * z.square() - math.log(self.radius_std) - 0.5 * _LOG_2PI
        return log_radius - torch.log(math.pi * rho)

    @staticmethod
    def _shift(theta: Tensor) -> Tensor:
        """(−|θ₁ + θ₂|/√2, (θ₂ − θ₁)/√2), (B, 2)."""
        s = 1.0 / math.sqrt(2.0)
        z0 = s * (theta[:, 0] + theta[:, 1])
        return torch.stack([-z0.abs(), s * (theta[:, 1] - theta[:, 0])], dim=1)
