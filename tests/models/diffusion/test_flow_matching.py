"""The flow-matching family: couplings, the objective, the model through the protocol,
guidance, reflow and distillation (the identities: tests/theory/test_flow_matching_theory.py)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from probgen.conditions import ConditionSpec
from probgen.core import DataSpec, IntractableLikelihood, InvalidInput, Likelihood
from probgen.models.diffusion import (
    ClassifierFreeGuidance,
    Conditioned,
    Denoiser,
    EntropicOTCoupling,
    FlowMatching,
    FlowMatchingModel,
    IndependentCoupling,
    LinearPath,
    OTCoupling,
    VelocityPrediction,
    distil,
    reflow,
)
from probgen.registry import MODELS


def small(**options) -> FlowMatchingModel:
    model = FlowMatchingModel((2,), hidden=(16,), **options)
    nn.init.normal_(model.denoiser.net.net[-1].weight, std=0.1)  # leave the zero start
    return model


class _Fixed(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor, t: Tensor, h: Tensor | None = None) -> Tensor:
        return self.fn(x, t, h)


def test_registry_and_options():
    """``flow_matching`` is registered; the likelihood is EXACT in 2-D and ESTIMATE with
    Hutchinson; combinations that cannot work are refused with the reason."""
    assert MODELS.get("flow_matching") is FlowMatchingModel
    assert small().likelihood is Likelihood.EXACT
    assert small(likelihood="hutchinson").likelihood is Likelihood.ESTIMATE
    assert isinstance(small().process, LinearPath)
    with pytest.raises(InvalidInput, match="singular where"):
        FlowMatchingModel((2,), parametrization="noise")
    with pytest.raises(InvalidInput, match="likelihood"):
        FlowMatchingModel((2,), likelihood="vlb")
    with pytest.raises(InvalidInput, match="unknown coupling"):
        FlowMatchingModel((2,), coupling="nope")
    assert small().objective.time_power == 2.0  # the default: t − t_min ∝ Beta(½, 1)
    assert small(time_power=1.0).objective.time_power == 1.0
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(InvalidInput, match="time_power: expected a finite number > 0"):
            FlowMatchingModel((2,), time_power=bad)


@pytest.mark.parametrize("coupling", ["independent", "ot", "schrodinger_bridge"])
def test_the_model_trains_samples_and_scores(coupling):
    """Every coupling trains through ``loss``; ODE samplers and the likelihood run on the
    linear path; the reverse SDE refuses α_1 = 0 by name and runs with alpha_end > 0."""
    torch.manual_seed(0)
    model = small(coupling=coupling)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.randn(64, 2) * 0.5 + 1.0
    for _ in range(3):
        loss = model.loss(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(loss)
    for sampler, steps in (("probability_flow", 1), ("ddim", 8), ("ancestral", 8)):
        samples = model.sample(16, sampler=sampler, steps=steps)
        assert samples.shape == (16, 2) and torch.isfinite(samples).all()
    assert torch.isfinite(model.log_prob(x[:4])).all()
    with pytest.raises(InvalidInput, match="singular at t = 1"):
        model.sample(4, sampler="euler_maruyama", steps=4)
    ended = small(alpha_end=0.05)
    assert torch.isfinite(ended.sample(8, sampler="euler_maruyama", steps=10)).all()


def test_couplings_pair_within_conditions():
    """A coupling returns a permutation of the batch's noise; with condition features it
    pairs only rows of the same condition (each condition's noise stays N(0, I))."""
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(40, 2, generator=g), torch.randn(40, 2, generator=g)
    assert torch.equal(IndependentCoupling()(x, eps), torch.arange(40))
    groups = torch.arange(40) % 3
    features = nn.functional.one_hot(groups, 3).double()
    for coupling in (OTCoupling(), EntropicOTCoupling(0.05), OTCoupling(max_exact=4)):
        j = coupling(x, eps, features, g)
        assert torch.equal(groups[j], groups)
    assert sorted(OTCoupling()(x, eps, features).tolist()) == list(range(40))
    with pytest.raises(InvalidInput, match="one shape"):
        OTCoupling()(x, eps[:5])


def test_entropic_plan_brackets_the_optimal_cost():
    """Sinkhorn's plan π_ε has uniform marginals and OT ≤ ⟨π_ε, C⟩ ≤ OT + ε log n (its entropy
    lies in [log n, 2 log n]), OT the exact cost of ``ot.emd`` (Cuturi 2013)."""
    g = torch.Generator().manual_seed(1)
    n = 50
    x, eps = torch.randn(n, 2, generator=g) + 1.5, torch.randn(n, 2, generator=g)
    reg = 0.5
    plan = EntropicOTCoupling(reg).plan(x, eps)
    cost = torch.cdist(x, eps).square()
    assert torch.allclose(plan.sum(0), torch.full((n,), 1 / n), atol=1e-9)
    assert torch.allclose(plan.sum(1), torch.full((n,), 1 / n), atol=1e-9)
    j = OTCoupling()(x, eps)
    optimum = cost[torch.arange(n), j].mean()
    entropic = (plan * cost).sum()
    assert optimum - 1e-12 <= entropic <= optimum + reg * math.log(n)


def test_flow_matching_target_on_the_linear_path():
    """On ``LinearPath`` the regression target is ε − x_0: a velocity network that outputs
    ε − x_0 exactly (it is told x_0, as a test may) has zero loss on the same draws."""
    path = LinearPath()
    x0 = torch.randn(32, 2, generator=torch.Generator().manual_seed(2))
    recorded: dict[str, Tensor] = {}

    def oracle(x_t: Tensor, t: Tensor, h: Tensor | None) -> Tensor:
        tt = t[:, None]
        eps = (x_t - (1 - tt) * x0) / tt
        recorded["eps"] = eps
        return eps - x0

    loss = FlowMatching()(VelocityPrediction(_Fixed(oracle), path), x0)
    assert loss.abs().max() < 1e-9 * (1 + recorded["eps"].abs().max())


def test_guidance_combines_velocities():
    """Classifier-free guidance on velocity networks is ṽ = (1 + w) v_c − w v_∅, made in
    velocity (regular at t = 1, where the noise form divides by α_1 = 0)."""
    path = LinearPath()
    a = VelocityPrediction(_Fixed(lambda x, t, h: x + 1.0), path)
    b = VelocityPrediction(_Fixed(lambda x, t, h: 2.0 * x), path)
    x, w = torch.randn(5, 2), 1.5
    pred = ClassifierFreeGuidance(a, b, w)(x, torch.tensor(1.0))
    assert pred.kind == "velocity"
    assert torch.allclose(pred.velocity, (1 + w) * (x + 1.0) - w * 2.0 * x)
    assert Denoiser.features is None
    h = torch.zeros(5, 3)
    assert Conditioned(a, h).features is h


def test_conditional_flow_matching_with_guidance():
    """A class-conditional flow trains with condition dropout (and OT within each class),
    scores log p(x | c) and samples with classifier-free guidance."""
    spec = DataSpec((2,), condition=ConditionSpec(classes=3))
    model = FlowMatchingModel.for_data(spec, hidden=(16,), coupling="ot", p_uncond=0.2)
    c = torch.arange(30) % 3
    x = torch.randn(30, 2) + c[:, None].double()
    loss = model.loss(x, condition=c)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(model.log_prob(x[:3], condition=c[:3])).all()
    samples = model.sample(6, condition=torch.tensor(1), guidance=2.0)
    assert samples.shape == (6, 2) and torch.isfinite(samples).all()
    result = model.run_sampler(6, torch.tensor(1), "ddim", 4, guidance=2.0)
    assert result.n_evaluations == 2 * 4


def test_reflow_and_distillation_make_new_models():
    """``reflow`` returns a retrained copy (the original untouched, the likelihood kept);
    ``distil`` a k-step sampler (k network evaluations) whose ``log_prob`` raises."""
    torch.manual_seed(0)
    model = small()
    before = [p.detach().clone() for p in model.parameters()]
    g = torch.Generator().manual_seed(3)
    flowed = reflow(model, pairs=64, train_steps=3, batch_size=32, generator=g)
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters(), strict=True))
    assert any(not torch.equal(p, q) for p, q in zip(before, flowed.parameters(), strict=True))
    assert flowed.likelihood is Likelihood.EXACT
    for k in (1, 2):
        student = distil(model, k, pairs=64, train_steps=3, batch_size=32, generator=g)
        result = student.run_sampler(10)
        assert result.n_evaluations == k and torch.isfinite(result.samples).all()
        assert student.likelihood is Likelihood.NONE
        with pytest.raises(IntractableLikelihood):
            student.log_prob(torch.zeros(2, 2))
    conditional = FlowMatchingModel.for_data(
        DataSpec((2,), condition=ConditionSpec(classes=2)), hidden=(8,)
    )
    with pytest.raises(InvalidInput, match="unconditional"):
        reflow(conditional, pairs=8, train_steps=1)
