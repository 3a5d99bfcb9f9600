"""Parametrizations, the sampler interface, the objectives' estimators and the Diffusion model."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from probgen.core import DataSpec, InvalidInput, Likelihood
from probgen.models.diffusion import (
    DDIM,
    DDPM,
    Ancestral,
    DataPrediction,
    DDPMChain,
    Diffusion,
    DiffusionSampler,
    DiscretizedGaussianDecoder,
    EulerMaruyama,
    ExactGaussianDenoiser,
    HutchinsonDivergence,
    NoisePrediction,
    ODELikelihood,
    Prediction,
    PredictorCorrector,
    ProbabilityFlow,
    ScorePrediction,
    ScoreSDE,
    VariancePreserving,
    VariationalBound,
    VLBLikelihood,
    variational_bound,
)
from probgen.registry import MODELS, SAMPLERS

MU_, SIGMA_ = (1.0, -0.5), ((1.0, 0.6), (0.6, 0.8))


def mu() -> Tensor:
    return torch.tensor(MU_)


def sigma() -> Tensor:
    return torch.tensor(SIGMA_)


class _Fixed(nn.Module):
    """A 'network' returning a fixed function of (x, t), to test the parametrizations."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.fn(x, t)


@pytest.mark.parametrize("kind", ["noise", "score", "data"])
def test_parametrizations_agree_with_the_exact_denoiser(kind):
    """A network outputting the exact ε̂, ŝ or x̂_0 gives the same Prediction in every wrapper."""
    process = VariancePreserving()
    exact = ExactGaussianDenoiser(process, mu(), sigma())
    wrapper = {"noise": NoisePrediction, "score": ScorePrediction, "data": DataPrediction}[kind]
    denoiser = wrapper(_Fixed(lambda x, t: getattr(exact(x, t), kind)), process)
    x, t = torch.randn(16, 2), torch.rand(16) * 0.9 + 0.05
    want, got = exact(x, t), denoiser(x, t)
    for field in ("noise", "score", "data"):
        assert torch.allclose(getattr(got, field), getattr(want, field), atol=1e-10)
    # one 0-dim time for the batch (the samplers' float path) gives the per-example answer
    one = torch.tensor(0.37)
    want, got = exact(x, one.expand(16)), denoiser(x, one)
    for field in ("noise", "score", "data"):
        assert torch.allclose(getattr(got, field), getattr(want, field), atol=1e-10)


def test_ddim_with_eta_one_is_ancestral_sampling():
    """Song, Meng & Ermon (2021): DDIM with η = 1 is the DDPM posterior step, draw for draw."""
    den = ExactGaussianDenoiser(DDPMChain.linear(100), mu(), sigma())
    x1 = torch.randn(64, 2)
    a = Ancestral().run(den, x1, 25, generator=torch.Generator().manual_seed(2)).samples
    b = DDIM(1.0).run(den, x1, 25, generator=torch.Generator().manual_seed(2)).samples
    assert torch.allclose(a, b, atol=1e-10)


@pytest.mark.parametrize(
    ("sampler", "evaluations"),
    [(Ancestral(), 10), (DDIM(), 10), (EulerMaruyama(), 10), (PredictorCorrector(), 20)],
)
def test_samplers_count_network_evaluations(sampler, evaluations):
    den = ExactGaussianDenoiser(VariancePreserving(), mu(), sigma())
    result = sampler.run(den, torch.randn(8, 2), 10, record_every=5)
    assert result.samples.shape == (8, 2) and result.n_evaluations == evaluations
    assert result.trajectory.shape == (2, 8, 2)


def test_probability_flow_is_deterministic_and_counts_solver_evaluations():
    den = ExactGaussianDenoiser(VariancePreserving(), mu(), sigma())
    x1 = torch.randn(8, 2)
    a, b = ProbabilityFlow().run(den, x1, 1), ProbabilityFlow().run(den, x1, 1)
    assert torch.equal(a.samples, b.samples) and a.n_evaluations > 6


def test_sampler_rejects_non_denoisers():
    with pytest.raises(InvalidInput, match="needs a Denoiser"):
        Ancestral().run(lambda x, t: x, torch.randn(2, 2), 3)


def test_vlb_objective_is_an_unbiased_estimate_of_the_full_bound():
    """E_k[prior + K term_k] = L_VLB: the one-term training estimate against the full sum."""
    den = ExactGaussianDenoiser(DDPMChain.linear(50), mu(), sigma())
    x = torch.tensor([[0.5, 0.0]]).repeat(4000, 1)
    g = torch.Generator().manual_seed(3)
    one_term = VariationalBound(50)(den, x, g)
    full = variational_bound(den, x[:400], 50, generator=g)
    diff = one_term.mean() - full.mean()
    se = math.sqrt(one_term.var() / len(one_term) + full.var() / len(full))
    assert abs(diff) < 4 * se


