"""Gaussian mixtures and the mixture-based toy shapes against brute force and known values."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from probgen.core import InvalidInput
from probgen.distributions import (
    SHAPES,
    EightGaussians,
    GaussianMixture,
    TwentyFiveGaussians,
    make_shape,
)


def _random_mixture(seed: int) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(4, 3, 3, generator=g)
    covs = a @ a.mT + 0.3 * torch.eye(3)
    return GaussianMixture(torch.rand(4, generator=g) + 0.1, torch.randn(4, 3, generator=g), covs)


def test_log_prob_equals_brute_force_sum_of_scipy_densities() -> None:
    mix = _random_mixture(0)
    x = torch.randn(9, 3)
    brute = sum(
        w.item() * stats.multivariate_normal(m.numpy(), c.numpy()).pdf(x.numpy())
        for w, m, c in zip(mix.weights, mix.means, mix.covariances, strict=True)
    )
    torch.testing.assert_close(mix.log_prob(x), torch.from_numpy(brute).log())


def test_component_log_probs_and_responsibilities() -> None:
    mix = _random_mixture(1)
    x = torch.randn(5, 3)
    comp = mix.component_log_probs(x)
    assert comp.shape == (5, 4)
    for k in range(4):
        ref = stats.multivariate_normal(mix.means[k].numpy(), mix.covariances[k].numpy())
        torch.testing.assert_close(comp[:, k], torch.from_numpy(ref.logpdf(x.numpy())))
    joint = comp.exp() * mix.weights
    torch.testing.assert_close(mix.responsibilities(x), joint / joint.sum(1, keepdim=True))


def test_sample_component_frequencies_match_weights() -> None:
    mix = _random_mixture(2)
    n = 40_000
    _, k = mix.sample_with_components(n, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(k, minlength=4).double()
    chi2 = ((counts - n * mix.weights).square() / (n * mix.weights)).sum().item()
    assert stats.chi2.sf(chi2, df=3) > 1e-3


def test_isotropic_constructor_and_mode_attributes() -> None:
    means = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    mix = GaussianMixture.isotropic(torch.tensor([1.0, 3.0]), means, torch.tensor([0.5, 2.0]))
    torch.testing.assert_close(mix.weights, torch.tensor([0.25, 0.75]))
    torch.testing.assert_close(mix.component_stds, torch.tensor([0.5, 2.0]))
    torch.testing.assert_close(mix.covariances[1], 4.0 * torch.eye(2))


def test_eight_gaussians_recipe_and_entropy() -> None:
    dist = EightGaussians()
    angles = torch.arange(8) * math.pi / 4
    expected = 2 * math.sqrt(2) * torch.stack([angles.cos(), angles.sin()], 1)
    torch.testing.assert_close(dist.means, expected)
    torch.testing.assert_close(dist.component_stds, torch.full((8,), 1 / (2 * math.sqrt(2))))
    h = dist.entropy(n=100_000, generator=torch.Generator().manual_seed(0))
    assert h.kind == "estimate" and 0 < h.stderr < 0.01
    assert abs(h.value - 2.83158) < 3 * h.stderr  # derived in tests/theory/test_shape_entropy.py


def test_pacgan_setups() -> None:
    ring = EightGaussians(radius=1.0, std=0.01)
    torch.testing.assert_close(ring.means.norm(dim=1), torch.ones(8))
    torch.testing.assert_close(ring.component_stds, torch.full((8,), 0.01))
    grid = TwentyFiveGaussians(spacing=2.0, std=0.05)
    assert set(grid.means.flatten().tolist()) == {-4.0, -2.0, 0.0, 2.0, 4.0}
    assert len(torch.unique(grid.means, dim=0)) == 25
    # Well-separated modes: the entropy is log K + the entropy of one component.
    one = math.log(2 * math.pi * math.e * 0.01**2)
    h = ring.entropy(n=20_000, generator=torch.Generator().manual_seed(1))
    assert abs(h.value - (math.log(8) + one)) < 4 * h.stderr


def test_make_shape_and_unknown_name() -> None:
    assert list(SHAPES) == [
        "8gaussians",
        "25gaussians",
        "checkerboard",
        "two_moons",
        "swiss_roll",
        "pinwheel",
        "rings",
        "2spirals",
    ]
    dist = make_shape("8gaussians", radius=1.0, std=0.01)
    assert isinstance(dist, EightGaussians)
    with pytest.raises(InvalidInput, match=r"8gaussians.*2spirals"):
        make_shape("nine_gaussians")


def test_invalid_mixture_parameters_raise() -> None:
    means = torch.zeros(2, 2)
    with pytest.raises(InvalidInput, match="weights"):
        GaussianMixture.isotropic(torch.tensor([1.0, -1.0]), means, 1.0)
    with pytest.raises(InvalidInput, match="covariances"):
        GaussianMixture(torch.ones(2), means, torch.zeros(2, 2, 2))
    with pytest.raises(InvalidInput, match="weights"):
        GaussianMixture(torch.ones(3), means, torch.eye(2).expand(2, 2, 2))
