"""NLL and bits/dim against models whose likelihood is known exactly."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from probgen.core import GenerativeModel, IntractableLikelihood, InvalidInput, Likelihood
from probgen.distributions import DiagonalGaussian, Gaussian
from probgen.evaluate.likelihood import bits_per_dim, log_probs, nll


class UniformCube(GenerativeModel):
    """The uniform density on [0, 1)^D (log p = 0 inside) with a chosen likelihood label."""

    def __init__(self, event_shape: tuple[int, ...], likelihood: Likelihood) -> None:
        super().__init__(event_shape)
        self.likelihood = likelihood
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the model a dtype

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.rand((n, *self.event_shape), generator=generator)

    def log_prob(self, x: Tensor) -> Tensor:
        x = self._check(x)
        return torch.zeros(len(x), dtype=x.dtype) + 0.0 * self.anchor


class UniformMass(GenerativeModel):
    """The uniform probability mass on {0, …, K-1}^D: log P(x) = -D log K."""

    likelihood = Likelihood.EXACT

    def __init__(self, event_shape: tuple[int, ...], levels: int) -> None:
        super().__init__(event_shape)
        self.levels = levels

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.randint(self.levels, (n, *self.event_shape), generator=generator).double()

    def log_prob(self, x: Tensor) -> Tensor:
        x = self._check(x)
        dim = math.prod(self.event_shape)
        return torch.full((len(x),), -dim * math.log(self.levels), dtype=x.dtype)


class Generator(GenerativeModel):
    """A sampler without a density (likelihood NONE), like a GAN generator."""

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn((n, *self.event_shape), generator=generator)


def _random_gaussian(dim: int, seed: int) -> Gaussian:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, dim, generator=g)
    return Gaussian(torch.randn(dim, generator=g), a @ a.T + 0.5 * torch.eye(dim))


@settings(max_examples=8, deadline=None, derandomize=True)
@given(dim=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_nll_of_own_samples_is_the_entropy(dim: int, seed: int) -> None:
    """E_p[-log p(x)] = H[p] = ½ log det(2πe Σ): the NLL estimate covers it within 4.5 stderr."""
    p = _random_gaussian(dim, seed)
    x = p.sample(20_000, generator=torch.Generator().manual_seed(seed + 1))
    est = nll(p, x, batch_size=3000)
    entropy = 0.5 * torch.logdet(2 * math.pi * math.e * p.covariance).item()
    assert est.kind == "exact"
    assert est.stderr > 0
    assert abs(est.value - entropy) < 4.5 * est.stderr


def test_nll_is_the_mean_and_stderr_of_per_example_values() -> None:
    """Batching changes nothing: value = mean(-log p), stderr = s/√N over all examples."""
    p = _random_gaussian(3, 0)
    x = p.sample(1001)
    minus_lp = -p.log_prob(x)
    for batch_size in (1, 7, 1001, 5000):
        est = nll(p, x, batch_size=batch_size)
        assert est.value == pytest.approx(minus_lp.mean().item(), rel=1e-12)
        assert est.stderr == pytest.approx(minus_lp.std().item() / math.sqrt(1001), rel=1e-10)


@pytest.mark.parametrize(
    "likelihood", [Likelihood.EXACT, Likelihood.ESTIMATE, Likelihood.BOUND, Likelihood.UNNORMALIZED]
)
def test_kind_follows_the_model_likelihood(likelihood: Likelihood) -> None:
    """The label says what log_prob means: exact, estimate, bound (on the NLL), unnormalized."""
    model = UniformCube((2,), likelihood)
    x = torch.rand(10, 2)
    assert nll(model, x).kind == likelihood.value
    assert bits_per_dim(model, x).kind == likelihood.value


def test_model_without_likelihood_raises_a_clear_error() -> None:
    with pytest.raises(IntractableLikelihood, match=r"no likelihood.*mmd"):
        nll(Generator((2,)), torch.randn(4, 2))
    with pytest.raises(IntractableLikelihood):
        bits_per_dim(Generator((2,)), torch.randn(4, 2))


def test_bits_per_dim_of_continuous_data_is_nll_over_d_ln2() -> None:
    """bpd = -log p(x) / (D ln 2); for a Gaussian on its own samples ≈ H[p] / (D ln 2)."""
    p = DiagonalGaussian(torch.zeros(1, 4, 4), torch.full((1, 4, 4), 0.3))
    x = p.sample(5000)
    d_ln2 = 16 * math.log(2)
    bpd, n = bits_per_dim(p, x), nll(p, x)
    assert bpd.value == pytest.approx(n.value / d_ln2, rel=1e-12)
    assert bpd.stderr == pytest.approx(n.stderr / d_ln2, rel=1e-10)
    assert abs(bpd.value - p.closed_form_entropy().item() / d_ln2) < 4.5 * bpd.stderr


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_bits_per_dim_of_uniform_models_is_log2_levels(levels: int) -> None:
    """A uniform mass on {0..K-1}^D and a uniform density on dequantized [0,1)^D: log2 K bits."""
    shape = (1, 3, 3)
    mass = UniformMass(shape, levels)
    x = mass.sample(50)
    discrete = bits_per_dim(mass, x, levels, dequantized=False)
    assert discrete.value == pytest.approx(math.log2(levels), rel=1e-12)
    assert discrete.stderr == 0.0
    cube = UniformCube(shape, Likelihood.EXACT)
    y = (x + torch.rand(x.shape)) / levels
    dequantized = bits_per_dim(cube, y, levels, dequantized=True)
    assert dequantized.value == pytest.approx(math.log2(levels), rel=1e-12)


def test_bits_per_dim_with_levels_needs_the_reading() -> None:
    """With levels, the density and the mass readings differ by log2 K: one must be chosen."""
    model = UniformMass((2,), 4)
    with pytest.raises(InvalidInput, match="dequantized"):
        bits_per_dim(model, model.sample(3), 4)


def test_data_are_cast_to_the_model_dtype_and_train_mode_is_restored() -> None:
    p = DiagonalGaussian(torch.zeros(2, dtype=torch.float32), torch.ones(2, dtype=torch.float32))
    x = torch.randn(20, 2, dtype=torch.float64)
    p.train()
    lp = log_probs(p, x)
    assert lp.dtype == torch.float32
    assert p.training
    torch.testing.assert_close(lp, p.log_prob(x.float()))


def test_bad_inputs_raise_invalid_input() -> None:
    p = _random_gaussian(2, 0)
    with pytest.raises(InvalidInput, match="batch_size"):
        nll(p, p.sample(3), batch_size=0)
    with pytest.raises(InvalidInput, match=r"expected shape \(B, 2\)"):
        nll(p, torch.randn(5, 3))