def test_discretized_decoder_is_a_distribution_over_levels():
    """Ho et al. (2020) eq. (13): the K bin probabilities sum to one for any mean and std."""
    levels = 5
    decoder = DiscretizedGaussianDecoder(levels)
    centres = (2 * torch.arange(levels) + 1) / levels - 1.0
    for mean, std in ((0.1, 0.3), (-0.9, 0.05), (2.0, 1.0)):
        nll = decoder(centres[:, None], torch.full((levels, 1), mean), torch.full((levels,), std))
        assert torch.exp(-nll).sum().item() == pytest.approx(1.0, abs=1e-10)


def test_model_on_vectors_trains_samples_and_scores():
    """A DDPM on 2-D data: loss back-propagates and falls, samples have the event shape,
    log_prob is EXACT (exact divergence), and bad input names what was expected."""
    model = DDPM.for_data(DataSpec((2,)), chain_steps=100, sample_steps=20, hidden=(32, 32))
    assert model.likelihood is Likelihood.EXACT
    data = mu() + torch.randn(512, 2) @ torch.linalg.cholesky(sigma()).T
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(100):
        batch = data[torch.randint(512, (128,), generator=g)]
        loss = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-20:]) / 20 < 0.8 * sum(losses[:20]) / 20
    x = model.sample(16, generator=torch.Generator().manual_seed(1))
    assert x.shape == (16, 2) and torch.isfinite(x).all()
    for name in ("ddim", "probability_flow"):
        result = model.run_sampler(8, sampler=name, steps=10)
        assert result.samples.shape == (8, 2) and result.n_evaluations >= 10
    log_p = model.log_prob(data[:4])
    assert log_p.shape == (4,) and torch.isfinite(log_p).all()
    with pytest.raises(InvalidInput, match=r"expected shape \(B, 2\)"):
        model.log_prob(torch.zeros(3, 3))
    with pytest.raises(InvalidInput, match="expected a diffusion sampler"):
        model.sample(2, sampler="mala")


def test_likelihood_kinds():
    """ODE with the exact divergence: EXACT; with Hutchinson: ESTIMATE; VLB: BOUND; any
    method on discrete data (a dequantized or discretized bound): BOUND."""
    process = VariancePreserving()
    den = ExactGaussianDenoiser(process, mu(), sigma())
    assert Diffusion((2,), den).likelihood is Likelihood.EXACT
    hutch = Diffusion((2,), den, likelihood_method=ODELikelihood(HutchinsonDivergence()))
    assert hutch.likelihood is Likelihood.ESTIMATE
    assert Diffusion((2,), den, likelihood_method=VLBLikelihood(50)).likelihood is Likelihood.BOUND
    assert Diffusion((2,), den, levels=4).likelihood is Likelihood.BOUND
    assert ScoreSDE((20,)).likelihood is Likelihood.ESTIMATE  # "auto" above 16 dimensions


def test_model_on_discrete_images():
    """Digits-shaped (1, 8, 8) data with 17 levels: a U-Net, integer samples, finite bounds."""
    spec = DataSpec((1, 8, 8), levels=17)
    model = DDPM.for_data(spec, chain_steps=20, sample_steps=5, likelihood="vlb")
    x = torch.randint(0, 17, (3, 1, 8, 8)).to(torch.get_default_dtype())
    loss = model.loss(x)
    loss.backward()
    assert torch.isfinite(loss)
    samples = model.sample(2)
    assert samples.shape == (2, 1, 8, 8)
    assert torch.equal(samples, samples.round()) and samples.min() >= 0 and samples.max() <= 16
    assert torch.isfinite(model.log_prob(x)).all()


def test_registry_entries():
    assert MODELS.get("ddpm") is DDPM and MODELS.get("score_sde") is ScoreSDE
    for name in (
        "ancestral",
        "ddim",
        "euler_maruyama",
        "predictor_corrector",
        "probability_flow",
        "ncsn",
    ):
        assert isinstance(SAMPLERS.get(name)(), DiffusionSampler)
    with pytest.raises(InvalidInput, match="unknown process"):
        ScoreSDE((2,), process="nope")


def test_a_prediction_is_built_from_exactly_one_quantity():
    """ε̂, x̂_0 and ŝ follow from any one of them by x_t = α x_0 + σ ε and ŝ = −ε̂/σ."""
    x0, eps = torch.randn(4, 2), torch.randn(4, 2)
    alpha, sigma = 0.6, 0.8
    xt = alpha * x0 + sigma * eps
    for given in ({"noise": eps}, {"data": x0}, {"score": -eps / sigma}):
        pred = Prediction(xt, alpha, sigma, **given)
        assert torch.allclose(pred.noise, eps, atol=1e-12)
        assert torch.allclose(pred.data, x0, atol=1e-12)
        assert torch.allclose(pred.score, -eps / sigma, atol=1e-12)
    with pytest.raises(InvalidInput, match="exactly one"):
        Prediction(xt, alpha, sigma, noise=eps, data=x0)
