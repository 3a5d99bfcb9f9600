"""MADEModel: normalisation by enumeration, exact mixture densities, the AR property, sampling."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats
from torch import distributions as D

from probgen.core import DataSpec, InvalidInput, Likelihood
from probgen.models.autoregressive import (
    Bernoulli,
    Categorical,
    MADEModel,
    MixtureOfGaussians,
    MixtureOfLogistics,
)
from probgen.registry import MODELS


def all_vectors(levels: int, dim: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(levels), repeat=dim)), dtype=torch.float64)


def test_all_256_binary_vectors_sum_to_one():
    model = MADEModel((8,), Bernoulli(), hidden=(32, 32), order=[3, 1, 7, 0, 5, 2, 6, 4])
    assert model.likelihood is Likelihood.EXACT
    total = model.log_prob(all_vectors(2, 8)).exp().sum()
    torch.testing.assert_close(total, torch.tensor(1.0))


def test_categorical_over_three_levels_sums_to_one_on_image_shaped_events():
    model = MADEModel((1, 2, 2), Categorical(3), hidden=(16,))
    x = all_vectors(3, 4).reshape(-1, 1, 2, 2)
    torch.testing.assert_close(model.log_prob(x).logsumexp(0), torch.tensor(0.0))


@pytest.mark.parametrize("conditional", [MixtureOfGaussians(3), MixtureOfLogistics(3)])
def test_mixture_density_integrates_to_one_in_2d(conditional):
    model = MADEModel((2,), conditional, hidden=(16, 16))
    for p in model.parameters():  # keep scales moderate so a finite grid holds the mass
        p.data.mul_(0.5)
    grid = torch.linspace(-40, 40, 801)
    xx = torch.cartesian_prod(grid, grid)
    with torch.no_grad():
        dens = model.log_prob(xx).exp().reshape(len(grid), len(grid))
    mass = torch.trapezoid(torch.trapezoid(dens, grid, dim=1), grid)
    torch.testing.assert_close(mass, torch.tensor(1.0), atol=1e-6, rtol=0)


def test_mixture_log_probs_match_reference_distributions():
    params = torch.randn(5, 4, 9)
    x = torch.randn(5, 4)
    logits, mu, log_s = params.chunk(3, -1)
    gauss = D.MixtureSameFamily(D.Categorical(logits=logits), D.Normal(mu, log_s.exp()))
    torch.testing.assert_close(MixtureOfGaussians(3).log_prob(params, x), gauss.log_prob(x))
    w = logits.softmax(-1).numpy()
    ref = (w * stats.logistic.pdf(x[..., None].numpy(), mu.numpy(), log_s.exp().numpy())).sum(-1)
    torch.testing.assert_close(
        MixtureOfLogistics(3).log_prob(params, x), torch.from_numpy(np.log(ref))
    )


@pytest.mark.parametrize(
    ("conditional", "x"),
    [
        (Bernoulli(), torch.randint(0, 2, (3, 5)).double()),
        (Categorical(4), torch.randint(0, 4, (3, 5))),
        (MixtureOfGaussians(2), torch.randn(3, 5)),
        (MixtureOfLogistics(2), torch.randn(3, 5)),
    ],
)
def test_conditional_i_has_zero_gradient_wrt_inputs_i_onwards(conditional, x):
    order = torch.tensor([2, 0, 4, 1, 3])
    model = MADEModel((5,), conditional, hidden=(12, 12), order=order, activation=torch.nn.Tanh)
    feats = conditional.features(conditional.validate(x, (5,)), torch.float64)
    jac = torch.autograd.functional.jacobian(lambda f: model.net(f).sum(0), feats)  # (D, k, B, D)
    depends = jac.abs().sum(dim=(1, 2)) > 0
    assert torch.equal(depends, order[None, :] < order[:, None])


def test_binary_samples_follow_the_exact_distribution():
    model = MADEModel((3,), Bernoulli(), hidden=(8,), order=[2, 0, 1])
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3)  # a far-from-uniform law, so a wrong order would show
        probs = model.log_prob(all_vectors(2, 3)).exp().numpy()
    draws = model.sample(20000, generator=torch.Generator().manual_seed(0))
    assert draws.shape == (20000, 3) and draws.dtype == torch.float64
    codes = (draws.long() * torch.tensor([4, 2, 1])).sum(1).numpy()
    counts = np.bincount(codes, minlength=8)
    assert stats.chisquare(counts, 20000 * probs).pvalue > 1e-3


@pytest.mark.parametrize("conditional", [MixtureOfGaussians(3), MixtureOfLogistics(3)])
def test_one_dimensional_mixture_samples_match_the_mixture_cdf(conditional):
    model = MADEModel((1,), conditional, hidden=(4,))
    with torch.no_grad():
        params = model.net(torch.zeros(1, 1))[0, 0]
    logits, mu, log_s = (t.numpy() for t in params.chunk(3))
    w = np.exp(logits - logits.max())
    w /= w.sum()
    law = stats.norm if isinstance(conditional, MixtureOfGaussians) else stats.logistic
    draws = model.sample(4000, generator=torch.Generator().manual_seed(0))[:, 0].numpy()

    def cdf(v):
        return (w * law.cdf(v[:, None], mu, np.exp(log_s))).sum(1)

    assert stats.kstest(draws, cdf).pvalue > 1e-3


def test_top_k_one_is_greedy_decoding():
    model = MADEModel((4,), Categorical(5), hidden=(16,))
    a = model.sample(6, top_k=1, generator=torch.Generator().manual_seed(0))
    b = model.sample(6, top_k=1, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and torch.equal(a, a[:1].expand(6, 4))


def test_training_by_exact_kl_recovers_a_known_binary_law():
    target = torch.softmax(torch.randn(8) * 2, 0)  # a law over {0,1}^3
    x = all_vectors(2, 3)
    model = MADEModel((3,), Bernoulli(), hidden=(16, 16))
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(300):
        opt.zero_grad()
        loss = -(target * model.log_prob(x)).sum()  # cross-entropy = KL + H(target)
        loss.backward()
        opt.step()
    kl = (target * (target.log() - model.log_prob(x))).sum()
    assert kl.item() < 1e-3


def test_for_data_and_registry():
    assert MODELS.get("made") is MADEModel
    assert isinstance(MADEModel.for_data(DataSpec((6,), 2)).conditional, Bernoulli)
    cat = MADEModel.for_data(DataSpec((1, 3, 3), 16)).conditional
    assert isinstance(cat, Categorical) and cat.levels == 16
    assert isinstance(MADEModel.for_data(DataSpec((2,))).conditional, MixtureOfGaussians)
    mol = MixtureOfLogistics(4)
    assert MADEModel.for_data(DataSpec((2,)), conditional=mol).conditional is mol


def test_bad_inputs_raise_invalid_input():
    with pytest.raises(InvalidInput, match=r"expected shape \(B, 4\)"):
        MADEModel((4,), Bernoulli()).log_prob(torch.zeros(2, 5))
    with pytest.raises(InvalidInput, match="0…1"):
        MADEModel((4,), Bernoulli()).log_prob(torch.full((2, 4), 2.0))
    with pytest.raises(InvalidInput, match="floating-point"):
        MADEModel((4,), MixtureOfGaussians(2)).log_prob(torch.zeros(2, 4, dtype=torch.long))
