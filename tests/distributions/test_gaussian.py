"""Gaussians against SciPy and torch.distributions: densities, entropies, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from probgen.core import InvalidInput
from probgen.distributions import DiagonalGaussian, Gaussian, StandardNormal


def _random_covariance(d: int, seed: int) -> torch.Tensor:
    a = torch.randn(d, d, generator=torch.Generator().manual_seed(seed))
    return a @ a.T + 0.5 * torch.eye(d)


@settings(max_examples=15, deadline=None)
@given(d=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_gaussian_log_prob_and_entropy_match_scipy(d: int, seed: int) -> None:
    mean = torch.randn(d, generator=torch.Generator().manual_seed(seed + 1))
    cov = _random_covariance(d, seed)
    dist = Gaussian(mean, cov)
    x = torch.randn(6, d, generator=torch.Generator().manual_seed(seed + 2))
    ref = stats.multivariate_normal(mean.numpy(), cov.numpy())
    np.testing.assert_allclose(dist.log_prob(x).numpy(), ref.logpdf(x.numpy()), rtol=1e-10)
    assert dist.entropy().value == pytest.approx(ref.entropy(), rel=1e-12)
    torch.testing.assert_close(dist.covariance, cov)
    torch.testing.assert_close(dist.scale_tril @ dist.scale_tril.T, cov)


def test_diagonal_gaussian_on_images_matches_torch_normal() -> None:
    mean = torch.randn(2, 3, 4)
    std = torch.rand(2, 3, 4) + 0.2
    dist = DiagonalGaussian(mean, std)
    assert dist.event_shape == (2, 3, 4)
    x = torch.randn(5, 2, 3, 4)
    ref = torch.distributions.Independent(torch.distributions.Normal(mean, std), 3)
    torch.testing.assert_close(dist.log_prob(x), ref.log_prob(x))
    assert dist.entropy().value == pytest.approx(ref.entropy().item(), rel=1e-12)
    torch.testing.assert_close(dist.std, std)
    torch.testing.assert_close(dist.variance, std.square())
    torch.testing.assert_close(dist.covariance, torch.diag(std.square().flatten()))
    assert dist.sample(7).shape == (7, 2, 3, 4)


def test_diagonal_equals_full_gaussian_with_diagonal_covariance() -> None:
    mean, std = torch.tensor([0.3, -2.0, 1.0]), torch.tensor([0.5, 1.5, 2.0])
    x = torch.randn(10, 3)
    torch.testing.assert_close(
        DiagonalGaussian(mean, std).log_prob(x), Gaussian(mean, torch.diag(std**2)).log_prob(x)
    )


def test_standard_normal_log_prob_and_entropy() -> None:
    dist = StandardNormal((1, 4, 4))
    x = torch.randn(3, 1, 4, 4)
    expected = -0.5 * x.square().flatten(1).sum(1) - 8.0 * math.log(2.0 * math.pi)
    torch.testing.assert_close(dist.log_prob(x), expected)
    assert dist.entropy().value == pytest.approx(8.0 * (1.0 + math.log(2.0 * math.pi)))
    assert dist.entropy().kind == "exact" and dist.entropy().stderr == 0.0
    assert list(dist.parameters()) == []


@pytest.mark.parametrize(
    "make",
    [
        lambda: DiagonalGaussian(torch.tensor([1.0, -1.0]), torch.tensor([0.5, 2.0])),
        lambda: Gaussian(torch.tensor([1.0, -1.0]), torch.tensor([[1.0, 0.9], [0.9, 1.0]])),
    ],
)
def test_sample_moments(make) -> None:
    dist = make()
    x = dist.sample(200_000, generator=torch.Generator().manual_seed(0))
    n = len(x)
    # Mean within 5 standard errors; covariance within 5 standard errors of its entries.
    se_mean = dist.covariance.diagonal().sqrt() / math.sqrt(n)
    assert ((x.mean(0) - dist.mean).abs() < 5 * se_mean).all()
    cov = dist.covariance
    se_cov = ((cov.diagonal()[:, None] * cov.diagonal()[None] + cov**2) / n).sqrt()
    assert ((torch.cov(x.T) - cov).abs() < 5 * se_cov).all()


def test_learnable_diagonal_gaussian_gets_gradients_through_samples_and_log_prob() -> None:
    dist = DiagonalGaussian(torch.zeros(3), torch.ones(3), learnable=True)
    assert {n for n, _ in dist.named_parameters()} == {"loc", "log_scale"}
    eps_gen = torch.Generator().manual_seed(5)
    x = dist.sample(4, generator=eps_gen)
    x.sum().backward()
    # x = μ + σ ε: ∂Σx/∂μ = n, ∂Σx/∂log σ = Σ_b σ ε_b = Σ_b x_b (μ = 0)
    torch.testing.assert_close(dist.loc.grad, torch.full((3,), 4.0))
    torch.testing.assert_close(dist.log_scale.grad, x.detach().sum(0))
    dist.zero_grad()
    dist.loss(torch.randn(8, 3)).backward()
    assert dist.loc.grad is not None and dist.log_scale.grad is not None


def test_buffers_follow_dtype() -> None:
    dist = Gaussian(torch.zeros(2), torch.eye(2)).to(torch.float32)
    assert dist.sample(3).dtype == torch.float32 and dist.mean.dtype == torch.float32


def test_invalid_parameters_raise() -> None:
    with pytest.raises(InvalidInput, match="std"):
        DiagonalGaussian(torch.zeros(2), torch.tensor([1.0, 0.0]))
    with pytest.raises(InvalidInput, match="broadcastable"):
        DiagonalGaussian(torch.zeros(2), torch.ones(3))
    with pytest.raises(InvalidInput, match="positive definite"):
        Gaussian(torch.zeros(2), torch.tensor([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(InvalidInput, match="symmetric"):
        Gaussian(torch.zeros(2), torch.tensor([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(InvalidInput, match="shape"):
        Gaussian(torch.zeros(2), torch.eye(3))
