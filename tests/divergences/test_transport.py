"""Wasserstein distances against closed forms, CDF integrals and each other."""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.special import ndtr, ndtri

from probgen.core import InvalidInput
from probgen.divergences import (
    sliced_wasserstein,
    wasserstein,
    wasserstein1_1d,
    wasserstein1_cdf,
    wasserstein_1d,
)

SETTINGS = settings(max_examples=15, deadline=None, derandomize=True)


def gaussian_cdf(mean: float, std: float):
    return lambda x: ndtr((x - mean) / std)


@SETTINGS
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 40),
    m=st.integers(1, 40),
    p=st.sampled_from([1.0, 2.0, 3.0]),
)
def test_quantile_formula_equals_exact_transport(seed: int, n: int, m: int, p: float) -> None:
    """The 1-D quantile formula equals the LP optimum (assignment if N = M, else simplex)."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, generator=g), 2.0 * torch.rand(m, generator=g)
    torch.testing.assert_close(wasserstein_1d(x, y, p), wasserstein(x[:, None], y[:, None], p))
    torch.testing.assert_close(wasserstein_1d(x, x[:m], p), wasserstein(x, x[:m], p))


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 50), m=st.integers(1, 50))
def test_w1_matches_scipy(seed: int, n: int, m: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, generator=g), torch.randn(m, generator=g) * 0.5 + 1.0
    expected = scipy.stats.wasserstein_distance(x.numpy(), y.numpy())
    assert wasserstein1_1d(x, y).item() == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_w1_from_cdfs_of_gaussians() -> None:
    grid = torch.linspace(-20.0, 20.0, 40_001)
    w_shift = wasserstein1_cdf(gaussian_cdf(0.3, 1.5), gaussian_cdf(-1.2, 1.5), grid)
    torch.testing.assert_close(w_shift, torch.tensor(1.5))
    # unequal scales: ∫ |F − G| dx equals ∫_0^1 |F⁻¹(u) − G⁻¹(u)| du
    u = (torch.arange(1_000_000) + 0.5) / 1_000_000
    z = ndtri(u)
    by_quantiles = ((0.3 + 1.5 * z) - (-1.2 + 0.7 * z)).abs().mean()
    w_scale = wasserstein1_cdf(gaussian_cdf(0.3, 1.5), gaussian_cdf(-1.2, 0.7), grid)
    torch.testing.assert_close(w_scale, by_quantiles, rtol=1e-5, atol=1e-6)


def test_w1_from_empirical_cdfs_equals_sample_formula() -> None:
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(30, generator=g), torch.randn(45, generator=g) + 0.5
    grid = torch.linspace(-6.0, 6.0, 120_001)
    step = (grid[1] - grid[0]).item()

    def empirical_cdf(s: torch.Tensor):
        return lambda t: (s[None, :] <= t[:, None]).double().mean(dim=1)

    # the trapezoid rule errs by at most one grid step per unit of total variation of |F − G|
    from_cdfs = wasserstein1_cdf(empirical_cdf(x), empirical_cdf(y), grid)
    assert abs(from_cdfs - wasserstein1_1d(x, y)) <= 2 * step


@pytest.mark.parametrize("p", [1.0, 2.0])
@pytest.mark.parametrize("event_shape", [(3,), (2, 2)])
def test_translation_moves_mass_by_the_shift(p: float, event_shape: tuple[int, ...]) -> None:
    """W_p(μ, μ(· − m)) = ‖m‖ for any empirical μ and any p ≥ 1, equal or unequal sizes."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(60, *event_shape, generator=g)
    shift = torch.randn(*event_shape, generator=g)
    norm = shift.norm()
    torch.testing.assert_close(wasserstein(x, x + shift, p), norm)
    doubled = torch.cat([x, x])[torch.randperm(120, generator=g)]
    torch.testing.assert_close(wasserstein(x, doubled + shift, p), norm)
    torch.testing.assert_close(wasserstein(x, x, p), torch.tensor(0.0))


def test_wasserstein_gradient_is_the_transport_displacement() -> None:
    """dW_2²/dx_i = 2 (x_i − y_σ(i)) / N for the optimal assignment σ; here y = x + m."""
    g = torch.Generator().manual_seed(6)
    x = torch.randn(20, 2, generator=g)
    shift = torch.tensor([0.5, -1.0])
    x_var = x.clone().requires_grad_(True)
    wasserstein(x_var, x + shift, p=2.0).pow(2).backward()
    torch.testing.assert_close(x_var.grad, (-2.0 * shift / 20).expand(20, 2))


def test_sliced_equals_exact_in_one_dimension() -> None:
    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(50, 1, generator=g), torch.rand(70, 1, generator=g)
    for p in (1.0, 2.0):
        torch.testing.assert_close(
            sliced_wasserstein(x, y, n_projections=3, p=p, generator=g), wasserstein_1d(x, y, p)
        )


def test_sliced_of_shifted_sample_matches_closed_form() -> None:
    """For y = x + m, each slice moves by θᵀm, so SW_2² = E(θᵀm)² = ‖m‖²/D.

    (θᵀm)² = ‖m‖² β with β ~ Beta(½, (D−1)/2), Var β = 2(D−1)/(D²(D+2)), which gives
    the Monte Carlo error over K projections.
    """
    d, k = 4, 2000
    g = torch.Generator().manual_seed(8)
    x = torch.randn(500, d, generator=g)
    shift = torch.tensor([1.0, -2.0, 0.5, 3.0])
    sw2 = sliced_wasserstein(x, x + shift, n_projections=k, p=2.0, generator=g).square()
    sq = shift.square().sum()
    stderr = sq * math.sqrt(2 * (d - 1) / (d**2 * (d + 2)) / k)
    assert abs(sw2 - sq / d) < 4 * stderr
    # the sliced distance never exceeds the exact one
    assert sliced_wasserstein(x, x + shift, generator=g) <= wasserstein(x, x + shift)


def test_sliced_is_reproducible_with_a_generator() -> None:
    x, y = torch.randn(30, 3), torch.randn(40, 3) + 1.0
    a = sliced_wasserstein(x, y, generator=torch.Generator().manual_seed(9))
    b = sliced_wasserstein(x, y, generator=torch.Generator().manual_seed(9))
    assert a == b


def test_invalid_inputs() -> None:
    with pytest.raises(InvalidInput, match="p >= 1"):
        wasserstein_1d(torch.randn(5), torch.randn(5), p=0.5)
    with pytest.raises(InvalidInput, match="1-D samples"):
        wasserstein_1d(torch.randn(5, 2), torch.randn(5, 2))
    with pytest.raises(InvalidInput, match=r"y: expected shape \(B, 3\)"):
        wasserstein(torch.randn(5, 3), torch.randn(5, 2))
    with pytest.raises(InvalidInput, match="strictly increasing"):
        wasserstein1_cdf(ndtr, ndtr, torch.tensor([0.0, 0.0, 1.0]))
    with pytest.raises(InvalidInput, match="n_projections"):
        sliced_wasserstein(torch.randn(5, 3), torch.randn(5, 3), n_projections=0)


def test_mixed_dtypes_are_promoted() -> None:
    x, y = torch.randn(8, 2, dtype=torch.float32), torch.randn(11, 2)
    value = wasserstein(x, y)
    assert value.dtype == torch.float64
    torch.testing.assert_close(value, wasserstein(x.double(), y))
