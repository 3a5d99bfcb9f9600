"""Uniform dequantization and the bits/dim convention, against exact values and the bound."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from probgen.core import InvalidInput
from probgen.data.dequantize import bits_per_dim, uniform_dequantize


@settings(max_examples=20, deadline=None)
@given(
    levels=st.integers(2, 300),
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    seed=st.integers(0, 2**31),
)
def test_dequantized_values_stay_in_their_bin(levels, shape, seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randint(levels, (16, *shape), generator=generator).double()
    y = uniform_dequantize(x, levels, generator=generator)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert (y >= 0).all() and (y < 1).all()
    assert torch.equal(torch.floor(y * levels), x)


def test_dequantization_noise_is_uniform_and_reproducible():
    x = torch.zeros(200_000)
    y = uniform_dequantize(x, 4, generator=torch.Generator().manual_seed(0))
    u = 4 * y  # U[0, 1): mean 1/2, variance 1/12
    assert u.mean().item() == pytest.approx(0.5, abs=5 * math.sqrt(1 / 12 / len(u)))
    assert u.var().item() == pytest.approx(1 / 12, rel=0.01)
    again = uniform_dequantize(x, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(y, again)


def test_integer_input_gives_default_dtype():
    y = uniform_dequantize(torch.tensor([[0, 255]], dtype=torch.uint8), 256)
    assert y.dtype == torch.get_default_dtype()
    assert 0 <= y[0, 0] < 1 / 256 and 255 / 256 <= y[0, 1] < 1


@pytest.mark.parametrize("levels", [2, 17, 256])
@pytest.mark.parametrize("dim", [1, 64, 784])
def test_uniform_models_have_log2_k_bits(levels, dim):
    # A uniform density on [0, 1)^D has log p(y) = 0; a uniform mass has log P = -D log K.
    continuous = bits_per_dim(torch.zeros(3), dim, levels, dequantized=True)
    discrete = bits_per_dim(
        torch.full((3,), -dim * math.log(levels)), dim, levels, dequantized=False
    )
    assert torch.allclose(continuous, torch.full((3,), math.log2(levels)))
    assert torch.allclose(discrete, torch.full((3,), math.log2(levels)))


def test_continuous_bits_are_the_density_in_base_2():
    normal = torch.distributions.Normal(0.0, 1.0)
    x = torch.linspace(-3, 3, 7)[:, None].repeat(1, 5)  # (7, 5)
    log_p = normal.log_prob(x).sum(1)
    expected = -normal.log_prob(x).div(math.log(2)).mean(1)
    assert torch.allclose(bits_per_dim(log_p, 5), expected)
    assert bits_per_dim(-2.0, 4) == pytest.approx(2.0 / (4 * math.log(2)))


def test_piecewise_constant_density_attains_the_discrete_bits():
    # p(y) = K^D P(floor(K y)) is constant on every bin, so the bound is an equality.
    levels, dim = 5, 3
    probs = torch.tensor([0.1, 0.4, 0.2, 0.2, 0.1])
    x = torch.randint(levels, (50, dim))
    log_mass = probs.log()[x].sum(1)
    y = uniform_dequantize(x, levels)
    log_density = (levels * probs)[torch.floor(levels * y).long()].log().sum(1)
    assert torch.allclose(
        bits_per_dim(log_density, dim, levels, dequantized=True),
        bits_per_dim(log_mass, dim, levels, dequantized=False),
    )


def test_dequantized_bits_bound_the_discrete_bits():
    # Density p(y) = 2y on [0, 1), K bins. Exact discrete mass P(x) = (2x + 1)/K^2 and exact
    # E_u log p((x + u)/K) = log 2 - log K + ∫_x^{x+1} log t dt (Theis et al. 2016, eq. 8).
    levels = 8
    x = torch.arange(levels, dtype=torch.float64)

    def antiderivative(t: torch.Tensor) -> torch.Tensor:  # of log t, with 0 log 0 = 0
        return torch.xlogy(t, t) - t

    integral = antiderivative(x + 1) - antiderivative(x)
    expected_log_density = math.log(2) - math.log(levels) + integral
    discrete = bits_per_dim(torch.log((2 * x + 1) / levels**2), 1, levels, dequantized=False)
    bound = bits_per_dim(expected_log_density, 1, levels, dequantized=True)
    assert (bound > discrete).all()  # strict: p is not constant on any bin
    # The Monte Carlo average over dequantization noise converges to the exact bound.
    n = 100_000
    y = uniform_dequantize(x.repeat(n, 1), levels, generator=torch.Generator().manual_seed(1))
    per_draw = bits_per_dim(torch.log(2 * y), 1, levels, dequantized=True)  # (n, K)
    stderr = per_draw.std(0) / math.sqrt(n)
    assert (per_draw.mean(0) - bound).abs().le(5 * stderr).all()


def test_convention_errors():
    with pytest.raises(InvalidInput, match="pass dequantized=True"):
        bits_per_dim(torch.zeros(2), 4, 256)
    with pytest.raises(InvalidInput, match="needs the number of levels"):
        bits_per_dim(torch.zeros(2), 4, dequantized=True)
    with pytest.raises(InvalidInput, match="dim must be >= 1"):
        bits_per_dim(torch.zeros(2), 0)
    with pytest.raises(InvalidInput, match="levels must be >= 2"):
        uniform_dequantize(torch.zeros(2), 1)


LEVELS_OF_DTYPE = [
    (torch.float64, [2, 17, 255, 256, 1000, 65536]),
    (torch.float32, [2, 17, 255, 256, 1000, 65536]),
    (torch.float16, [2, 17, 255, 256, 1000]),
    (torch.bfloat16, [2, 17, 100, 128]),
]


@pytest.mark.parametrize(
    ("dtype", "levels"), [(d, k) for d, ks in LEVELS_OF_DTYPE for k in ks], ids=str
)
def test_extreme_noise_stays_in_the_bin_in_every_dtype(monkeypatch, dtype, levels):
    """⌊K y⌋ = x for every x in 0 … K-1 at u = 0 and at the largest u < 1 of the dtype.

    In float32 with K = 256 and no clamp, (x + u)/K rounds to (x + 1)/K for x ≥ 128.
    """
    x = torch.arange(levels, dtype=dtype)
    for u in (0.0, 1.0 - torch.finfo(dtype).eps / 2):
        monkeypatch.setattr(
            torch, "rand", lambda shape, *, u=u, dtype, **_: torch.full(shape, u, dtype=dtype)
        )
        y = uniform_dequantize(x, levels)
        assert y.dtype == dtype
        assert torch.equal(torch.floor(y * levels), x)
        assert (y >= 0).all() and (y < 1).all()


@pytest.mark.parametrize(
    ("dtype", "levels"), [(d, k) for d, ks in LEVELS_OF_DTYPE for k in ks], ids=str
)
def test_bin_limits_are_the_tightest_in_bin_values(dtype, levels):
    """lo_k, hi_k are in bin k, and the next number of the dtype past each is not."""
    from probgen.data.dequantize import bin_limits

    lo, hi = bin_limits(levels, dtype)
    k = torch.arange(levels, dtype=dtype)
    assert torch.equal((lo * levels).floor(), k) and torch.equal((hi * levels).floor(), k)
    below = torch.nextafter(lo, torch.tensor(-1.0, dtype=dtype))
    above = torch.nextafter(hi, torch.tensor(2.0, dtype=dtype))
    assert ((below * levels).floor() < k).all() and ((above * levels).floor() > k).all()
    assert (hi > lo).all()  # at least two values per bin


def test_random_noise_in_float32_stays_in_the_bin():
    """2·10⁶ draws at x = 255, K = 256: about 15 of them round to 1.0 without the clamp."""
    x = torch.full((2_000_000,), 255.0, dtype=torch.float32)
    y = uniform_dequantize(x, 256, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.floor(y * 256), x)


@pytest.mark.parametrize(("dtype", "levels"), [(torch.bfloat16, 256), (torch.float16, 4096)])
def test_too_coarse_a_dtype_is_refused(dtype, levels):
    with pytest.raises(InvalidInput, match="needs a finer dtype"):
        uniform_dequantize(torch.zeros(3, dtype=dtype), levels)
