"""The 2-D shapes against closed forms, finer quadrature, and the published recipes."""

from __future__ import annotations

import math

import pytest
import torch

from probgen.distributions import (
    Checkerboard,
    CurveParameter,
    NoisyCurve,
    Pinwheel,
    Rings,
    SwissRoll,
    TwoMoons,
    TwoSpirals,
)

CURVES = [TwoMoons, SwissRoll, Rings, TwoSpirals]


def _grid(extent: float, n: int) -> torch.Tensor:
    axis = torch.linspace(-extent, extent, n)
    return torch.cartesian_prod(axis, axis)


def _assert_close_where_visible(log_p: torch.Tensor, reference: torch.Tensor) -> None:
    """|Δp| < 1e-8 everywhere and |Δ log p| < 1e-6 wherever p > 1e-4 (the documented precision)."""
    assert (log_p.exp() - reference.exp()).abs().max() < 1e-8
    visible = reference.exp() > 1e-4
    assert visible.sum() > 100
    assert (log_p - reference)[visible].abs().max() < 1e-6


def test_circle_quadrature_matches_bessel_closed_form() -> None:
    # Uniform angle on a circle of radius R plus N(0, σ² I):
    # p(x) = exp(-(‖x‖² + R²)/2σ²) I₀(‖x‖R/σ²) / (2πσ²).
    radius, std = 1.5, 0.08
    dist = Rings(radii=(radius,), std=std)
    x = torch.cat([_grid(2.0, 121), dist.sample(2000, generator=torch.Generator().manual_seed(0))])
    r = x.norm(dim=1)
    z = r * radius / std**2
    exact = (
        -((r - radius) ** 2) / (2 * std**2)
        + torch.special.i0e(z).log()
        - math.log(2 * math.pi * std**2)
    )
    _assert_close_where_visible(dist.log_prob(x), exact)


@pytest.mark.parametrize("shape", CURVES)
def test_quadrature_matches_a_three_times_finer_rule(shape) -> None:
    dist = shape()
    finer = NoisyCurve(dist.arms, dist.std, panel_length=1.0, nodes_per_panel=10)
    assert len(finer.log_weights) > 2.9 * len(dist.log_weights)
    x = torch.cat([_grid(4.0, 61), dist.sample(500, generator=torch.Generator().manual_seed(1))])
    _assert_close_where_visible(dist.log_prob(x), finer.log_prob(x))


@pytest.mark.parametrize("exponent", [1.0, 2.0, 3.5])
def test_curve_parameter_inverse_cdf_matches_density(exponent: float) -> None:
    law = CurveParameter(-1.0, 2.0, exponent)
    u = torch.linspace(0.0, 1.0, 11)
    t = law.inverse_cdf(u)
    # F(t) = ∫_low^t ρ by fine trapezoids must give back u.
    for ui, ti in zip(u.tolist(), t.tolist(), strict=True):
        s = torch.linspace(-1.0, ti, 2001).numpy()
        assert torch.trapezoid(torch.from_numpy(law.density(s)), torch.from_numpy(s)).item() == (
            pytest.approx(ui, abs=1e-6)
        )


def test_pinwheel_density_equals_change_of_variables_with_autograd_jacobian() -> None:
    dist = Pinwheel()
    x = torch.cat(
        [dist.sample(20, generator=torch.Generator().manual_seed(2)), torch.randn(10).reshape(5, 2)]
    )
    base = torch.distributions.MultivariateNormal(
        torch.tensor([1.0, 0.0]), torch.diag(torch.tensor([0.3, 0.1]) ** 2)
    )

    def inverse(point: torch.Tensor, k: int) -> torch.Tensor:
        y = point / 2.0
        angle = 2 * math.pi * k / 5 + 0.25 * y.norm().exp()
        c, s = angle.cos(), angle.sin()
        return torch.stack([c * y[0] - s * y[1], s * y[0] + c * y[1]])

    for point in x:
        density = sum(
            base.log_prob(inverse(point, k)).exp()
            * torch.linalg.det(
                torch.autograd.functional.jacobian(lambda p, k=k: inverse(p, k), point)
            ).abs()
            / 5
            for k in range(5)
        )
        assert dist.log_prob(point[None])[0].item() == pytest.approx(
            density.log().item(), rel=1e-10
        )


