"""MADE starts as exactly the product of its fitted marginals; the mixtures' log-scale floor."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from sklearn.mixture import GaussianMixture

from probgen.conditions import ConditionSpec
from probgen.core import DataInitialized, InvalidInput
from probgen.models.autoregressive import (
    Bernoulli,
    Categorical,
    MADEModel,
    MixtureOfGaussians,
    MixtureOfLogistics,
)

EPS = torch.finfo(torch.float64).eps


def correlated(n: int) -> torch.Tensor:
    """(n, 3) data with bimodal, skewed and dependent columns."""
    a = torch.cat([torch.randn(n // 2) - 2, 0.5 * torch.randn(n - n // 2) + 1.5])
    b = a**2 + 0.3 * torch.randn(n)
    c = torch.randn(n).exp()
    return torch.stack([a, b, c], dim=1)


def fitted_marginals(x: torch.Tensor, components: int, seed: int) -> list[GaussianMixture]:
    """The 1-D EM fits the model makes, with the random states it draws after ``seed``."""
    torch.manual_seed(seed)
    fits = []
    for col in x.T:
        state = int(torch.randint(2**31 - 1, ()).item())
        k = min(components, len(col))
        fits.append(GaussianMixture(k, random_state=state).fit(col.numpy().reshape(-1, 1)))
    return fits


def test_initialised_gaussian_made_is_the_product_of_em_marginals():
    x = correlated(300)
    model = MADEModel((3,), MixtureOfGaussians(4), hidden=(32, 32))
    assert isinstance(model, DataInitialized)
    torch.manual_seed(7)
    model.initialize_from_data(x)
    fits = fitted_marginals(x, 4, seed=7)
    points = torch.cat([x[:50], 3 * torch.randn(50, 3)])  # training points and far-off ones
    expected = sum(
        torch.as_tensor(f.score_samples(points[:, i : i + 1].numpy())) for i, f in enumerate(fits)
    )
    got = model.log_prob(points)
    tol = 100 * EPS * expected.abs().max().item()
    torch.testing.assert_close(got, expected, rtol=0, atol=tol)


def test_fewer_examples_than_components_copy_components_and_keep_the_fit():
    x = correlated(3)
    model = MADEModel((3,), MixtureOfGaussians(10), hidden=(16,))
    torch.manual_seed(1)
    model.initialize_from_data(x)
    fits = fitted_marginals(x, 10, seed=1)
    assert [f.n_components for f in fits] == [3, 3, 3]
    points = torch.randn(20, 3)
    expected = sum(
        torch.as_tensor(f.score_samples(points[:, i : i + 1].numpy())) for i, f in enumerate(fits)
    )
    got = model.log_prob(points)
    torch.testing.assert_close(got, expected, rtol=0, atol=100 * EPS * expected.abs().max().item())


def test_logistic_components_match_the_em_components_mean_and_variance():
    x = correlated(200)[:, :1]
    model = MADEModel((1,), MixtureOfLogistics(3), hidden=(8,))
    torch.manual_seed(3)
    model.initialize_from_data(x)
    (fit,) = fitted_marginals(x, 3, seed=3)
    grid = torch.linspace(-60, 60, 600_001).unsqueeze(1)
    p = model.log_prob(grid).exp()
    mass = torch.trapezoid(p, grid[:, 0])
    mean = torch.trapezoid(p * grid[:, 0], grid[:, 0])
    second = torch.trapezoid(p * grid[:, 0] ** 2, grid[:, 0])
    w, mu, var = (
        torch.as_tensor(a).reshape(3) for a in (fit.weights_, fit.means_, fit.covariances_)
    )
    torch.testing.assert_close(mass, torch.tensor(1.0), rtol=0, atol=1e-8)
    torch.testing.assert_close(mean, (w * mu).sum(), rtol=0, atol=1e-7)
    torch.testing.assert_close(second, (w * (var + mu**2)).sum(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("conditional, levels", [(Bernoulli(), 2), (Categorical(3), 3)])
def test_discrete_initialisation_is_the_add_one_frequencies(conditional, levels):
    x = torch.randint(levels, (40, 3)).double()
    x[:, 2] = 0  # a column where every other level has count 0
    model = MADEModel((3,), conditional, hidden=(16,))
    model.initialize_from_data(x)
    grid = torch.tensor(list(itertools.product(range(levels), repeat=3)), dtype=torch.float64)
    counts = torch.stack([torch.bincount(c.long(), minlength=levels) for c in x.T])  # (3, K)
    log_freq = ((counts + 1) / (len(x) + levels)).log()
    expected = sum(log_freq[i, grid[:, i].long()] for i in range(3))
    torch.testing.assert_close(model.log_prob(grid), expected, rtol=0, atol=100 * EPS)
    torch.testing.assert_close(model.log_prob(grid).logsumexp(0), torch.tensor(0.0))


def test_initialisation_ignores_the_condition_and_checks_its_input():
    x = correlated(100)
    c = torch.randint(3, (100,))
    model = MADEModel((3,), MixtureOfGaussians(2), hidden=(16,), condition=ConditionSpec(classes=3))
    per_class = lambda: [model.log_prob(x[:5], condition=torch.full((5,), k)) for k in range(3)]  # noqa: E731
    assert (per_class()[0] - per_class()[1]).abs().min() > 1e-6  # the random start depends on c
    model.initialize_from_data(x, c)
    lp = per_class()
    torch.testing.assert_close(lp[0], lp[1], rtol=0, atol=0)
    torch.testing.assert_close(lp[0], lp[2], rtol=0, atol=0)
    with pytest.raises(InvalidInput, match="no examples"):
        model.initialize_from_data(x[:0])
    with pytest.raises(InvalidInput):
        model.initialize_from_data(x[:, :2])


@pytest.mark.parametrize("mixture", [MixtureOfGaussians(2), MixtureOfLogistics(2)])
def test_log_scales_below_the_floor_give_the_density_at_the_floor(mixture):
    """A component collapsing onto a data value is held at s = e^-7: its density there is finite."""
    x = torch.tensor([[0.0], [0.3]])
    params = lambda log_s: torch.tensor([[[0.0, 0.0, 0.0, 1.0, log_s, 0.0]]]).expand(2, 1, 6)  # noqa: E731
    floor = mixture.log_prob(params(-7.0), x)
    torch.testing.assert_close(mixture.log_prob(params(-300.0), x), floor, rtol=0, atol=0)
    # closed form at the floor: ½ f(z = x e^7) e^7 + ½ f(x - 1), with f the standard density
    z = torch.stack([x[:, 0] * math.exp(7), x[:, 0] - 1], dim=-1)
    expected = torch.logsumexp(
        mixture.standard_log_prob(z) + math.log(0.5) + torch.tensor([7.0, 0]), -1
    )
    torch.testing.assert_close(floor[:, 0], expected, rtol=0, atol=100 * EPS * expected.abs().max())
    above = mixture.log_prob(params(-6.0), x)  # a scale above the floor is left as it is
    assert (above - floor)[0].abs().item() > 0.9  # at x = 0 the narrow component dominates
    with pytest.raises(InvalidInput, match="min_log_scale"):
        type(mixture)(2, min_log_scale=-math.inf)


def test_more_examples_than_the_cap_fit_a_random_subset_of_them():
    x = correlated(400)
    model = MADEModel((3,), MixtureOfGaussians(2), hidden=(16,))
    model.init_examples = 100
    torch.manual_seed(5)
    model.initialize_from_data(x)
    reference = MADEModel((3,), MixtureOfGaussians(2), hidden=(16,))
    torch.manual_seed(5)
    subset = x[torch.randperm(400)[:100]]
    reference.initialize_from_data(subset)  # draws the EM seeds the model drew after its subset
    full = MADEModel((3,), MixtureOfGaussians(2), hidden=(16,))
    full.initialize_from_data(x)
    points = torch.randn(30, 3)
    torch.testing.assert_close(model.log_prob(points), reference.log_prob(points))
    assert (model.log_prob(points) - full.log_prob(points)).abs().max() > 1e-3
