"""Density-ratio correction of GAN samples: the ratio objects, the samplers' contracts, errors."""

from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from probgen.core import InvalidInput
from probgen.distributions import DiagonalGaussian, StandardNormal
from probgen.divergences import F_DIVERGENCES, FDivergence, TotalVariation
from probgen.models.gan import (
    FGAN,
    GAN,
    LOG_RATIO_OF_CRITIC,
    WGANGP,
    ClassifierLogRatio,
    CriticLogRatio,
    ExactLogRatio,
    FourierFeatures,
    Generator,
    IndependenceMetropolisHastings,
    PerturbedProposal,
    RejectionSampler,
    TooFewAccepted,
    calibrate,
    critic_log_ratio,
)
from probgen.nn.mlp import MLP

RATIO_DIVERGENCES = [d for d in F_DIVERGENCES.values() if type(d) in LOG_RATIO_OF_CRITIC]


def gaussian(shape: tuple[int, ...], mean: float, std: float) -> DiagonalGaussian:
    return DiagonalGaussian(torch.full(shape, mean), torch.full(shape, std))


@pytest.mark.parametrize("divergence", RATIO_DIVERGENCES, ids=lambda d: d.name)
@settings(max_examples=20, deadline=None)
@given(v=st.floats(-1.9, 6.0))
def test_log_ratio_of_critic_inverts_f_prime(divergence: FDivergence, v: float) -> None:
    """f'(e^{ln r(v)}) = g_f(v): the map returns the ratio at which T = g_f(v) is optimal."""
    v_t = torch.tensor([v])
    log_r = LOG_RATIO_OF_CRITIC[type(divergence)](v_t)
    torch.testing.assert_close(divergence.f_prime(log_r.exp()), divergence.activation(v_t))


def test_every_invertible_divergence_has_a_log_ratio() -> None:
    """Only total variation (f' = ½ sign(t − 1)) is left out, and asking for it says why."""
    missing = [d.name for d in F_DIVERGENCES.values() if type(d) not in LOG_RATIO_OF_CRITIC]
    assert missing == ["total_variation"]
    with pytest.raises(InvalidInput, match=r"TotalVariation.*does not determine"):
        critic_log_ratio(FGAN((2,), TotalVariation(), hidden=(8,)))


def test_critic_log_ratio_refuses_packed_and_wasserstein_critics() -> None:
    with pytest.raises(InvalidInput, match="packs of 4"):
        critic_log_ratio(GAN((2,), pack=4, hidden=(8,)))
    with pytest.raises(InvalidInput, match="potential, not a density ratio"):
        critic_log_ratio(WGANGP((2,), hidden=(8,)))


def test_gan_critic_log_ratio_is_its_logit() -> None:
    """For the GAN, d(x) = V(x), the logit of D(x) = σ(V(x)); it shares the critic's parameters."""
    game = GAN((3,), hidden=(8,))
    nn.init.normal_(game.critic.network[-1].weight)
    ratio = critic_log_ratio(game)
    assert isinstance(ratio, CriticLogRatio)
    x = torch.randn(5, 3)
    torch.testing.assert_close(ratio(x).sigmoid(), game.discriminator(x))
    assert {id(p) for p in ratio.parameters()} == {id(p) for p in game.critic.parameters()}


@pytest.mark.parametrize("event_shape", [(2,), (1, 2, 3)])
def test_samplers_keep_the_event_shape_and_are_reproducible(event_shape: tuple[int, ...]) -> None:
    """(n, *event_shape) out for any event shape, the same samples for the same generator."""
    p, q = gaussian(event_shape, 0.3, 0.8), gaussian(event_shape, 0.0, 1.0)
    exact = ExactLogRatio(p, q)
    samplers = (
        RejectionSampler(exact, burn_in=500, chunk=500),
        IndependenceMetropolisHastings(exact, steps=5),
    )
    for sampler in samplers:
        a = sampler.draw(q.sample, 7, generator=torch.Generator().manual_seed(1))
        b = sampler.draw(q.sample, 7, generator=torch.Generator().manual_seed(1))
        assert a.samples.shape == (7, *event_shape)
        torch.testing.assert_close(a.samples, b.samples)
        assert 0.0 < a.acceptance_rate <= 1.0


def test_gan_sample_with_refine_corrects_towards_the_data() -> None:
    """``GAN.sample(n, refine=...)``: G = N(0, 2²) corrected by the exact ratio to N(1, 0.5²).

    Mean and standard deviation of 4,000 corrected samples within 4 standard errors.
    """
    net = nn.Linear(1, 1)
    with torch.no_grad():
        net.weight.fill_(2.0)
        net.bias.zero_()
    game = GAN((1,), generator=Generator(net, StandardNormal((1,)), (1,)), hidden=(8,))
    target = gaussian((1,), 1.0, 0.5)
    exact = ExactLogRatio(target, gaussian((1,), 0.0, 2.0))
    n = 4000
    for refine in (RejectionSampler(exact), IndependenceMetropolisHastings(exact, steps=50)):
        x = game.sample(n, generator=torch.Generator().manual_seed(2), refine=refine)
        assert x.shape == (n, 1)
        assert abs(x.mean().item() - 1.0) < 4 * 0.5 / math.sqrt(n)
        assert abs(x.std().item() - 0.5) < 4 * 0.5 / math.sqrt(2 * n)
    raw = game.sample(n, generator=torch.Generator().manual_seed(2))
    assert raw.std().item() > 1.8


