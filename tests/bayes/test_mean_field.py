"""MeanField: the negative ELBO in closed form, with and without the local reparameterisation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from probgen.bayes import BayesianModel, MeanField
from probgen.core import GenerativeModel, InvalidInput, Likelihood


class _LinearMean(GenerativeModel):
    """x ~ N(W c + b, I) for a fixed input c (K,): a Linear layer whose rows are examples."""

    likelihood = Likelihood.EXACT

    def __init__(self, inputs: int = 3, dim: int = 2) -> None:
        super().__init__((dim,))
        self.layer = nn.Linear(inputs, dim)
        self.register_buffer("c", torch.linspace(0.5, 1.5, inputs))

    def mean(self, batch: int) -> torch.Tensor:
        return self.layer(self.c.expand(batch, -1))  # (B, D)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        x = self._check(x)
        return torch.distributions.Normal(self.mean(len(x)), 1.0).log_prob(x).sum(dim=1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.mean(n) + torch.randn(n, *self.event_shape, generator=generator)


def _model(local: bool, prior_std: float = 0.8) -> BayesianModel:
    model = BayesianModel(
        _LinearMean(),
        MeanField(prior_std=prior_std, init_std=0.3, local_reparameterization=local),
        num_data=10,
    )
    with torch.no_grad():  # distinct, non-trivial μ and σ per weight
        for loc, rho in zip(model.posterior.loc, model.posterior.rho, strict=True):
            loc.copy_(torch.randn_like(loc))
            rho.copy_(torch.randn_like(rho) - 1.0)
    return model


def _expected_loss(model: BayesianModel, x: torch.Tensor) -> torch.Tensor:
    """-1/B Σ_b E_q[log N(x_b; W c + b, I)] + KL(q ‖ p)/N, in closed form."""
    q, c = model.posterior, model.model.c
    mu_w, mu_b = q.mean("layer.weight"), q.mean("layer.bias")
    sd_w, sd_b = q.std("layer.weight"), q.std("layer.bias")
    mean = mu_w @ c + mu_b
    var = sd_w.square() @ c.square() + sd_b.square()  # Var of each output under q
    ll = -0.5 * ((x - mean).square() + var + math.log(2 * math.pi)).sum(dim=1)
    s = q.prior_std
    kl = sum(
        (torch.log(s / sd) + (sd.square() + mu.square()) / (2 * s**2) - 0.5).sum()
        for mu, sd in ((mu_w, sd_w), (mu_b, sd_b))
    )
    return -ll.mean() + kl / model.posterior.num_data


@pytest.mark.parametrize("local", [True, False])
def test_expected_loss_is_the_negative_elbo(local: bool):
    model = _model(local)
    x = torch.randn(5, 2)
    losses = torch.stack([model.loss(x).detach() for _ in range(1000)])
    stderr = losses.std() / math.sqrt(len(losses))
    assert abs(losses.mean() - _expected_loss(model, x).detach()) < 4 * stderr


def test_local_reparameterisation_reduces_gradient_variance():
    """Independent weights per example (Kingma et al. 2015): a smaller spread of ∂loss/∂μ."""
    x = torch.randn(64, 2)

    def grad_spread(local: bool) -> float:
        torch.manual_seed(1)
        model = _model(local)
        grads = []
        for _ in range(300):
            model.zero_grad()
            model.loss(x).backward()
            grads.append(model.posterior.loc[0].grad.clone())
        return torch.stack(grads).var(dim=0).sum().item()

    assert grad_spread(True) < 0.5 * grad_spread(False)


def test_local_noise_is_exact_and_independent_per_row():
    """For 2-D inputs the hook gives b ~ N(c μ_W + μ_b, c² σ_W² + σ_b²), independent rows."""
    model = _model(local=True)
    q, c = model.posterior, model.model.c
    with torch.no_grad(), q.training_weights() as weights:
        out = model.run(weights, lambda m: m.mean(20000))  # (B, D), one row per example
    mean = q.mean("layer.weight") @ c + q.mean("layer.bias")
    var = q.std("layer.weight").square() @ c.square() + q.std("layer.bias").square()
    se_mean = (var / len(out)).sqrt()
    assert ((out.mean(dim=0) - mean).abs() < 4 * se_mean).all()
    assert ((out.var(dim=0) / var - 1).abs() < 4 * math.sqrt(2 / len(out))).all()
    corr = torch.corrcoef(torch.stack([out[::2, 0], out[1::2, 0]]))[0, 1]
    assert abs(corr) < 4 / math.sqrt(len(out) / 2)


def test_linear_on_sequences_shares_one_weight_draw():
    """Inputs (B, T, in) are not one row per example: one W ~ q for the whole call."""
    model = _model(local=True)
    q, layer = model.posterior, model.model.layer
    seq = torch.randn(4, 5, 3)
    with torch.no_grad(), q.training_weights() as weights:
        out = model.run(weights, lambda m: layer(seq))
        ref = model.run(weights, lambda m: layer(seq[:1, :1]))
    residual = out - (seq @ q.mean("layer.weight").T)  # (x) (σ ⊙ ε)ᵀ + b + σ_b ε_b
    w = torch.linalg.lstsq(
        torch.cat([seq.reshape(-1, 3), torch.ones(20, 1)], dim=1), residual.reshape(-1, 2)
    ).solution
    fitted = torch.cat([seq.reshape(-1, 3), torch.ones(20, 1)], dim=1) @ w
    assert torch.allclose(fitted, residual.reshape(-1, 2), atol=1e-10)  # one affine map
    assert not torch.allclose(out[:1, :1], ref)  # and a fresh draw per call


def test_global_sampling_gives_one_weight_per_batch():
    model = _model(local=False)
    with torch.no_grad(), model.posterior.training_weights() as weights:
        out = model.run(weights, lambda m: m.mean(6))
    assert torch.allclose(out, out[:1].expand_as(out))


def test_binding_freezes_the_stand_ins_and_initialises_at_the_weights():
    base = _LinearMean()
    weight = base.layer.weight.detach().clone()
    model = BayesianModel(base, MeanField(init_std=0.05), num_data=3, layers=["layer.weight"])
    q = model.posterior
    assert torch.equal(q.mean("layer.weight"), weight)
    assert torch.allclose(q.std("layer.weight"), torch.full_like(weight, 0.05))
    assert not base.layer.weight.requires_grad and base.layer.bias.requires_grad
    assert model.players()["model"] == [q.loc[0], q.rho[0], base.layer.bias]


@pytest.mark.parametrize("bad", [{"init_std": 0.0}, {"prior_std": -1.0}])
def test_bad_options_raise(bad: dict):
    with pytest.raises(InvalidInput):
        MeanField(**bad)
