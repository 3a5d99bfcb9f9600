"""Conditional flow models p(x | c): normalised for every c, sampled from p(· | c), built from
the data's condition, with clear errors for a missing or unexpected condition."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from probgen.conditions import ConditionSpec
from probgen.core import DataSpec, InvalidInput
from probgen.models.flows import IAF, MAF, NSF, ConditionalNormal, Flow, Glow, RealNVP
from probgen.registry import MODELS

CLASSES = ConditionSpec(classes=3)
VECTOR = ConditionSpec(shape=(2,))
SMALL = {"transforms": 3, "hidden": (16, 16)}
FAMILIES: dict[str, Callable[[ConditionSpec | None], Flow]] = {
    "realnvp": lambda c: RealNVP((2,), condition=c, **SMALL),
    "maf": lambda c: MAF((2,), condition=c, **SMALL),
    "iaf": lambda c: IAF((2,), condition=c, **SMALL),
    "nsf-ar": lambda c: NSF((2,), bins=5, bound=3.0, condition=c, **SMALL),
    "nsf-coupling": lambda c: NSF(
        (2,), bins=5, bound=3.0, autoregressive=False, condition=c, **SMALL
    ),
    "glow": lambda c: Glow((1, 4, 4), levels=1, steps=2, hidden=8, condition=c),
}
SPECS = {"classes": CLASSES, "vector": VECTOR}
HALF_WIDTH, CELLS = 9.0, 300  # integration grid [-9, 9]², cell side 0.06


def randomized(flow: Flow) -> Flow:
    """Perturb every parameter: the zero-initialised conditioners would be the identity."""
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.15 * torch.randn_like(p))
    return flow.eval()


def conditions(spec: ConditionSpec, n: int) -> torch.Tensor:
    return torch.arange(n) % 3 if spec.is_classes else torch.randn(n, 2)


def data(flow: Flow, n: int) -> torch.Tensor:
    return 0.8 * torch.randn(n, *flow.event_shape)


@pytest.mark.parametrize("spec", list(SPECS.values()), ids=list(SPECS))
@pytest.mark.parametrize("name", list(FAMILIES))
def test_shapes_and_sample_and_log_prob_agree(name: str, spec: ConditionSpec) -> None:
    flow = randomized(FAMILIES[name](spec))
    assert flow.condition_spec == spec
    c = conditions(spec, 5)
    x = data(flow, 5)
    assert flow.log_prob(x, condition=c).shape == (5,)
    assert flow.sample(5, condition=c, generator=torch.Generator().manual_seed(0)).shape == (
        5,
        *flow.event_shape,
    )
    one = c[0]
    assert flow.sample(4, condition=one).shape == (4, *flow.event_shape)
    draws, log_p = flow.sample_and_log_prob(5, c, torch.Generator().manual_seed(1))
    torch.testing.assert_close(log_p, flow.log_prob(draws, condition=c), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_the_condition_changes_the_density(name: str) -> None:
    flow = randomized(FAMILIES[name](CLASSES))
    x = data(flow, 6)
    by_class = [flow.log_prob(x, condition=torch.full((6,), k)) for k in range(3)]
    assert (by_class[0] - by_class[1]).abs().min() > 1e-6
    assert (by_class[1] - by_class[2]).abs().min() > 1e-6


@pytest.mark.parametrize("name", list(FAMILIES))
def test_gradients_reach_the_context_path(name: str) -> None:
    """The loss moves every parameter, the condition's weights included (zero-initialised
    conditioners only after the first step, hence the randomisation)."""
    flow = randomized(FAMILIES[name](VECTOR)).train()
    c = torch.randn(8, 2, requires_grad=True)
    flow.loss(data(flow, 8), condition=c).backward()
    assert c.grad is not None and bool(c.grad.abs().sum() > 0)
    missing = [n for n, p in flow.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


def _grid_mass(flow: Flow, c: torch.Tensor) -> float:
    h = 2 * HALF_WIDTH / CELLS
    centers = -HALF_WIDTH + h * (torch.arange(CELLS) + 0.5)
    points = torch.cartesian_prod(centers, centers)
    with torch.no_grad():
        log_p = flow.log_prob(points, condition=c.expand(len(points), *c.shape[1:]))
    return float(log_p.exp().sum() * h * h)


@pytest.mark.filterwarnings("ignore::probgen.core.OutOfRangeWarning")  # the grid's far cells
@pytest.mark.parametrize("name", [n for n in FAMILIES if n != "glow"])
def test_each_conditional_density_integrates_to_one(name: str) -> None:
    """∫ p_θ(x | c) dx = 1 for each of two classes and a continuous c (midpoint rule)."""
    for spec, c in ((CLASSES, torch.tensor([0])), (CLASSES, torch.tensor([2])), (VECTOR, None)):
        flow = randomized(FAMILIES[name](spec))
        c = torch.tensor([[0.7, -1.2]]) if c is None else c
        assert abs(_grid_mass(flow, c) - 1) < 2e-3


def test_conditional_samples_follow_the_conditional_density() -> None:
    """Per class, the sample mean of x ~ p_θ(· | c) matches ∫ x p_θ(x | c) dx on the grid."""
    flow = randomized(MAF((2,), condition=CLASSES, **SMALL))
    h = 2 * HALF_WIDTH / CELLS
    centers = -HALF_WIDTH + h * (torch.arange(CELLS) + 0.5)
    points = torch.cartesian_prod(centers, centers)
    means, allowed = [], []
    for k in range(3):
        with torch.no_grad():
            w = flow.log_prob(points, condition=torch.full((len(points),), k)).exp() * h * h
            draws = flow.sample(20_000, condition=k, generator=torch.Generator().manual_seed(k))
        means.append((w[:, None] * points).sum(0))
        se = draws.std(0) / len(draws) ** 0.5
        allowed.append(4 * se + 1e-3)
        assert torch.all((draws.mean(0) - means[-1]).abs() < allowed[-1])
    # the classes' means differ by more than twice the allowance, so drawing from another
    # class's law would fail the check
    for i, j in ((0, 1), (1, 2), (0, 2)):
        assert torch.any((means[i] - means[j]).abs() > 2 * torch.maximum(allowed[i], allowed[j]))


def test_glow_has_the_class_conditional_prior() -> None:
    flow = Glow((1, 4, 4), levels=1, steps=1, hidden=8, condition=CLASSES)
    assert isinstance(flow.base, ConditionalNormal)
    with torch.no_grad():  # a per-class mean: the base's log-density of z = μ_k peaks at μ_k
        flow.base.linear.weight.normal_()
    z = torch.randn(3, 1, 4, 4)
    c = torch.tensor([0, 1, 2])
    loc, log_scale = flow.base.loc_log_scale(c)
    expected = torch.distributions.Normal(loc, log_scale.exp()).log_prob(z).flatten(1).sum(1)
    torch.testing.assert_close(flow.base.log_prob(z, condition=c), expected)


@pytest.mark.parametrize("name", ["realnvp", "maf", "nsf", "glow"])
def test_for_data_builds_the_conditional_model_from_the_spec(name: str) -> None:
    shape = (1, 4, 4) if name == "glow" else (2,)
    options = {"levels": 1, "steps": 1, "hidden": 8} if name == "glow" else {"transforms": 2}
    family = MODELS.get(name)
    flow = family.for_data(DataSpec(shape, condition=CLASSES), **options)
    assert flow.condition_spec == CLASSES
    x = torch.rand(3, *shape)
    assert flow.log_prob(x, condition=torch.tensor([0, 1, 2])).shape == (3,)
    plain = family.for_data(DataSpec(shape, condition=CLASSES), conditional=False, **options)
    assert plain.condition_spec is None
    assert family.for_data(DataSpec(shape), **options).condition_spec is None
    with pytest.raises(InvalidInput, match="conditional=True needs data with a condition"):
        family.for_data(DataSpec(shape), conditional=True, **options)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_a_missing_or_unexpected_condition_is_rejected(name: str) -> None:
    conditional, plain = FAMILIES[name](CLASSES), FAMILIES[name](None)
    x = data(plain, 3)
    with pytest.raises(InvalidInput, match="no unconditional mode: pass condition="):
        conditional.log_prob(x)
    with pytest.raises(InvalidInput, match="no unconditional mode"):
        conditional.sample(2)
    with pytest.raises(InvalidInput, match="is unconditional"):
        plain.log_prob(x, condition=torch.tensor([0, 1, 2]))
    with pytest.raises(InvalidInput, match="is unconditional"):
        plain.sample(2, condition=1)
    with pytest.raises(InvalidInput, match=r"class labels must lie in 0..2"):
        conditional.log_prob(x, condition=torch.tensor([0, 1, 3]))
    with pytest.raises(InvalidInput, match=r"expected labels of shape \(3,\)"):
        conditional.log_prob(x, condition=torch.tensor([0, 1]))


def test_a_conditional_base_must_share_the_flow_condition() -> None:
    base = ConditionalNormal((2,), CLASSES)
    with pytest.raises(InvalidInput, match="the flow's condition"):
        Flow(MAF((2,)).transform, base, condition=VECTOR)
