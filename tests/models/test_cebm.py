"""The conditional EBM E(x, c): Langevin chains per condition against an exact Gaussian law."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from probgen.conditions import ConditionSpec
from probgen.core import DataSpec, InvalidInput, Likelihood
from probgen.models.ebm import EBM

K, D = 3, 2


class _Quadratic(nn.Module):
    """E(x, c) = |x − μ_c|²/2 with μ_c = h·M, h the one-hot features: p(x | c) = N(μ_c, I)."""

    def __init__(self, means: Tensor) -> None:
        super().__init__()
        self.means = nn.Parameter(means.clone())  # (K, D)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        return 0.5 * (x - h @ self.means).square().sum(dim=1)


def test_langevin_per_condition_reproduces_each_conditional_gaussian() -> None:
    """Unadjusted Langevin x ← x − (ε²/2)(x − μ_c) + ε η on N(μ_c, I) has the exact
    stationary law N(μ_c, I/(1 − ε²/4)) (an AR(1) chain); from N(0, 2² I) the error
    after T steps shrinks like (1 − ε²/2)^T, below 1e-5 here. Moments of n chains per
    class are checked two-sided within 4 standard errors."""
    means = torch.tensor([[-3.0, 1.0], [0.0, 0.0], [2.5, -2.0]])
    eps, steps, n = 0.3, 300, 4000
    model = EBM((D,), energy=_Quadratic(means), step_size=eps, sample_steps=steps,
                buffer_size=16, condition=ConditionSpec(classes=K))  # fmt: skip
    c = torch.arange(K).repeat_interleave(n)
    x = model.sample(K * n, condition=c, generator=torch.Generator().manual_seed(1))
    var = 1.0 / (1.0 - eps**2 / 4)
    for k in range(K):
        xk = x[c == k]
        se_mean = math.sqrt(var / n)
        assert (xk.mean(0) - means[k]).abs().max().item() < 4 * se_mean
        se_var = var * math.sqrt(2.0 / (n - 1))
        assert (xk.var(0) - var).abs().max().item() < 4 * se_var
        cov = torch.cov(xk.T)[0, 1].item()
        assert abs(cov) < 4 * var / math.sqrt(n)
    # one condition for all draws gives the same law
    one = model.sample(n, condition=2, generator=torch.Generator().manual_seed(2))
    assert (one.mean(0) - means[2]).abs().max().item() < 4 * math.sqrt(var / n)


def test_log_prob_is_minus_the_conditional_energy_and_unnormalized() -> None:
    means = torch.tensor([[-3.0, 1.0], [0.0, 0.0], [2.5, -2.0]])
    model = EBM((D,), energy=_Quadratic(means), condition=ConditionSpec(classes=K))
    assert model.likelihood is Likelihood.UNNORMALIZED
    x, c = torch.randn(5, D), torch.tensor([0, 1, 2, 0, 1])
    expected = -0.5 * (x - means[c]).square().sum(1)
    torch.testing.assert_close(model.log_prob(x, condition=c), expected, rtol=0, atol=1e-14)


@pytest.mark.parametrize("cond", [ConditionSpec(classes=K), ConditionSpec(shape=(2,))])
def test_a_conditional_ebm_trains_on_pairs_and_its_chains_keep_their_condition(cond) -> None:
    model = EBM.for_data(DataSpec((D,), condition=cond), hidden=(16,), train_steps=3,
                         buffer_size=60)  # fmt: skip
    assert model.condition_spec == cond
    n = 12
    c = torch.randint(K, (n,)) if cond.is_classes else torch.randn(n, 2)
    x = torch.randn(n, D)
    loss = model.loss(x, condition=c)
    loss.backward()
    first = model.net.mlp[0].weight.grad
    assert first[:, D:].abs().sum() > 0  # the gradient reaches the condition's columns
    h = cond.features(c, x.dtype)
    # each negative continues the chain of the nearest stored condition; the chains just run
    # at c are stored with c (for classes: a chain of the same class; for vectors, two rows
    # that drew the same chain leave only the later one's c, so only some are stored exactly)
    idx = model._chain_index(n, h, torch.Generator().manual_seed(0))
    distance = torch.cdist(h, model.chain_features)
    torch.testing.assert_close(distance[torch.arange(n), idx], distance.min(1).values)
    stored = (distance.min(1).values < 1e-12).sum().item()
    assert stored == n if cond.is_classes else stored >= 1
    assert model.sample(4, condition=c[0], steps=2).shape == (4, D)
    assert model.sample(n, condition=c, steps=2, persistent=True).shape == (n, D)
    with pytest.raises(InvalidInput, match="no unconditional mode"):
        model.log_prob(x)
    with pytest.raises(InvalidInput, match="no unconditional mode"):
        model.sample(3)


def test_class_chains_continue_a_random_chain_of_their_own_class() -> None:
    model = EBM((D,), hidden=(8,), buffer_size=300, condition=ConditionSpec(classes=K))
    h = ConditionSpec(classes=K).features(torch.full((200,), 1), torch.float64)
    idx = model._chain_index(200, h, torch.Generator().manual_seed(0))
    assert (model.chain_features[idx].argmax(1) == 1).all()
    assert len(idx.unique()) > 50  # spread over the 100 chains of class 1, not one


def test_an_unconditional_ebm_refuses_a_condition() -> None:
    model = EBM.for_data(DataSpec((D,), condition=ConditionSpec(classes=K)), hidden=(8,),
                         conditional=False)  # fmt: skip
    assert model.condition_spec is None
    with pytest.raises(InvalidInput, match="unconditional"):
        model.log_prob(torch.randn(3, D), condition=torch.zeros(3, dtype=torch.long))
    with pytest.raises(InvalidInput, match="needs data with a condition"):
        EBM.for_data(DataSpec((D,)), conditional=True)