def test_rejection_gives_up_as_soon_as_the_budget_cannot_be_met() -> None:
    """With d = 0 and M = 10 every acceptance probability is e^{-10}: n = 100 samples need
    about 100 e^{10} ≈ 2.2e6 proposals, so a budget of 1e5 fails after the first chunk.
    With M the largest d of 1000 burn-in proposals of a far target, only that one has an
    acceptance probability above e^{-90}: r̂ ≈ 1/1000, so 10 samples need about 10^4
    proposals and a budget of 5000 fails before any chunk is drawn."""
    q = gaussian((1,), 0.0, 1.0)
    draws: list[int] = []

    def proposal(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        draws.append(n)
        return q.sample(n, generator=generator)

    sampler = RejectionSampler(ExactLogRatio(q, q), log_bound=10.0, chunk=1000, max_proposals=10**5)
    needed = 1000 + 100 * math.exp(10.0)
    message = f"100 would take about {needed:.3g} (acceptance ≈ {math.exp(-10.0):.3g}"
    with pytest.raises(TooFewAccepted, match=re.escape(message)):
        sampler.draw(proposal, 100)
    assert draws == [1000]
    far = ExactLogRatio(gaussian((1,), 8.0, 0.1), q)
    draws.clear()
    with pytest.raises(TooFewAccepted, match="accepted 0 of 10 samples in 0 proposals"):
        RejectionSampler(far, burn_in=1000, max_proposals=5000).draw(proposal, 10)
    assert draws == [1000]  # the burn-in only


def test_too_few_accepted_and_bad_arguments() -> None:
    q = gaussian((1,), 0.0, 1.0)
    far = ExactLogRatio(gaussian((1,), 8.0, 0.1), q)
    with pytest.raises(TooFewAccepted, match="accepted 0 of 10"):
        RejectionSampler(far, log_bound=60.0, chunk=100, max_proposals=300).draw(q.sample, 10)
    exact = ExactLogRatio(q, q)
    with pytest.raises(InvalidInput, match="n: expected >= 1"):
        RejectionSampler(exact).draw(q.sample, 0)
    with pytest.raises(InvalidInput, match="n: expected >= 1"):
        IndependenceMetropolisHastings(exact).draw(q.sample, 0)
    with pytest.raises(InvalidInput, match="steps"):
        IndependenceMetropolisHastings(exact, steps=0)
    with pytest.raises(InvalidInput, match="log_bound"):
        RejectionSampler(exact, log_bound=math.inf)
    with pytest.raises(InvalidInput, match="event_shape"):
        ExactLogRatio(gaussian((2,), 0.0, 1.0), q)
    ratio = ClassifierLogRatio(MLP(1, 1, (4,)), (1,))
    with pytest.raises(InvalidInput, match=r"expected shape \(B, 1\), got \(3, 2\)"):
        ratio(torch.zeros(3, 2))
    with pytest.raises(InvalidInput, match="steps, batch"):
        calibrate(ratio, q.sample, q.sample, steps=0)


def test_calibrate_trains_only_the_ratio() -> None:
    """The generator is untouched; the classifier learns, its loss falling below ln 4."""
    game = GAN((2,), hidden=(8,), latent_dim=2)
    before = [p.detach().clone() for p in game.generator.parameters()]
    ratio = ClassifierLogRatio(MLP(2, 1, (16,), zero_last=True), (2,))
    data = gaussian((2,), 3.0, 0.5)
    cal = calibrate(ratio, data.sample, game.sample, steps=300, batch=64, lr=1e-2)
    for b, p in zip(before, game.generator.parameters(), strict=True):
        torch.testing.assert_close(b, p)
    assert cal.final_loss < 0.5 * math.log(4.0)  # ln 4 is the loss of d ≡ 0
    assert cal.cpu_seconds > 0


def test_fourier_features_estimate_the_gaussian_kernel() -> None:
    """φ(x)·φ(y)/F → exp(−‖x − y‖²/(2ℓ²)) (Rahimi & Recht 2007); F = 20,000, error < 4/√F."""
    features = FourierFeatures(2, 20_000, 0.3, generator=torch.Generator().manual_seed(3))
    x = torch.tensor([[0.0, 0.0], [0.1, -0.2], [1.0, 1.0], [0.5, 0.0]])
    phi = features(x)
    assert phi.shape == (4, 40_000) and features.out_features == 40_000
    kernel = phi @ phi.T / 20_000
    exact = torch.exp(-torch.cdist(x, x).square() / (2 * 0.3**2))
    assert (kernel - exact).abs().max() < 4 / math.sqrt(20_000)
    with pytest.raises(InvalidInput, match="length_scale"):
        FourierFeatures(2, 4, 0.0)


def test_perturbed_proposal_is_the_generator_smoothed_by_a_gaussian() -> None:
    """G(z) + τε with G = N(0, 1), τ = 0.75, has law N(0, 1 + τ²) (variance within 4 SE).

    MH with the ratio against that law samples N(1, 0.5²); the noise is reproducible.
    """
    q = gaussian((1,), 0.0, 1.0)
    proposal = PerturbedProposal(q.sample, 0.75)
    n = 20_000
    x = proposal(n, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(x, proposal(n, generator=torch.Generator().manual_seed(4)))
    variance = 1.0 + 0.75**2
    assert abs(x.var().item() - variance) < 4 * variance * math.sqrt(2 / n)
    exact = ExactLogRatio(gaussian((1,), 1.0, 0.5), gaussian((1,), 0.0, math.sqrt(variance)))
    out = IndependenceMetropolisHastings(exact, steps=50).draw(proposal, 4000)
    assert abs(out.samples.mean().item() - 1.0) < 4 * 0.5 / math.sqrt(4000)
    assert abs(out.samples.std().item() - 0.5) < 4 * 0.5 / math.sqrt(8000)
    with pytest.raises(InvalidInput, match="std"):
        PerturbedProposal(q.sample, 0.0)
