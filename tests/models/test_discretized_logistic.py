"""The discretised logistic decoder in float32 and float64: normalised, accurate, finite.

Ground truth is computed in float64 from the law's definition (the logistic
CDF of SciPy for the end bins); tolerances follow from the dtype's eps and
the size of the quantities each log-probability is built from.
"""

from __future__ import annotations

import itertools
import math

import mpmath
import pytest
import torch
from scipy import stats
from torch import nn

from probgen.core import DataSpec
from probgen.models.vae import VAE, DiscretizedLogisticDecoder

K = 256
# Network outputs (out₀, out₁): the middle, the data range's ends, far outside it,
# sharp (below the scale floor) and flat laws, and absurd values.
OUTPUTS = list(
    itertools.product(
        [-1e30, -1e6, -3.0, -1.0, -0.31, 0.0, 0.5, 1.0, 2.0, 1e3, 1e30],
        [-1e30, -20.0, -5.0, -1.0, 0.0, 1.0, 5.0, 40.0, 200.0, 1e30],
    )
)


def _log_probs(out0: float, out1: float, dtype: torch.dtype, levels: int = K) -> torch.Tensor:
    """log P(x = k) for k = 0 … K-1 under the decoder with network output (out₀, out₁): (K,)."""
    decoder = DiscretizedLogisticDecoder(nn.Identity(), (1,), levels)
    params = torch.tensor([out0, out1], dtype=dtype).reshape(1, 2, 1).expand(levels, 2, 1)
    ks = torch.arange(levels, dtype=dtype).reshape(levels, 1)
    return decoder.log_prob_params(ks, params)


def _terms(out0: float, out1: float, levels: int = K) -> tuple[torch.Tensor, torch.Tensor]:
    """In float64, per bin k: the size of log P's ingredients, and log P itself.

    size_k = 1 + (|a_k| + |b_k|)(1 + |log s|) + |log(1 - e^{-1/s})|: a relative
    error of eps in μ, s (which carries eps·|log s| from e^{log s}) and in the
    roundings of a, b and the sum moves log P by a few eps·size_k.
    """
    decoder = DiscretizedLogisticDecoder(nn.Identity(), (1,), levels)
    params = torch.tensor([out0, out1], dtype=torch.float32).double().reshape(1, 2, 1)
    loc, log_scale = (t.reshape(()) for t in decoder._loc_log_scale(params))
    k = torch.arange(levels, dtype=torch.float64)
    a = ((k + 0.5 - loc) / log_scale.exp()).abs().nan_to_num(posinf=0.0)
    b = ((k - 0.5 - loc) / log_scale.exp()).abs().nan_to_num(posinf=0.0)
    a[-1], b[0] = 0.0, 0.0  # the end bins have no upper / lower edge
    width = torch.log(-torch.expm1(-(-log_scale).exp())) if log_scale < 30 else -log_scale
    size = 1 + (a + b) * (1 + log_scale.abs()) + width.abs()
    return size, _log_probs(out0, out1, torch.float64, levels)


@pytest.mark.parametrize(("out0", "out1"), OUTPUTS)
def test_bins_sum_to_one_and_are_finite(dtype: torch.dtype, out0: float, out1: float) -> None:
    """logsumexp_k log P(k) = 0 within eps·(E_P[8·size] + 2 log2 K), every log P finite.

    The first term bounds Σ_k P_k δ_k for per-bin errors δ_k ≤ 8 eps size_k,
    the second the rounding of the sum of K terms.
    """
    log_p = _log_probs(out0, out1, dtype)
    assert torch.isfinite(log_p).all()
    size, log_p64 = _terms(out0, out1)
    eps = torch.finfo(dtype).eps
    tol = eps * ((log_p64.exp() * 8 * size).sum().item() + 2 * math.log2(K))
    assert abs(torch.logsumexp(log_p, 0).item()) <= tol


@pytest.mark.parametrize(("out0", "out1"), OUTPUTS)
def test_float32_equals_float64(out0: float, out1: float) -> None:
    """Every bin's float32 log P equals the float64 one within 8 eps₃₂ · size_k."""
    size, log_p64 = _terms(out0, out1)
    log_p32 = _log_probs(out0, out1, torch.float32).double()
    err = (log_p32 - log_p64).abs()
    assert (err <= 8 * torch.finfo(torch.float32).eps * size).all(), (err / size).max()