def _ffjord_checkerboard(n: int, generator: torch.Generator) -> torch.Tensor:
    """FFJORD's recipe, written out as its paper's code describes it."""
    x1 = torch.rand(n, generator=generator) * 4 - 2
    x2_ = torch.rand(n, generator=generator) - torch.randint(0, 2, (n,), generator=generator) * 2
    x2 = x2_ + torch.floor(x1) % 2
    return torch.stack([x1, x2], 1) * 2


def test_checkerboard_has_the_ffjord_support_and_density() -> None:
    dist = Checkerboard()
    ffjord = _ffjord_checkerboard(5000, torch.Generator().manual_seed(3))
    torch.testing.assert_close(dist.log_prob(ffjord), torch.full((5000,), -math.log(32)))
    ours = dist.sample(5000, generator=torch.Generator().manual_seed(4))
    # Each of our samples lies in a square FFJORD fills: parity of the 1×1 cells after /2.
    cells = torch.floor(ours / 2)
    assert ((cells[:, 0] + cells[:, 1]) % 2 == 0).all()
    assert (ours.abs() <= 4).all()
    assert torch.isinf(dist.log_prob(torch.tensor([[-1.0, -3.0], [4.5, 0.0]]))).all()
    assert dist.entropy().value == pytest.approx(math.log(32)) and dist.entropy().kind == "exact"


def test_two_spirals_has_the_second_moments_of_the_ffjord_recipe() -> None:
    n = 200_000
    g = torch.Generator().manual_seed(5)
    t = torch.sqrt(torch.rand(n // 2, 1, generator=g)) * 3 * math.pi
    arm = (
        torch.cat([-torch.cos(t) * t, torch.sin(t) * t], 1)
        + torch.rand(n // 2, 2, generator=g) * 0.5
    )
    ffjord = torch.cat([arm, -arm]) / 3 + 0.1 * torch.randn(n, 2, generator=g)
    ours = TwoSpirals().sample(n, generator=torch.Generator().manual_seed(6))
    # The arms' means and covariances agree, hence so do the mixtures' second moments
    # E[x xᵀ] (the means are 0 by symmetry). Compare each entry within 5 standard errors.
    for i, j in [(0, 0), (0, 1), (1, 1)]:
        a, b = ffjord[:, i] * ffjord[:, j], ours[:, i] * ours[:, j]
        se = math.sqrt((a.var() + b.var()).item() / n)
        assert abs((a.mean() - b.mean()).item()) < 5 * se
    assert (ours.mean(0).abs() < 5 * ours.std(0) / math.sqrt(n)).all()


@pytest.mark.parametrize("shape", CURVES)
def test_curve_log_prob_equals_a_direct_float64_sum(shape) -> None:
    """log p = logsumexp_j(log ω_j - ‖x - c_j‖²/2σ²) - log(2πσ²), summed directly in NumPy.

    Within 8 eps₆₄ · (1 + |log p| + log-normaliser), including far points (|x| ≈ 10), where
    the expansion ‖x‖² + ‖c‖² - 2x·c would cancel by eps·(‖x‖² + ‖c‖²)/2σ².
    """
    from scipy.special import logsumexp

    dist = shape()
    g = torch.Generator().manual_seed(4)
    x = torch.cat(
        [_grid(4.0, 41), dist.sample(500, generator=g), 10 * torch.randn(200, 2, generator=g)]
    )
    xs, c, log_w = x.numpy(), dist.points.numpy(), dist.log_weights.numpy()
    sq = ((xs[:, None, :] - c[None]) ** 2).sum(-1)
    log_norm = math.log(2 * math.pi * dist.std**2)
    reference = torch.from_numpy(logsumexp(log_w - sq / (2 * dist.std**2), axis=1) - log_norm)
    size = 1 + reference.abs() + abs(log_norm)
    ratio = (dist.log_prob(x) - reference).abs() / (torch.finfo(torch.float64).eps * size)
    assert ratio.max().item() <= 8, ratio.max().item()
