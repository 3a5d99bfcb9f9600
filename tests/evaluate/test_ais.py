"""AIS against exact normalising constants: linear-Gaussian decoder, linear GAN, quadratic EBM."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import Tensor, nn

from probgen.core import InvalidInput
from probgen.distributions import DiagonalGaussian, Gaussian, StandardNormal
from probgen.evaluate.ais import (
    AIS,
    DecoderLikelihood,
    GaussianObservation,
    linear_schedule,
    sigmoid_schedule,
)
from probgen.models.ebm import EBM
from probgen.models.gan import Generator
from probgen.models.vae import VAE, GaussianDecoder, GaussianEncoder
from probgen.sampling import HMC, MALA

Z, D, SIGMA = 2, 4, 0.5
KERNEL = functools.partial(HMC, n_leapfrog=3)


def linear_gaussian(seed: int = 0) -> tuple[Tensor, Tensor, Gaussian]:
    """W (D, Z), b (D,) and the exact marginal N(b, W Wᵀ + σ² I) of x = W z + b + σ ε."""
    g = torch.Generator().manual_seed(seed)
    w, b = torch.randn(D, Z, generator=g), torch.randn(D, generator=g)
    return w, b, Gaussian(b, w @ w.T + SIGMA**2 * torch.eye(D))


def linear(w: Tensor, b: Tensor) -> nn.Linear:
    layer = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        layer.weight.copy_(w)
        layer.bias.copy_(b)
    return layer


def linear_vae(w: Tensor, b: Tensor) -> VAE:
    encoder = GaussianEncoder(nn.Linear(D, 2 * Z), Z)  # AIS never uses the encoder
    return VAE(encoder, GaussianDecoder(linear(w, b), (D,), std=SIGMA))


def test_ais_converges_to_the_exact_log_likelihood_of_a_linear_gaussian_decoder() -> None:
    w, b, truth = linear_gaussian()
    x = truth.sample(10, generator=torch.Generator().manual_seed(1))
    exact = truth.log_prob(x)
    errors = {}
    for n_levels in (10, 400):
        ais = AIS(sigmoid_schedule(n_levels), KERNEL, step_size=0.3, n_chains=8)
        result = ais.log_likelihood(
            DecoderLikelihood(linear_vae(w, b)), x, generator=torch.Generator().manual_seed(2)
        )
        assert result.log_normalizer.shape == (10,)
        assert result.log_weights.shape == (8, 10)
        assert result.samples.shape == (8, 10, Z)
        errors[n_levels] = result.log_normalizer - exact
    assert errors[400].abs().mean() < errors[10].abs().mean()
    assert abs(errors[400].mean().item()) < 0.1


def test_ais_for_a_gan_generator_with_a_gaussian_observation_model() -> None:
    w, b, truth = linear_gaussian(seed=3)
    generator = Generator(linear(w, b), StandardNormal((Z,)), (D,))
    x = truth.sample(6, generator=torch.Generator().manual_seed(4))
    ais = AIS(sigmoid_schedule(400), KERNEL, step_size=0.3, n_chains=8)
    result = ais.log_likelihood(
        GaussianObservation(generator, SIGMA), x, generator=torch.Generator().manual_seed(5)
    )
    assert abs((result.log_normalizer - truth.log_prob(x)).mean().item()) < 0.1


class Quadratic(nn.Module):
    """E(x) = ½ xᵀ A x, whose log Z = (D/2) log 2π − ½ log det A."""

    def __init__(self, a: Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a)

    def forward(self, x: Tensor) -> Tensor:
        return 0.5 * ((x @ self.a) * x).sum(dim=1)


def test_ais_log_partition_of_an_energy_based_model() -> None:
    a = torch.tensor([[4.0, 1.0], [1.0, 0.5]])
    ebm = EBM((2,), energy=Quadratic(a), buffer_size=1)
    exact = math.log(2 * math.pi) - 0.5 * torch.logdet(a).item()
    ais = AIS(sigmoid_schedule(500), MALA, step_size=0.3, n_chains=128)
    result = ais.log_partition(ebm.init, ebm.energy, generator=torch.Generator().manual_seed(0))
    estimate = result.estimate("estimate")
    assert abs(estimate.value - exact) < 0.1
    assert 0 < estimate.stderr < 0.05
    assert 1 <= result.effective_sample_size().item() <= 128


def test_one_level_is_importance_sampling_and_unbiased_for_z() -> None:
    # T = 1: w = f(z)/p_0(z) with z ~ p_0, so E[w] = Z exactly; f = N(1, 0.5²) · e², Z = e².
    initial = DiagonalGaussian(torch.zeros(1), torch.ones(1))
    target = DiagonalGaussian(torch.ones(1), torch.full((1,), 0.5))
    ais = AIS(linear_schedule(1), MALA, step_size=0.1, n_chains=20_000)
    result = ais.run(initial, lambda z: target.log_prob(z) + 2.0, generator=torch.Generator())
    w = result.log_weights.exp().flatten()
    assert abs(w.mean().item() - math.exp(2.0)) < 4 * w.std().item() / math.sqrt(len(w))


def test_schedules_run_from_zero_to_one() -> None:
    for betas in (linear_schedule(7), sigmoid_schedule(7), sigmoid_schedule(7, radius=1.0)):
        assert betas.shape == (8,)
        assert betas[0] == 0 and betas[-1] == 1
        assert (betas.diff() > 0).all()
    s = sigmoid_schedule(100)
    assert s[1] < linear_schedule(100)[1]  # denser near β = 0


@pytest.mark.parametrize(
    "options",
    [
        {"schedule": [0.0, 0.5]},
        {"schedule": [0.0, 0.7, 0.3, 1.0]},
        {"n_chains": 0},
        {"target_acceptance": 1.5},
        {"step_size": -1.0},
    ],
)
def test_bad_options_are_rejected(options: dict) -> None:
    with pytest.raises(InvalidInput):
        AIS(**options)


def test_adapters_reject_models_without_the_parts() -> None:
    with pytest.raises(InvalidInput, match="prior"):
        DecoderLikelihood(nn.Linear(2, 2))
    with pytest.raises(InvalidInput, match="prior"):
        GaussianObservation(nn.Linear(2, 2), 0.1)
    with pytest.raises(InvalidInput, match="std"):
        GaussianObservation(nn.Linear(2, 2), 0.0)
