"""ELBO, IWAE-K and AIS through ``nll`` against a linear-Gaussian VAE whose log p(x) is exact."""

from __future__ import annotations

import functools
import itertools
import math

import pytest
import torch
from torch import Tensor, nn

from probgen.core import Estimate, IntractableLikelihood, InvalidInput, Likelihood
from probgen.distributions import Gaussian
from probgen.evaluate.ais import AIS, GaussianObservation, sigmoid_schedule
from probgen.evaluate.likelihood import (
    AISBound,
    ELBOBound,
    IWAEBound,
    bits_per_dim,
    log_probs,
    nll,
    normalized_nll,
)
from probgen.models.ebm import EBM
from probgen.models.gan import GAN
from probgen.models.vae import VAE, GaussianDecoder, GaussianEncoder
from probgen.sampling import HMC

Z, D, SIGMA = 2, 3, 0.4


def model_and_truth(posterior_inflation: float) -> tuple[VAE, Gaussian]:
    """x = W z + b + σ ε, with an encoder giving the exact posterior mean and its std × inflation.

    The exact posterior is N(S Wᵀ (x − b)/σ², S), S = (I + WᵀW/σ²)⁻¹; the encoder's
    diagonal std is √diag S × ``posterior_inflation`` (exact when 1 and S diagonal).
    """
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(D, Z, generator=g))
    w = q * torch.tensor([2.0, 0.7])  # orthogonal columns: S is diagonal
    b = torch.randn(D, generator=g)
    s = torch.linalg.inv(torch.eye(Z) + w.T @ w / SIGMA**2)
    decoder_net = nn.Linear(Z, D)
    encoder_net = nn.Linear(D, 2 * Z)
    a = s @ w.T / SIGMA**2  # posterior mean = a (x − b)
    with torch.no_grad():
        decoder_net.weight.copy_(w)
        decoder_net.bias.copy_(b)
        encoder_net.weight.copy_(torch.cat([a, torch.zeros(Z, D)]))
        log_std = (s.diagonal().sqrt() * posterior_inflation).log()
        encoder_net.bias.copy_(torch.cat([-a @ b, log_std]))
    vae = VAE(GaussianEncoder(encoder_net, Z), GaussianDecoder(decoder_net, (D,), std=SIGMA))
    return vae, Gaussian(b, w @ w.T + SIGMA**2 * torch.eye(D))


def test_with_the_exact_posterior_the_bounds_are_the_log_likelihood() -> None:
    # Every importance weight p(x, z)/q(z|x) equals p(x): IWAE is exact draw by draw; the
    # ELBO (analytic KL, Monte Carlo reconstruction) is exact in expectation.
    vae, truth = model_and_truth(posterior_inflation=1.0)
    x = truth.sample(200, generator=torch.Generator().manual_seed(1))
    exact = nll(truth, x)
    for estimator in (IWAEBound(1), IWAEBound(16)):
        result = nll(vae, x, estimator=estimator, generator=torch.Generator().manual_seed(2))
        assert result.kind == "bound"
        assert result.value == pytest.approx(exact.value, abs=1e-9)
    for k in (1, 8):
        elbo = log_probs(vae, x, estimator=ELBOBound(k), generator=torch.Generator().manual_seed(3))
        gap = Estimate.from_samples(elbo - truth.log_prob(x))  # paired, per example
        assert gap.stderr > 0 and abs(gap.value) < 4 * gap.stderr


def test_iwae_increases_with_k_towards_the_exact_log_likelihood() -> None:
    vae, truth = model_and_truth(posterior_inflation=2.5)
    x = truth.sample(200, generator=torch.Generator().manual_seed(3))
    exact = nll(truth, x).value
    gaps = []
    for k in (1, 10, 100, 1000):
        result = nll(vae, x, estimator=IWAEBound(k), generator=torch.Generator().manual_seed(4))
        gaps.append(result.value - exact)  # NLL upper bound minus the exact NLL
    assert gaps[0] > 0.3  # the inflated posterior makes the ELBO loose
    assert all(a > b for a, b in itertools.pairwise(gaps))
    assert -0.01 < gaps[-1] < 0.02


def test_elbo_estimator_matches_the_model_log_prob_and_the_closed_form_gap() -> None:
    # ELBO = log p(x) − KL(q ‖ p(z|x)), and with a diagonal exact covariance the KL is closed form.
    vae, truth = model_and_truth(posterior_inflation=2.0)
    x = truth.sample(400, generator=torch.Generator().manual_seed(5))
    result = nll(vae, x, estimator=ELBOBound(64), generator=torch.Generator().manual_seed(6))
    kl_gap = Z * 0.5 * (2.0**2 - 1 - math.log(2.0**2))  # KL(N(μ, c²s²) ‖ N(μ, s²)) per latent
    assert result.value - nll(truth, x).value == pytest.approx(kl_gap, abs=4 * result.stderr)


def test_ais_bound_through_nll_and_bits_per_dim() -> None:
    vae, truth = model_and_truth(posterior_inflation=3.0)
    x = truth.sample(6, generator=torch.Generator().manual_seed(7))
    ais = AIS(
        sigmoid_schedule(200), functools.partial(HMC, n_leapfrog=2), step_size=0.2, n_chains=8
    )
    result = nll(vae, x, estimator=AISBound(ais), generator=torch.Generator().manual_seed(8))
    assert result.kind == "bound"
    assert result.value == pytest.approx(nll(truth, x).value, abs=0.1)
    bpd = bits_per_dim(vae, x, estimator=AISBound(ais), generator=torch.Generator().manual_seed(8))
    assert bpd.value == pytest.approx(result.value / (D * math.log(2)), rel=1e-12)


def test_a_gan_gets_an_ais_likelihood_only_with_an_observation_model() -> None:
    gan = GAN((2,), latent_dim=2, hidden=(8,))
    x = torch.randn(4, 2)
    with pytest.raises(IntractableLikelihood):
        nll(gan, x)
    with pytest.raises(IntractableLikelihood, match="iwae_bound"):
        nll(gan, x, estimator=IWAEBound(4))
    ais = AIS(sigmoid_schedule(5), n_chains=2)
    result = nll(gan, x, estimator=AISBound(ais, lambda m: GaussianObservation(m.generator, 0.5)))
    assert result.kind == "bound" and math.isfinite(result.value)


class Quadratic(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return 0.5 * x.square().sum(dim=1)


def test_normalized_nll_of_an_ebm_with_its_exact_log_partition() -> None:
    ebm = EBM((2,), energy=Quadratic(), buffer_size=1)
    x = torch.randn(1000, 2)
    log_z = math.log(2 * math.pi)
    result = normalized_nll(ebm, x, Estimate(log_z, 0.01))
    exact = nll(Gaussian(torch.zeros(2), torch.eye(2)), x)
    assert result.value == pytest.approx(exact.value, abs=1e-10)
    assert result.kind == "estimate" and result.stderr > exact.stderr
    gaussian = Gaussian(torch.zeros(2), torch.eye(2))
    assert gaussian.likelihood is Likelihood.EXACT
    with pytest.raises(InvalidInput, match="unnormalized"):
        normalized_nll(gaussian, x, Estimate(0.0))


@pytest.mark.parametrize("make", [lambda: ELBOBound(0), lambda: IWAEBound(-1)])
def test_bad_k_is_rejected(make) -> None:
    with pytest.raises(InvalidInput, match="k"):
        make()
