"""The conditional MADEModel p(x | c): normalised for every c by enumeration, autoregressive in x
with every conditional reading c, sampled from p(· | c), built from the data's condition."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats

from probgen.conditions import ConditionSpec
from probgen.core import DataSpec, InvalidInput
from probgen.models.autoregressive import Bernoulli, Categorical, MADEModel, MixtureOfGaussians

CLASSES = ConditionSpec(classes=4)
VECTOR = ConditionSpec(shape=(3,))


def all_vectors(levels: int, dim: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(levels), repeat=dim)), dtype=torch.float64)


def sharpened(model: MADEModel, factor: float = 3.0) -> MADEModel:
    with torch.no_grad():  # a far-from-uniform law, so a wrong condition would show
        for p in model.parameters():
            p.mul_(factor)
    return model


@pytest.mark.parametrize("spec", [CLASSES, VECTOR], ids=["classes", "vector"])
def test_every_conditional_law_sums_to_one(spec: ConditionSpec) -> None:
    model = MADEModel((5,), Bernoulli(), hidden=(16, 16), order=[3, 1, 4, 0, 2], condition=spec)
    x = all_vectors(2, 5)
    for c in (0, 3) if spec.is_classes else (torch.randn(3), torch.randn(3)):
        rows = spec.expand(c, len(x))
        torch.testing.assert_close(
            model.log_prob(x, condition=rows).logsumexp(0), torch.tensor(0.0)
        )


def test_categorical_law_sums_to_one_on_image_shaped_events() -> None:
    model = MADEModel((1, 2, 2), Categorical(3), hidden=(16,), condition=CLASSES)
    x = all_vectors(3, 4).reshape(-1, 1, 2, 2)
    total = model.log_prob(x, condition=torch.full((len(x),), 2)).logsumexp(0)
    torch.testing.assert_close(total, torch.tensor(0.0))


@pytest.mark.parametrize(
    ("conditional", "x"),
    [
        (Bernoulli(), torch.randint(0, 2, (3, 5)).double()),
        (MixtureOfGaussians(2), torch.randn(3, 5)),
    ],
)
def test_conditional_i_depends_on_x_before_i_and_on_c(conditional, x) -> None:
    """∂θ_i/∂x_j ≠ 0 iff π(j) < π(i), and ∂θ_i/∂c ≠ 0 for every i, the first included."""
    order = torch.tensor([2, 0, 4, 1, 3])
    model = MADEModel(
        (5,), conditional, hidden=(12, 12), order=order, activation=torch.nn.Tanh, condition=VECTOR
    )
    feats = conditional.features(conditional.validate(x, (5,)), torch.float64)
    c = torch.randn(3, 3)
    jac_x = torch.autograd.functional.jacobian(lambda f: model.net(f, c).sum(0), feats)
    jac_c = torch.autograd.functional.jacobian(lambda u: model.net(feats, u).sum(0), c)
    assert torch.equal(jac_x.abs().sum(dim=(1, 2)) > 0, order[None, :] < order[:, None])
    assert bool((jac_c.abs().sum(dim=(1, 2, 3)) > 0).all())


def test_samples_of_each_class_follow_its_exact_law() -> None:
    model = sharpened(MADEModel((3,), Bernoulli(), hidden=(8,), order=[2, 0, 1], condition=CLASSES))
    x = all_vectors(2, 3)
    codes_of = torch.tensor([4, 2, 1])
    laws = []
    for k in (1, 3):
        with torch.no_grad():
            probs = model.log_prob(x, condition=torch.full((8,), k)).exp().numpy()
        laws.append(probs)
        draws = model.sample(20_000, condition=k, generator=torch.Generator().manual_seed(k))
        counts = np.bincount((draws.long() * codes_of).sum(1).numpy(), minlength=8)
        assert stats.chisquare(counts, 20_000 * probs).pvalue > 1e-3
    assert np.abs(laws[0] - laws[1]).max() > 0.05  # the classes' laws differ


def test_gradients_reach_the_context_weights() -> None:
    model = MADEModel((4,), MixtureOfGaussians(2), hidden=(16,), condition=VECTOR)
    model.loss(torch.randn(8, 4), condition=torch.randn(8, 3)).backward()
    first = model.net.net[0]
    assert bool(first.weight.grad[:, :3].abs().sum() > 0)  # the context columns
    assert all(p.grad is not None for p in model.parameters())


def test_for_data_builds_the_conditional_model_from_the_spec() -> None:
    model = MADEModel.for_data(DataSpec((6,), 2, condition=CLASSES))
    assert model.condition_spec == CLASSES and isinstance(model.conditional, Bernoulli)
    assert model.log_prob(torch.ones(2, 6), condition=torch.tensor([0, 3])).shape == (2,)
    assert model.sample(3, condition=2).shape == (3, 6)
    plain = MADEModel.for_data(DataSpec((6,), 2, condition=CLASSES), conditional=False)
    assert plain.condition_spec is None
    mixture = MixtureOfGaussians(3)
    given = MADEModel.for_data(DataSpec((2,), condition=VECTOR), conditional=mixture)
    assert given.conditional is mixture and given.condition_spec == VECTOR
    with pytest.raises(InvalidInput, match="conditional=True needs data with a condition"):
        MADEModel.for_data(DataSpec((6,), 2), conditional=True)


def test_a_missing_or_unexpected_condition_is_rejected() -> None:
    conditional = MADEModel((4,), Bernoulli(), hidden=(8,), condition=CLASSES)
    plain = MADEModel((4,), Bernoulli(), hidden=(8,))
    x = torch.ones(2, 4)
    with pytest.raises(InvalidInput, match="no unconditional mode: pass condition="):
        conditional.log_prob(x)
    with pytest.raises(InvalidInput, match="no unconditional mode"):
        conditional.sample(2)
    with pytest.raises(InvalidInput, match="is unconditional"):
        plain.log_prob(x, condition=torch.tensor([0, 1]))
    with pytest.raises(InvalidInput, match="is unconditional"):
        plain.sample(2, condition=1)
    with pytest.raises(InvalidInput, match=r"class labels must lie in 0..3"):
        conditional.log_prob(x, condition=torch.tensor([0, 4]))
