"""SGLD: the Langevin noise, the kept samples, config checks, checkpoint round trip."""

from __future__ import annotations

import math

import pytest
import torch

from probgen.bayes import SGLD, BayesianModel
from probgen.core import InvalidInput
from probgen.models.gaussian import GaussianModel
from probgen.train import TrainConfig


def _model(**options) -> BayesianModel:
    posterior = SGLD(**{"step_size": 0.01, "burn_in": 1, "thin": 2, "max_samples": 3, **options})
    return BayesianModel(GaussianModel((2,)), posterior, num_data=8, layers=["loc"])


def test_gradient_noise_has_the_langevin_variance():
    """∇(loss) - ∇(noise-free loss) ~ N(0, 2/(εN)); the loss value itself carries no noise."""
    model = _model()
    x = torch.randn(8, 2)
    model.eval()
    clean = model.loss(x)
    (clean_grad,) = torch.autograd.grad(clean, model.model.loc)
    model.train()
    noise = []
    for _ in range(2000):
        loss = model.loss(x)
        assert torch.allclose(loss, clean)
        (grad,) = torch.autograd.grad(loss, model.model.loc)
        noise.append(grad - clean_grad)
    noise = torch.stack(noise)
    expected = 2 / (0.01 * 8)
    assert abs(noise.var().item() / expected - 1) < 4 * math.sqrt(2 / noise.numel())
    assert noise.mean().abs() < 4 * math.sqrt(expected / noise.numel())


def test_keeps_every_thin_th_iterate_after_burn_in_in_a_ring():
    model = _model()
    x = torch.randn(8, 2)
    opt = torch.optim.SGD(model.players()["model"], lr=0.01)
    iterates = []
    with pytest.raises(InvalidInput, match="no samples"):
        model.posterior.draw()
    for _ in range(10):
        iterates.append(model.model.loc.detach().clone())
        loss = model.loss(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    q = model.posterior
    assert int(q.recorded) == 5 and q.num_samples == 3  # iterates 1, 3, 5, 7, 9; last three kept
    assert torch.equal(q.samples, torch.stack([iterates[7], iterates[9], iterates[5]]))
    with torch.no_grad():
        model.eval()
        model.loss(x)  # evaluation neither records nor advances
    assert int(q.steps) == 10 and int(q.recorded) == 5
    draw = q.draw(torch.Generator().manual_seed(0))["loc"]
    assert any(torch.equal(draw, s) for s in q.samples)


def test_state_dict_round_trip_keeps_the_samples():
    model = _model()
    x = torch.randn(8, 2)
    opt = torch.optim.SGD(model.players()["model"], lr=0.01)
    for _ in range(6):
        opt.zero_grad()
        model.loss(x).backward()
        opt.step()
    fresh = _model()
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh.posterior.samples, model.posterior.samples)
    assert len(set(map(tuple, model.posterior.samples.tolist()))) == 3  # distinct iterates
    g = torch.Generator
    assert torch.equal(
        fresh.log_likelihoods(x, 4, g().manual_seed(1)),
        model.log_likelihoods(x, 4, g().manual_seed(1)),
    )


def test_from_training_requires_plain_constant_sgd():
    ok = TrainConfig(optimizer="sgd", betas=(0.0, 0.999), lr=3e-3)
    assert SGLD.from_training({"burn_in": 5}, ok).step_size == 3e-3
    with pytest.raises(InvalidInput, match=r"optimizer must be sgd.*momentum"):
        SGLD.from_training({}, TrainConfig(optimizer="adam"))
    with pytest.raises(InvalidInput, match=r"step_size is train\.lr"):
        SGLD.from_training({"step_size": 1.0}, ok)


@pytest.mark.parametrize(
    "bad", [{"step_size": 0.0}, {"thin": 0}, {"burn_in": -1}, {"max_samples": 0}]
)
def test_bad_options_raise(bad: dict):
    with pytest.raises(InvalidInput):
        SGLD(**{"step_size": 0.1, **bad})
