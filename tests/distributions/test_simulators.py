"""The SBI simulators: closed-form posterior against a numerical one, exact likelihoods, moments."""

from __future__ import annotations

import math

import pytest
import torch

from probgen.core import InvalidInput
from probgen.distributions import GaussianLinear, TwoMoonsSimulator


@pytest.mark.parametrize("dim", [1, 2])
def test_gaussian_linear_posterior_matches_the_numerical_posterior(dim: int) -> None:
    """log p(θ | x) in closed form against log p(θ) + log p(x | θ) normalised on a grid."""
    simulator = GaussianLinear(dim=dim, prior_variance=0.3, noise_variance=0.1)
    posterior = simulator.posterior()
    x = torch.tensor([[0.4, -0.25][:dim]])
    axis = torch.linspace(-2.0, 2.0, 4001 if dim == 1 else 801)
    cell = (axis[1] - axis[0]).item() ** dim
    theta = axis[:, None] if dim == 1 else torch.cartesian_prod(axis, axis)
    obs = x.expand(len(theta), dim)
    unnormalised = simulator.log_prior(theta) + simulator.log_likelihood(obs, theta)
    numerical = unnormalised - torch.logsumexp(unnormalised, 0) - math.log(cell)
    exact = posterior.log_prob(theta, condition=obs)
    near = exact > exact.max() - 20  # where the density is not vanishingly small
    assert (exact[near] - numerical[near]).abs().max() <= 1e-9


def test_sbibm_defaults_and_the_posterior_moments() -> None:
    """sbibm's task: covariances 0.1 I, so p(θ | x) = N(x/2, 0.05 I); sampling reproduces it."""
    simulator = GaussianLinear()
    posterior = simulator.posterior()
    assert posterior.event_shape == (10,) and posterior.condition_spec.shape == (10,)
    assert posterior.gain == pytest.approx(0.5) and posterior.variance == pytest.approx(0.05)
    n = 20_000
    x = torch.linspace(-1, 1, 10)
    theta = posterior.sample(n, condition=x, generator=torch.Generator().manual_seed(0))
    assert ((theta.mean(0) - x / 2).abs() <= 5 * math.sqrt(0.05 / n)).all()
    assert ((theta.var(0) - 0.05).abs() <= 5 * 0.05 * math.sqrt(2 / (n - 1))).all()
    prior = posterior.sample(n, generator=torch.Generator().manual_seed(1))  # marginal: prior
    assert ((prior.var(0) - 0.1).abs() <= 5 * 0.1 * math.sqrt(2 / (n - 1))).all()
    entropy = -posterior.log_prob(theta, condition=x.expand(n, 10)).mean()
    assert posterior.entropy().value == pytest.approx(entropy.item(), abs=5 * 0.7 / math.sqrt(n))


def test_gaussian_linear_joint_draws() -> None:
    """(θ, x) pairs: θ ~ N(0, v₀ I) and x − θ ~ N(0, v₁ I), independent of θ."""
    simulator = GaussianLinear(dim=3, prior_variance=0.2, noise_variance=0.05)
    n = 20_000
    theta, x = simulator.sample_joint(n, torch.Generator().manual_seed(2))
    for value, var in ((theta, 0.2), (x - theta, 0.05)):
        assert ((value.mean(0)).abs() <= 5 * math.sqrt(var / n)).all()
        assert ((value.var(0) - var).abs() <= 5 * var * math.sqrt(2 / (n - 1))).all()
    corr = torch.corrcoef(torch.cat([theta, x - theta], 1).T)[:3, 3:]
    assert corr.abs().max() <= 5 / math.sqrt(n)


def test_two_moons_likelihood_integrates_to_one() -> None:
    """∫ p(x | θ) dx = 1 on a fine grid around the half ring (radius 0.1, width 0.01)."""
    simulator = TwoMoonsSimulator()
    theta = torch.tensor([[0.3, -0.5]])
    centre = simulator._shift(theta)[0] + torch.tensor([0.25, 0.0])
    axis = torch.linspace(-0.16, 0.16, 1601)
    cell = (axis[1] - axis[0]).item() ** 2
    x = torch.cartesian_prod(axis, axis) + centre + 0.5 * (axis[1] - axis[0])  # off ρ = 0
    density = simulator.log_likelihood(x, theta.expand(len(x), 2)).exp()
    assert (density.sum() * cell).item() == pytest.approx(1.0, abs=1e-4)


def test_two_moons_simulations_have_the_exact_moments() -> None:
    """E[x | θ] = shift(θ) + (0.25 + 0.1·2/π, 0) and E‖x − shift − (0.25, 0)‖² = 0.1² + 0.01²."""
    simulator = TwoMoonsSimulator()
    n = 40_000
    theta = torch.tensor([[-0.6, 0.2]]).expand(n, 2)
    x = simulator.simulate(theta, torch.Generator().manual_seed(3))
    u = x - simulator._shift(theta) - torch.tensor([0.25, 0.0])
    expected = torch.tensor([0.1 * 2 / math.pi, 0.0])
    se = u.std(0) / math.sqrt(n)
    assert ((u.mean(0) - expected).abs() <= 5 * se).all()
    r2 = u.square().sum(1)
    assert abs(r2.mean().item() - (0.1**2 + 0.01**2)) <= 5 * r2.std().item() / math.sqrt(n)
    assert (u[:, 0] > 0).all()  # the half ring a ∈ (−π/2, π/2)


def test_two_moons_prior_and_errors() -> None:
    simulator = TwoMoonsSimulator()
    theta = simulator.sample_prior(1000, torch.Generator().manual_seed(4))
    assert theta.abs().max() <= 1.0
    assert torch.equal(simulator.log_prior(theta), torch.full((1000,), -math.log(4.0)))
    assert simulator.log_prior(torch.tensor([[1.5, 0.0]])).item() == -math.inf
    assert simulator.posterior() is None
    with pytest.raises(InvalidInput, match="theta: expected shape"):
        simulator.simulate(torch.zeros(3, 3))
    with pytest.raises(InvalidInput, match="variances > 0"):
        GaussianLinear(prior_variance=0.0)
