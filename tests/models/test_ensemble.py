"""The ensemble p(x) = (1/M) Σ_m p_m(x): its density, its training, its sampler, its build path."""

from __future__ import annotations

import math

import pytest
import torch

from probgen.conditions import ConditionSpec
from probgen.core import DataSpec, InvalidInput
from probgen.distributions import GaussianMixture
from probgen.models import build_model
from probgen.models.ensemble import Ensemble
from probgen.models.flows import MAF
from probgen.models.gan import GAN
from probgen.models.gaussian import GaussianModel
from probgen.pretrained import from_pretrained, save_pretrained


def _gaussians(means: list[list[float]], stds: list[float]) -> Ensemble:
    members = [GaussianModel((2,)) for _ in means]
    with torch.no_grad():
        for m, mu, sd in zip(members, means, stds, strict=True):
            m.loc.copy_(torch.tensor(mu))  # Σ = L Lᵀ, L = tril + diag exp(log_diag)
            m.tril.zero_()
            m.log_diag.fill_(math.log(sd))
    return Ensemble(members)


def test_log_prob_is_the_equal_weight_mixture_of_the_members(dtype: torch.dtype) -> None:
    """Against the analytic GaussianMixture with π_m = 1/M (float64 reference)."""
    means, stds = [[-2.0, 0.0], [1.0, 3.0], [4.0, -1.0]], [0.5, 1.0, 2.0]
    ensemble = _gaussians(means, stds).to(dtype)
    cov = torch.stack([s * s * torch.eye(2, dtype=torch.float64) for s in stds])
    truth = GaussianMixture(torch.ones(3, dtype=torch.float64), torch.tensor(means), cov)
    x = torch.randn(50, 2, dtype=torch.float64) * 3
    expected = truth.log_prob(x)
    got = ensemble.log_prob(x.to(dtype)).detach().double()
    tol = 64 * torch.finfo(dtype).eps * (1 + expected.abs())
    assert ((got - expected).abs() <= tol).all()


def test_the_loss_trains_every_member_on_its_own_gradient() -> None:
    """∂L/∂θ_m = (1/M) ∂loss_m/∂θ_m: the members are M independent trainings."""
    torch.manual_seed(0)
    members = [MAF((2,), transforms=2, hidden=(8,)) for _ in range(3)]
    for m in members:
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.1 * torch.randn_like(p))
    ensemble, x = Ensemble(members), torch.randn(32, 2)
    ensemble.loss(x).backward()
    for m in members:
        grads = torch.autograd.grad(m.loss(x), list(m.parameters()))
        for p, g in zip(m.parameters(), grads, strict=True):
            torch.testing.assert_close(p.grad, g / 3, rtol=1e-12, atol=1e-15)


def test_samples_come_from_each_member_with_probability_one_over_m() -> None:
    ensemble = _gaussians([[-10.0, 0.0], [10.0, 0.0]], [1.0, 1.0])
    with torch.no_grad():
        x = ensemble.sample(20_000, generator=torch.Generator().manual_seed(0))
    right = x[:, 0] > 0
    assert abs(right.double().mean().item() - 0.5) < 5 * math.sqrt(0.25 / len(x))
    for side, mu in ((right, 10.0), (~right, -10.0)):
        assert abs(x[side, 0].mean().item() - mu) < 5 / math.sqrt(side.sum().item())
        assert abs(x[side, 1].std().item() - 1.0) < 5 / math.sqrt(2 * side.sum().item())
    again = ensemble.sample(20_000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, again)


def test_conditional_members_give_a_conditional_ensemble() -> None:
    torch.manual_seed(0)
    spec = DataSpec((2,), condition=ConditionSpec(classes=3))
    ensemble = Ensemble.for_data(spec, family="maf", members=2, transforms=1, hidden=(8,))
    x, c = torch.randn(10, 2), torch.randint(3, (10,))
    per_member = torch.stack([m.log_prob(x, condition=c) for m in ensemble.members])
    expected = torch.logsumexp(per_member, 0) - math.log(2)
    torch.testing.assert_close(ensemble.log_prob(x, condition=c), expected, rtol=0, atol=0)
    assert ensemble.sample(4, condition=torch.tensor(1)).shape == (4, 2)
    with pytest.raises(InvalidInput, match="no unconditional mode"):
        ensemble.log_prob(x)


def test_a_built_ensemble_starts_each_mixture_base_and_reloads(tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(150, 2, generator=g) - 4, torch.randn(150, 2, generator=g) + 4])
    torch.manual_seed(0)
    model = build_model(
        "ensemble", DataSpec((2,)), train_data=x * 50, family="maf", members=2, base="mixture"
    )
    assert [int(m.base.active.sum()) for m in model.model.members] == [2, 2]
    save_pretrained(model, tmp_path / "e")
    again = from_pretrained(tmp_path / "e")
    torch.testing.assert_close(again.log_prob(x), model.log_prob(x), rtol=0, atol=0)


def test_bad_ensembles_are_named() -> None:
    with pytest.raises(InvalidInput, match="players"):
        Ensemble([GAN((2,)), GAN((2,))])
    with pytest.raises(InvalidInput, match="same event shape"):
        Ensemble([GaussianModel((2,)), GaussianModel((3,))])
    with pytest.raises(InvalidInput, match="members must be >= 1"):
        Ensemble.for_data(DataSpec((2,)), members=0)
    with pytest.raises(InvalidInput, match="other than ensemble"):
        Ensemble.for_data(DataSpec((2,)), family="ensemble")
