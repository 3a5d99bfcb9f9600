"""Exact conditional laws of the 2-D shapes: densities, Bayes' rule, sampling, errors."""

from __future__ import annotations

import math

import pytest
import torch

from probgen.core import InvalidInput
from probgen.distributions import (
    ConditionalMixture,
    EightGaussians,
    GaussianMixture,
    RotatedShape,
    TwentyFiveGaussians,
    TwoMoons,
)
from probgen.distributions.shapes import _rotate

MIXTURES = {"8gaussians": EightGaussians, "25gaussians": TwentyFiveGaussians}


def _grid(half_width: float, points: int) -> tuple[torch.Tensor, float]:
    """A square grid of points (points², 2) on [−w, w]² and the area of one cell."""
    axis = torch.linspace(-half_width, half_width, points)
    h = (axis[1] - axis[0]).item()
    return torch.cartesian_prod(axis, axis), h * h


def _one_gaussian(mean: tuple[float, float], std: float) -> GaussianMixture:
    means = torch.tensor([mean])
    return GaussianMixture.isotropic(torch.ones(1), means, std)


@pytest.mark.parametrize("name", MIXTURES)
def test_each_component_density_integrates_to_one(name: str) -> None:
    """∫ p(x | k) dx = 1 for corner, edge and centre k, by a Riemann sum on a grid
    (spectrally exact for a Gaussian sampled finer than its σ)."""
    truth = ConditionalMixture(MIXTURES[name]())
    grid, cell = _grid(6.5, 901)
    for k in (0, 1, len(truth.weights) // 2, len(truth.weights) - 1):
        labels = torch.full((len(grid),), k)
        mass = truth.log_prob(grid, condition=labels).exp().sum() * cell
        assert mass.item() == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("name", MIXTURES)
def test_bayes_rule_recovers_the_mixture(name: str, dtype: torch.dtype) -> None:
    """Σ_k π_k p(x | k) = p(x) of the unconditional mixture, and p(k | x) its responsibilities."""
    mixture = MIXTURES[name]()
    truth = ConditionalMixture(mixture)
    x = 2.0 * torch.randn(500, 2)
    k = len(truth.weights)
    per_class = torch.stack(
        [truth.log_prob(x, condition=torch.full((len(x),), j)) for j in range(k)], dim=1
    )  # (B, K)
    joint = per_class + truth.weights.log()
    marginal = mixture.log_prob(x)
    eps = torch.finfo(dtype).eps
    tol = 50 * eps * (1.0 + marginal.abs())
    assert ((torch.logsumexp(joint, 1) - marginal).abs() <= tol).all()
    assert ((truth.log_prob(x) - marginal).abs() <= tol).all()  # no condition: p(x)
    posterior = torch.softmax(joint, 1)
    assert (posterior - mixture.responsibilities(x)).abs().max() <= 50 * eps


@pytest.mark.parametrize("name", MIXTURES)
def test_conditional_sampling_reproduces_each_component(name: str) -> None:
    """Mean and variance of sample(n, condition=k) against μ_k and σ², within 5 standard errors."""
    truth = ConditionalMixture(MIXTURES[name]())
    n = 20_000
    generator = torch.Generator().manual_seed(1)
    sigma2 = truth.covariances[0, 0, 0]
    for k in (0, len(truth.weights) // 2, len(truth.weights) - 1):
        x = truth.sample(n, condition=k, generator=generator)
        mean_se = (sigma2 / n).sqrt()
        assert ((x.mean(0) - truth.means[k]).abs() <= 5 * mean_se).all()
        var_se = sigma2 * math.sqrt(2.0 / (n - 1))
        assert ((x.var(0) - sigma2).abs() <= 5 * var_se).all()
        cov = torch.cov(x.T)[0, 1]
        assert cov.abs() <= 5 * sigma2 / math.sqrt(n)


def test_joint_draws_follow_the_weights_and_components() -> None:
    """sample_joint: k ~ π (counts within 5 SE) and the rows of each k centred on μ_k."""
    weights = torch.tensor([0.2, 0.5, 0.3])
    means = torch.tensor([[-3.0, 0.0], [0.0, 2.0], [3.0, -1.0]])
    truth = ConditionalMixture(GaussianMixture.isotropic(weights, means, 0.5))
    n = 30_000
    x, k = truth.sample_joint(n, torch.Generator().manual_seed(2))
    assert k.dtype == torch.long and x.shape == (n, 2)
    counts = torch.bincount(k, minlength=3).double()
    se = (n * weights * (1 - weights)).sqrt()
    assert ((counts - n * weights).abs() <= 5 * se).all()
    for j in range(3):
        rows = x[k == j]
        assert ((rows.mean(0) - means[j]).abs() <= 5 * 0.5 / math.sqrt(len(rows))).all()


def test_condition_errors() -> None:
    truth = ConditionalMixture(EightGaussians())
    x = torch.zeros(3, 2)
    with pytest.raises(InvalidInput, match=r"class labels must lie in 0\.\.7"):
        truth.log_prob(x, condition=torch.tensor([0, 8, 1]))
    with pytest.raises(InvalidInput, match="expected labels of shape"):
        truth.log_prob(x, condition=torch.tensor([0, 1]))
    with pytest.raises(InvalidInput, match="expected a GaussianMixture"):
        ConditionalMixture(TwoMoons())
    rotated = RotatedShape(TwoMoons())  # no closed-form marginal: a condition is required
    assert not rotated.unconditional_mode
    with pytest.raises(InvalidInput, match="no unconditional mode"):
        rotated.log_prob(x)


@pytest.mark.parametrize("theta", [0.0, 0.7, 4.0])
def test_rotated_density_integrates_to_one_and_rotates_back(theta: float) -> None:
    """∫ p(x | θ) dx = 1, and p(x | θ) = p_shape(R(−θ) x) exactly."""
    shape = EightGaussians()
    truth = RotatedShape(shape)
    grid, cell = _grid(6.5, 901)
    c = torch.full((len(grid), 1), theta)
    log_p = truth.log_prob(grid, condition=c)
    assert (log_p.exp().sum() * cell).item() == pytest.approx(1.0, abs=1e-9)
    back = _rotate(grid, torch.full((len(grid),), -theta))
    assert torch.allclose(log_p, shape.log_prob(back), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", MIXTURES)
def test_rotation_marginal_is_the_average_over_the_angle(name: str) -> None:
    """The closed-form marginal (Rice law) against 1/2π ∫ p(x | θ) dθ by the periodic
    trapezoid rule (spectrally exact for a smooth periodic integrand), and ∫ p = 1."""
    truth = RotatedShape(MIXTURES[name]())
    assert truth.unconditional_mode
    x = 1.5 * torch.randn(64, 2)
    angles = 2 * math.pi * torch.arange(4096) / 4096
    conditional = torch.stack(
        [truth.log_prob(x, condition=torch.full((len(x), 1), a.item())) for a in angles]
    )  # (A, B)
    average = torch.logsumexp(conditional, 0) - math.log(len(angles))
    assert torch.allclose(truth.log_prob(x), average, rtol=0, atol=1e-9)
    grid, cell = _grid(6.5, 801)
    assert (truth.log_prob(grid).exp().sum() * cell).item() == pytest.approx(1.0, abs=1e-8)


def test_rotated_sampling_reproduces_the_rotated_law() -> None:
    """sample(n, condition=θ) of a rotated N((2, 0), σ²I) has mean R(θ)(2, 0) and variance σ²;
    sample_joint draws θ ~ U[0, 2π) (mean π, variance π²/3)."""
    std, theta, n = 0.3, math.pi / 3, 20_000
    truth = RotatedShape(_one_gaussian((2.0, 0.0), std))
    generator = torch.Generator().manual_seed(3)
    x = truth.sample(n, condition=torch.tensor([theta]), generator=generator)
    expected = torch.tensor([2 * math.cos(theta), 2 * math.sin(theta)])
    assert ((x.mean(0) - expected).abs() <= 5 * std / math.sqrt(n)).all()
    assert ((x.var(0) - std**2).abs() <= 5 * std**2 * math.sqrt(2 / (n - 1))).all()
    x, c = truth.sample_joint(n, generator)
    assert c.shape == (n, 1) and (c >= 0).all() and (c < 2 * math.pi).all()
    assert abs(c.mean().item() - math.pi) <= 5 * math.pi / math.sqrt(3 * n)
    back = _rotate(x, -c[:, 0])  # each row rotated back by its own angle: the shape again
    assert ((back.mean(0) - torch.tensor([2.0, 0.0])).abs() <= 5 * std / math.sqrt(n)).all()
