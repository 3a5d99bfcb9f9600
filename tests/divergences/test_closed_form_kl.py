"""Closed-form Gaussian KL against torch.distributions and against its defining properties."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import distributions as td

from probgen.core import InvalidInput
from probgen.distributions import DiagonalGaussian, Gaussian, StandardNormal
from probgen.divergences import (
    NoClosedForm,
    kl_diagonal_gaussian,
    kl_divergence,
    kl_gaussian,
)

SETTINGS = settings(max_examples=20, deadline=None, derandomize=True)


def random_spd(d: int, generator: torch.Generator, batch: tuple[int, ...] = ()) -> torch.Tensor:
    a = torch.randn(*batch, d, d, generator=generator)
    return a @ a.mT + 0.1 * torch.eye(d)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), d=st.integers(1, 4))
def test_kl_gaussian_matches_torch(seed: int, d: int) -> None:
    g = torch.Generator().manual_seed(seed)
    mean_p, mean_q = torch.randn(2, 3, d, generator=g)
    cov_p, cov_q = random_spd(d, g, (3,)), random_spd(d, g, (3,))
    expected = td.kl_divergence(
        td.MultivariateNormal(mean_p, cov_p), td.MultivariateNormal(mean_q, cov_q)
    )
    torch.testing.assert_close(kl_gaussian(mean_p, cov_p, mean_q, cov_q), expected)


def test_kl_gaussian_broadcasts_leading_dims() -> None:
    g = torch.Generator().manual_seed(1)
    mean_p = torch.randn(4, 1, 3, generator=g)
    cov_p = random_spd(3, g, (4, 1))
    mean_q = torch.randn(5, 3, generator=g)
    cov_q = random_spd(3, g)
    kl = kl_gaussian(mean_p, cov_p, mean_q, cov_q)
    assert kl.shape == (4, 5)
    torch.testing.assert_close(kl[2, 3], kl_gaussian(mean_p[2, 0], cov_p[2, 0], mean_q[3], cov_q))


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), shape=st.sampled_from([(6, 1), (6, 3), (2, 3, 2, 2)]))
def test_kl_diagonal_matches_torch(seed: int, shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(seed)
    mean_p, mean_q = torch.randn(2, *shape, generator=g)
    std_p, std_q = torch.rand(2, *shape, generator=g) * 2.0 + 0.1
    event = len(shape) - 1
    expected = td.kl_divergence(
        td.Independent(td.Normal(mean_p, std_p), event),
        td.Independent(td.Normal(mean_q, std_q), event),
    )
    kl = kl_diagonal_gaussian(mean_p, std_p, mean_q, std_q)
    assert kl.shape == (shape[0],)
    torch.testing.assert_close(kl, expected)


def test_kl_diagonal_against_standard_normal_with_floats() -> None:
    """The VAE's KL(q(z|x) ‖ N(0, I)) = ½ Σ (μ² + σ² − 1 − ln σ²), with q given by (B, Z)."""
    mean, std = torch.randn(5, 4), torch.rand(5, 4) + 0.2
    expected = 0.5 * (mean.square() + std.square() - 1.0 - std.square().log()).sum(-1)
    torch.testing.assert_close(kl_diagonal_gaussian(mean, std, 0.0, 1.0), expected)


def test_kl_diagonal_event_dims() -> None:
    mean_p, std_p = torch.randn(2, 3, 4), torch.rand(2, 3, 4) + 0.5
    full = kl_diagonal_gaussian(mean_p, std_p, 0.0, 1.0, event_dims=0)
    assert full.shape == (2, 3, 4)
    torch.testing.assert_close(
        kl_diagonal_gaussian(mean_p, std_p, 0.0, 1.0, event_dims=1), full.sum(-1)
    )
    torch.testing.assert_close(kl_diagonal_gaussian(mean_p, std_p, 0.0, 1.0), full.sum((1, 2)))
    with pytest.raises(InvalidInput, match="event_dims"):
        kl_diagonal_gaussian(mean_p, std_p, 0.0, 1.0, event_dims=4)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), d=st.integers(1, 4))
def test_kl_nonnegative_and_zero_only_at_equality(seed: int, d: int) -> None:
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(d, generator=g)
    cov_p, cov_q = random_spd(d, g), random_spd(d, g)
    assert kl_gaussian(mean, cov_p, mean, cov_q) >= 0.0
    assert kl_gaussian(mean, cov_p, mean, cov_p).abs() < 1e-10
    # With Σ_p = Σ_q the KL is exactly ½ δᵀ Σ⁻¹ δ > 0 for a shift δ ≠ 0.
    shift = torch.randn(d, generator=g)
    shift = 0.1 * shift / shift.norm()
    expected = 0.5 * shift @ torch.linalg.solve(cov_q, shift)
    kl_shift = kl_gaussian(mean, cov_q, mean + shift, cov_q)
    torch.testing.assert_close(kl_shift, expected)
    assert kl_shift > 0.0


def test_kl_divergence_dispatch_diagonal_and_standard() -> None:
    p = DiagonalGaussian(
        torch.tensor([[0.5, -1.0], [0.0, 2.0]]), torch.tensor([[1.5, 0.3], [1.0, 2.0]])
    )
    q = StandardNormal((2, 2))
    expected = kl_diagonal_gaussian(p.mean, p.std, 0.0, 1.0, event_dims=2)
    assert kl_divergence(p, q).shape == ()
    torch.testing.assert_close(kl_divergence(p, q), expected)
    torch.testing.assert_close(kl_divergence(q, q), torch.tensor(0.0))


def test_kl_divergence_dispatch_full_and_mixed() -> None:
    g = torch.Generator().manual_seed(3)
    full = Gaussian(torch.randn(3, generator=g), random_spd(3, g))
    diag = DiagonalGaussian(torch.randn(3, generator=g), torch.rand(3, generator=g) + 0.5)
    for p, q in [(full, diag), (diag, full), (full, full), (StandardNormal((3,)), full)]:
        expected = td.kl_divergence(
            td.MultivariateNormal(p.mean, p.covariance), td.MultivariateNormal(q.mean, q.covariance)
        )
        torch.testing.assert_close(kl_divergence(p, q), expected)


def test_kl_divergence_errors() -> None:
    with pytest.raises(InvalidInput, match="event shapes differ"):
        kl_divergence(StandardNormal((2,)), StandardNormal((3,)))
    with pytest.raises(NoClosedForm, match="kl_monte_carlo"):
        kl_divergence(StandardNormal((2,)), td.Normal(0.0, 1.0))


def test_kl_gaussian_rejects_bad_covariance() -> None:
    with pytest.raises(InvalidInput, match="positive definite"):
        kl_gaussian(torch.zeros(2), -torch.eye(2), torch.zeros(2), torch.eye(2))
    with pytest.raises(InvalidInput, match="cov_q"):
        kl_gaussian(torch.zeros(2), torch.eye(2), torch.zeros(2), torch.eye(3))