@pytest.mark.parametrize(("out0", "out1"), [(0.3, -0.7), (-0.9, -3.0), (1.2, 0.4), (-2.0, 2.0)])
def test_edge_bins_integrate_to_infinity(dtype: torch.dtype, out0: float, out1: float) -> None:
    """log P(0) = log F(½), log P(K-1) = log(1 - F(K - 3/2)), inner bins F(k+½) - F(k-½).

    F is the logistic CDF with μ = (K-1)/2 (out₀ + 1), s = (K-1)/2 e^{out₁} (above
    the scale floor here): SciPy's float64 log-CDF and log-survival for the end
    bins, and for inner bins the difference at 40 digits (mpmath), so that the
    reference does not cancel where nearly equal CDFs are subtracted; tolerance
    8 eps · size_k.
    """
    half = (K - 1) / 2
    mu, s = half * (out0 + 1), half * math.exp(out1)
    law = stats.logistic(loc=mu, scale=s)

    def cdf(t: float) -> mpmath.mpf:
        return 1 / (1 + mpmath.exp(-(mpmath.mpf(t) - mpmath.mpf(mu)) / mpmath.mpf(s)))

    with mpmath.workdps(40):
        inner = [float(mpmath.log(cdf(k + 0.5) - cdf(k - 0.5))) for k in range(K)]
    ref = torch.tensor(inner, dtype=torch.float64)
    ref[0] = float(law.logcdf(0.5))
    ref[-1] = float(law.logsf(K - 1.5))
    size, _ = _terms(out0, out1)
    log_p = _log_probs(out0, out1, dtype).double()
    err = (log_p - ref).abs()
    assert (err <= 8 * torch.finfo(dtype).eps * size).all(), (err / size).max()
    # The end bins hold the tails: P(0) ≠ F(½) - F(-½), which would lose F(-½).
    assert abs(log_p[0].item() - math.log(law.cdf(0.5) - law.cdf(-0.5))) > 1e-3


@pytest.mark.parametrize(("out0", "out1"), [(o0, o1) for o0, o1 in OUTPUTS if abs(o1) < 1e6])
def test_gradients_are_finite_at_extremes(out0: float, out1: float) -> None:
    """In float32, d log P / d(out₀, out₁) is finite for every bin at every output."""
    decoder = DiscretizedLogisticDecoder(nn.Identity(), (1,), K)
    params = torch.tensor([out0, out1], dtype=torch.float32).reshape(1, 2, 1)
    params = params.expand(K, 2, 1).clone().requires_grad_(True)
    ks = torch.arange(K, dtype=torch.float32).reshape(K, 1)
    decoder.log_prob_params(ks, params).sum().backward()
    assert torch.isfinite(params.grad).all()


def test_samples_are_levels_in_float32() -> None:
    """Draws at sharp and flat laws are integers in {0 … K-1} (no NaN from a logit of 0 or 1)."""
    decoder = DiscretizedLogisticDecoder(nn.Identity(), (1,), K)
    params = torch.tensor([[[0.0], [-30.0]], [[0.0], [30.0]]], dtype=torch.float32)
    draws = decoder.sample_params(params.repeat(5000, 1, 1), torch.Generator().manual_seed(0))
    assert torch.equal(draws, draws.round()) and draws.min() >= 0 and draws.max() <= K - 1


def test_vae_on_256_levels_is_finite_at_initialisation() -> None:
    """The default VAE for 28×28 images with 256 levels: finite loss and gradients in float32.

    Its encoder sees the levels centred to [-1, 1], so at initialisation the posterior
    std stays near 1 (on raw levels 0 … 255 it reached 1e8 and the loss was inf).
    """
    torch.set_default_dtype(torch.float32)
    vae = VAE.for_data(DataSpec((1, 28, 28), levels=K))
    x = torch.randint(0, K, (16, 1, 28, 28)).float()
    x[:, :, :4] = 0.0  # dark borders and saturated strokes, as in MNIST
    x[:, :, 10:12] = K - 1
    q = vae.encode(x)
    assert 0.1 < q.std.min() and q.std.max() < 10
    loss = vae.loss(x)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in vae.parameters() if p.grad is not None)
