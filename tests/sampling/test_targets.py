"""Targets: the energy / log-density / score adapters every sampler sees."""

from __future__ import annotations

import pytest
import torch

from probgen.core import InvalidInput
from probgen.distributions import Gaussian
from probgen.sampling import (
    MALA,
    Energy,
    Langevin,
    LogDensity,
    NoEnergy,
    NoiseConditionalScore,
    Score,
)


def _gaussian() -> Gaussian:
    return Gaussian(torch.tensor([1.0, -0.5]), torch.tensor([[2.0, 0.6], [0.6, 0.5]]))


def test_log_density_score_is_the_closed_form_gaussian_score() -> None:
    """∇ log N(x; μ, Σ) = -Σ⁻¹ (x - μ); the energy is -log p."""
    p = _gaussian()
    x = torch.randn(7, 2)
    e, s = LogDensity(p.log_prob).energy_and_score(x)
    exact = -(x - p.mean) @ torch.linalg.inv(p.covariance)
    torch.testing.assert_close(s, exact, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(e, -p.log_prob(x))
    torch.testing.assert_close(LogDensity(p.log_prob).score(x), exact, rtol=1e-12, atol=1e-12)


def test_energy_score_has_no_graph_and_leaves_parameters_without_gradient() -> None:
    net = torch.nn.Linear(3, 1)
    x = torch.randn(4, 3)
    e, s = Energy(net).energy_and_score(x)
    assert e.shape == (4,) and s.shape == (4, 3)
    assert not e.requires_grad and not s.requires_grad
    assert net.weight.grad is None
    torch.testing.assert_close(s, -net.weight.detach().expand(4, 3))


def test_energy_score_works_under_no_grad() -> None:
    with torch.no_grad():
        s = Energy(lambda x: 0.5 * x.square().sum(1)).score(torch.ones(2, 3))
    torch.testing.assert_close(s, -torch.ones(2, 3))


def test_energies_of_any_event_shape() -> None:
    x = torch.randn(5, 2, 3, 3)
    s = Energy(lambda x: 0.5 * x.square().flatten(1).sum(1)).score(x)
    torch.testing.assert_close(s, -x)


def test_energy_with_wrong_shape_is_rejected() -> None:
    with pytest.raises(InvalidInput, match=r"shape \(4,\), got \(4, 3\)"):
        Energy(lambda x: x).energy(torch.randn(4, 3))


def test_score_target_has_no_energy_and_mala_says_so() -> None:
    target = Score(lambda x: -x)
    torch.testing.assert_close(target.score(torch.ones(2, 2)), -torch.ones(2, 2))
    assert Langevin(0.1).run(target, torch.zeros(3, 2), 2).samples.shape == (3, 2)
    with pytest.raises(NoEnergy, match="need an energy"):
        MALA(0.1).run(target, torch.zeros(3, 2), 2)


def test_score_with_wrong_shape_is_rejected() -> None:
    with pytest.raises(InvalidInput, match=r"shape of x \(4, 3\), got \(4,\)"):
        Score(lambda x: x.sum(1)).score(torch.randn(4, 3))


def test_noise_conditional_score_passes_sigma_per_example() -> None:
    seen = []

    def fn(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        seen.append(sigma)
        return -x / (1 + sigma[:, None] ** 2)

    s = NoiseConditionalScore(fn).at(2.0).score(torch.ones(3, 2))
    torch.testing.assert_close(s, -torch.ones(3, 2) / 5)
    torch.testing.assert_close(seen[0], torch.full((3,), 2.0))
