"""The 2-D benchmark shapes of the generative-modelling literature, as exact distributions.

Each shape is a ``Distribution`` with exact ``sample`` and exact (or
quadrature-exact, see ``NoisyCurve``) ``log_prob``; with no arguments it
follows the published recipe (Grathwohl et al., 2019, FFJORD, whose toy
data most papers reuse; Gulrajani et al., 2017, WGAN-GP, for the 25-Gaussian
grid). ``SHAPES`` maps the data-set names to the classes and ``make_shape``
builds one by name. The recipes and their entropies are in docs/distributions.md.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
from torch import Tensor

from probgen.core import GenerativeModel, InvalidInput
from probgen.distributions.base import Distribution
from probgen.distributions.curves import Arm, CurveParameter, NoisyCurve
from probgen.distributions.gaussian import DiagonalGaussian
from probgen.distributions.mixture import GaussianMixture, isotropic_covariances

__all__ = [
    "SHAPES",
    "Checkerboard",
    "EightGaussians",
    "Pinwheel",
    "Rings",
    "SwissRoll",
    "TwentyFiveGaussians",
    "TwoMoons",
    "TwoSpirals",
    "make_shape",
]

_SQRT2 = math.sqrt(2.0)


def _circle(t: Tensor, center: tuple[float, float], radius: float) -> Tensor:
    """c(t) = center + radius (cos t, sin t), (T,) -> (T, 2); radius < 0 flips the arc."""
    c = torch.tensor(center, dtype=t.dtype, device=t.device)
    return c + radius * torch.stack([t.cos(), t.sin()], dim=-1)


def _spiral(
    t: Tensor, matrix: tuple[tuple[float, float], tuple[float, float]], shift: float = 0.0
) -> Tensor:
    """Archimedean spiral c(t) = A (t cos t, t sin t)ᵀ + (b, b), (T,) -> (T, 2)."""
    a = torch.tensor(matrix, dtype=t.dtype, device=t.device)
    return torch.stack([t * t.cos(), t * t.sin()], dim=-1) @ a.mT + shift


def _rotate(v: Tensor, angle: Tensor) -> Tensor:
    """R(angle) v with R(α) = [[cos α, -sin α], [sin α, cos α]]; v (..., 2), angle (...)."""
    c, s = angle.cos(), angle.sin()
    return torch.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1]], dim=-1)


class EightGaussians(GaussianMixture):
    """Ring of ``n_modes`` equal-weight isotropic Gaussians.

    μ_k = r (cos 2πk/K, sin 2πk/K), σ_k = σ, π_k = 1/K. Defaults follow FFJORD
    (r = 2√2, σ = 1/(2√2), K = 8; entropy 2.83158 nats by quadrature,
    tests/theory/test_shape_entropy.py);
    ``EightGaussians(radius=1.0, std=0.01)`` is the ring of PacGAN
    (Lin et al., 2018, PacGAN: The power of two samples in GANs).
    """

    def __init__(
        self, radius: float = 2.0 * _SQRT2, std: float = 1.0 / (2.0 * _SQRT2), n_modes: int = 8
    ) -> None:
        angle = 2.0 * math.pi * torch.arange(n_modes, dtype=torch.float64) / n_modes
        means = radius * torch.stack([angle.cos(), angle.sin()], dim=1)
        means = means.to(torch.get_default_dtype())
        super().__init__(torch.ones_like(means[:, 0]), means, isotropic_covariances(means, std))


class TwentyFiveGaussians(GaussianMixture):
    """Square grid of ``grid_size``² equal-weight isotropic Gaussians.

    μ_ij = s (i - (G-1)/2, j - (G-1)/2), σ_ij = σ. Defaults follow WGAN-GP
    (Gulrajani et al., 2017; modes on {-4, …, 4}² step 2, std 0.05, all divided
    by 2√2: s = 1/√2, σ = 0.05/(2√2)); ``TwentyFiveGaussians(spacing=2.0,
    std=0.05)`` is the grid of PacGAN (Lin et al., 2018) on {-4, -2, 0, 2, 4}².
    """

    def __init__(
        self, spacing: float = 1.0 / _SQRT2, std: float = 0.05 / (2.0 * _SQRT2), grid_size: int = 5
    ) -> None:
        axis = spacing * (torch.arange(grid_size, dtype=torch.float64) - 0.5 * (grid_size - 1))
        means = torch.cartesian_prod(axis, axis).to(torch.get_default_dtype())
        super().__init__(torch.ones_like(means[:, 0]), means, isotropic_covariances(means, std))


class Checkerboard(Distribution):
    """Uniform law on the dark squares of an n × n checkerboard of squares of side s.

    The board is [-ns/2, ns/2)²; square (i, j) (indices from the lower-left
    corner) is dark when i + j is even, as in FFJORD (n = 4, s = 2: eight
    squares, density 1/32, entropy log 32). p(x) = 1/(m s²) on the m = ⌈n²/2⌉
    dark squares, 0 elsewhere (log p = -inf).
    """

    def __init__(self, n_squares: int = 4, side: float = 2.0) -> None:
        if n_squares < 1 or side <= 0:
            raise InvalidInput(
                f"Checkerboard: expected n_squares >= 1 and side > 0, got {n_squares}, {side}"
            )
        super().__init__(event_shape=(2,))
        self.n_squares = int(n_squares)
        self.side = float(side)
        ij = torch.cartesian_prod(torch.arange(n_squares), torch.arange(n_squares))
        self.register_buffer("dark", ij[ij.sum(1) % 2 == 0])  # (m, 2) integer indices
        self.register_buffer("_log_density", torch.tensor(-self._log_area()))

    def _log_area(self) -> float:
        return math.log(len(self.dark) * self.side**2)

    def log_prob(self, x: Tensor) -> Tensor:
        x = self._check(x)
        ij = torch.floor(x / self.side + 0.5 * self.n_squares)  # square indices (B, 2)
        inside = ((ij >= 0) & (ij < self.n_squares)).all(1) & (ij.sum(1) % 2 == 0)
        log_p = self._log_density.to(x.dtype)
        return torch.where(inside, log_p, torch.full_like(log_p, -math.inf))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        k = torch.randint(len(self.dark), (n,), generator=generator, device=self.dark.device)
        corner = self.dark[k].to(self._log_density.dtype) - 0.5 * self.n_squares
        return self.side * (corner + self._rand((n, 2), generator))

    def closed_form_entropy(self) -> Tensor:
        """H = log(m s²), the log of the area of the dark squares."""
        return -self._log_density


class Pinwheel(Distribution):
    """Arms of a rotated Gaussian, bent by a radius-dependent rotation (a swirl).

    f ~ N((1, 0), diag(σ_r², σ_t²)), arm k ~ Uniform{0, …, K-1},
    x = s R(-θ_k(‖f‖)) f with θ_k(r) = 2πk/K + a e^r. FFJORD's recipe (σ_r = 0.3,
    σ_t = 0.1, K = 5, a = 0.25, s = 2) rotates by a e^{f_1} instead; using the
    radius ‖f‖ (which differs from f_1 by about f_2²/2 ≈ 0.005) makes the map
    a bijection of unit Jacobian, so the density is exact in closed form:
    p(x) = (1/K) Σ_k N(R(θ_k(‖x‖/s)) x/s) / s².
    """

    def __init__(
        self,
        n_arms: int = 5,
        radial_std: float = 0.3,
        tangential_std: float = 0.1,
        rate: float = 0.25,
        scale: float = 2.0,
    ) -> None:
        if n_arms < 1 or scale <= 0:
            raise InvalidInput(
                f"Pinwheel: expected n_arms >= 1 and scale > 0, got {n_arms}, {scale}"
            )
        super().__init__(event_shape=(2,))
        self.n_arms, self.rate, self.scale = int(n_arms), float(rate), float(scale)
        dtype = torch.get_default_dtype()
        self.base = DiagonalGaussian(
            torch.tensor([1.0, 0.0], dtype=dtype), torch.tensor([radial_std, tangential_std])
        )
        arm_angles = 2.0 * math.pi * torch.arange(n_arms, dtype=torch.float64) / n_arms
        self.register_buffer("arm_angles", arm_angles.to(dtype))  # (K,)

    def _angle(self, radius: Tensor, arm: Tensor) -> Tensor:
        return arm + self.rate * radius.exp()

    def log_prob(self, x: Tensor) -> Tensor:
        x = self._check(x)
        y = x / self.scale  # (B, 2)
        angle = self._angle(y.norm(dim=1, keepdim=True), self.arm_angles)  # (B, K)
        f = _rotate(y[:, None, :], angle)  # (B, K, 2)
        log_base = self.base.log_prob(f.reshape(-1, 2)).reshape(f.shape[:2])  # (B, K)
        log_jacobian = 2.0 * math.log(self.scale)
        return torch.logsumexp(log_base, dim=1) - math.log(self.n_arms) - log_jacobian

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        f = self.base.sample(n, generator=generator)  # (n, 2)
        arm = torch.randint(self.n_arms, (n,), generator=generator, device=f.device)
        angle = self._angle(f.norm(dim=1), self.arm_angles[arm])
        return self.scale * _rotate(f, -angle)


class TwoMoons(NoisyCurve):
    """Two interleaved half circles plus Gaussian noise (FFJORD: sklearn moons × 2).

    Upper moon c(t) = (-1, -0.2) + 2 (cos t, sin t), lower moon
    c(t) = (1, 0.8) - 2 (cos t, sin t), t ~ Uniform[0, π], weight ½ each; noise
    N(0, σ² I) with σ = 0.2 (sklearn's 0.1, scaled by 2).
    """

    def __init__(self, std: float = 0.2) -> None:
        law = CurveParameter(0.0, math.pi)
        upper = functools.partial(_circle, center=(-1.0, -0.2), radius=2.0)
        lower = functools.partial(_circle, center=(1.0, 0.8), radius=-2.0)
        super().__init__([Arm(upper, law), Arm(lower, law)], std=std)


class SwissRoll(NoisyCurve):
    """Swiss roll seen from above plus Gaussian noise (FFJORD: sklearn swiss roll / 5).

    c(t) = (t cos t, t sin t)/5, t ~ Uniform[1.5π, 4.5π]; noise N(0, σ² I) with
    σ = 0.2 (sklearn's noise 1.0, divided by 5).
    """

    def __init__(self, std: float = 0.2) -> None:
        curve = functools.partial(_spiral, matrix=((0.2, 0.0), (0.0, 0.2)))
        law = CurveParameter(1.5 * math.pi, 4.5 * math.pi)
        super().__init__([Arm(curve, law)], std=std)


class Rings(NoisyCurve):
    """Concentric circles with uniform angle, plus Gaussian noise (FFJORD rings).

    Circle i: c(t) = r_i (cos t, sin t), t ~ Uniform[0, 2π], equal weights;
    radii (3, 2.25, 1.5, 0.75) and σ = 0.08 by default. (FFJORD spaces the
    angles evenly per batch; uniform angles are its exact law.)
    """

    def __init__(
        self, radii: tuple[float, ...] = (3.0, 2.25, 1.5, 0.75), std: float = 0.08
    ) -> None:
        law = CurveParameter(0.0, 2.0 * math.pi)
        circles = [functools.partial(_circle, center=(0.0, 0.0), radius=r) for r in radii]
        super().__init__([Arm(circle, law) for circle in circles], std=std)


class TwoSpirals(NoisyCurve):
    """Two interleaved Archimedean spirals, mirror images through the origin (FFJORD 2spirals).

    t = 3π √U, U ~ Uniform(0, 1) (density 2t/(3π)² on [0, 3π]);
    arm 1: c(t) = (-t cos t, t sin t)/3 + (j/2, j/2), arm 2: its negative; weight ½
    each; noise N(0, σ² I). FFJORD adds a uniform jitter on [0, j]² (j = 0.5/3,
    mirrored for arm 2) and then N(0, 0.1² I); here the jitter is replaced by
    the Gaussian of the same mean and variance, so by default
    σ = √(0.1² + j²/12) ≈ 0.1110 and the curve is shifted by the jitter's mean.
    """

    def __init__(self, std: float = math.sqrt(0.01 + (0.5 / 3.0) ** 2 / 12.0)) -> None:
        law = CurveParameter(0.0, 3.0 * math.pi, exponent=2.0)
        shift = 0.25 / 3.0
        arms = [
            Arm(
                functools.partial(
                    _spiral, matrix=((-sign / 3.0, 0.0), (0.0, sign / 3.0)), shift=sign * shift
                ),
                law,
            )
            for sign in (1.0, -1.0)
        ]
        super().__init__(arms, std=std)


SHAPES: dict[str, Callable[..., GenerativeModel]] = {
    "8gaussians": EightGaussians,
    "25gaussians": TwentyFiveGaussians,
    "checkerboard": Checkerboard,
    "two_moons": TwoMoons,
    "swiss_roll": SwissRoll,
    "pinwheel": Pinwheel,
    "rings": Rings,
    "2spirals": TwoSpirals,
}


def make_shape(name: str, **options: float) -> GenerativeModel:
    """Build the 2-D shape registered under ``name`` with keyword ``options``."""
    if name not in SHAPES:
        raise InvalidInput(f"unknown shape {name!r}; choose one of: {', '.join(SHAPES)}")
    return SHAPES[name](**options)
