"""BayesianModel: selection, players, the predictive, sampling, uncertainty off the data."""

from __future__ import annotations

import math

import pytest
import torch

from probgen.bayes import SGLD, BayesianModel, MeanField, Predictive, select_parameters
from probgen.core import InvalidInput, Likelihood
from probgen.models.flows import MAF
from probgen.models.gaussian import GaussianModel


def test_select_parameters_by_module_or_tensor_path():
    flow = MAF((2,), transforms=2, hidden=(8,))
    every = select_parameters(flow, None)
    assert list(every) == [n for n, _ in flow.named_parameters()]
    one_module = next(n for n in every if n.endswith("weight")).rpartition(".")[0]
    chosen = select_parameters(flow, [one_module])
    assert chosen and all(n.startswith(one_module + ".") for n in chosen)
    with pytest.raises(InvalidInput, match=r"names no parameters.*valid paths include"):
        select_parameters(flow, ["decoder"])


def test_players_substitute_the_posterior_tensors():
    g = GaussianModel((2,))
    model = BayesianModel(g, MeanField(), num_data=5, layers=["loc"])
    q = model.posterior
    assert model.players() == {"model": [q.loc[0], q.rho[0], g.tril, g.log_diag]}
    s = BayesianModel(GaussianModel((2,)), SGLD(0.1), num_data=5, layers=["loc"])
    assert s.players()["model"] == list(s.model.parameters())


def test_bind_once_and_validate():
    q = MeanField()
    BayesianModel(GaussianModel((2,)), q, num_data=5)
    with pytest.raises(InvalidInput, match="already bound"):
        BayesianModel(GaussianModel((2,)), q, num_data=5)
    with pytest.raises(InvalidInput, match="num_data"):
        BayesianModel(GaussianModel((2,)), MeanField(), num_data=0)
    with pytest.raises(InvalidInput, match="samples"):
        BayesianModel(GaussianModel((2,)), MeanField(), num_data=3, samples=0)


def test_log_prob_is_the_log_mean_of_the_draws():
    model = BayesianModel(GaussianModel((2,)), MeanField(init_std=0.5), num_data=5, samples=7)
    assert model.likelihood is Likelihood.BOUND  # Jensen: E[log p̂] ≤ log p
    x = torch.randn(4, 2)
    g = torch.Generator().manual_seed(3)
    ll = model.log_likelihoods(x, generator=g)
    assert ll.shape == (7, 4)
    draws = [model.posterior.draw(torch.Generator().manual_seed(3)) for _ in range(1)]
    first = model.run(draws[0], lambda m: m.log_prob(x))
    assert torch.allclose(ll[0], first)  # the first draw of the same generator
    pred = Predictive(ll)
    assert torch.allclose(pred.log_prob, ll.exp().mean(dim=0).log())
    assert torch.allclose(pred.uncertainty, ll.var(dim=0))
    with pytest.raises(InvalidInput, match=r"expected shape \(B, 2\)"):
        model.log_prob(torch.randn(4, 3))


def test_stderr_is_the_delta_method_error():
    """se(log p̂) = sd(w)/(√S mean w): compare with the spread over independent repeats."""
    ll = torch.randn(20000, 1) * 0.4  # w = e^ℓ log-normal with a known spread
    s = 100
    pred = Predictive(ll[:s])
    repeats = torch.stack([Predictive(chunk).log_prob for chunk in ll.split(s)])  # (200, 1)
    theory = math.sqrt(math.expm1(0.4**2) / s)  # sd(w)/E(w) for log-normal w, over √S
    assert abs(repeats.std().item() / theory - 1) < 0.15
    assert abs(pred.stderr.item() / theory - 1) < 0.35


def test_sample_draws_weights_then_data():
    model = BayesianModel(GaussianModel((3,)), MeanField(init_std=0.5), num_data=5, samples=4)
    x = model.sample(10, generator=torch.Generator().manual_seed(0))
    y = model.sample(10, generator=torch.Generator().manual_seed(0))
    assert x.shape == (10, 3) and torch.equal(x, y)
    with pytest.raises(InvalidInput, match="draws"):
        model.sample(3, draws=4)


def test_uncertainty_is_higher_away_from_the_data():
    """A mean-field MAF trained on a blob: Var_θ log p_θ(x) is larger far off the data."""
    torch.manual_seed(0)
    data = 0.5 * torch.randn(100, 2)
    model = BayesianModel(
        MAF((2,), transforms=2, hidden=(16,)), MeanField(prior_std=1.0), num_data=100, samples=32
    )
    opt = torch.optim.Adam(model.players()["model"], lr=1e-2)
    for _ in range(200):
        loss = model.loss(data)
        opt.zero_grad()
        loss.backward()
        opt.step()
    angles = torch.linspace(0, 2 * math.pi, 17)[:-1]
    far = 4.0 * torch.stack([angles.cos(), angles.sin()], dim=1)
    with torch.no_grad():
        near_score = model.uncertainty(data[:16])
        far_score = model.uncertainty(far)
    assert near_score.median() * 10 < far_score.median()
