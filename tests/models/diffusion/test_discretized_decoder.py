"""The diffusion's discretised Gaussian decoder in float32 and float64: exact in log space.

Ground truth: Φ(b) − Φ(a) at 400 digits (mpmath). The tolerance is the one
``log_bin_mass`` derives for itself from eps, the size of log Φ and the bin
width, recomputed here in float64.
"""

from __future__ import annotations

import functools
import math

import mpmath
import pytest
import torch

from probgen.models.diffusion import DiscretizedGaussianDecoder
from probgen.models.diffusion.likelihood import log_bin_mass


@functools.cache
def _reference(a: float, b: float) -> float:
    def phi(t: float) -> mpmath.mpf:
        return mpmath.ncdf(t) if math.isfinite(t) else mpmath.mpf(0 if t < 0 else 1)

    with mpmath.workdps(400):  # 1 − Φ(35) ≈ 1e-268 must survive the subtraction
        return float(mpmath.log(phi(b) - phi(a)))


def _error_bound(a: float, b: float, eps: float) -> float:
    """eps·(1 + |log P|) plus the smaller truncation bound of the two forms (see log_bin_mass)."""
    lo, hi = (-b, -a) if a > 0 else (a, b)
    log_hi = _reference(-math.inf, hi)
    if math.isinf(lo):  # an end bin: log Φ(hi) alone
        return eps * (1 + abs(log_hi))
    log_lo = _reference(-math.inf, lo)
    direct = eps * (1 + abs(log_lo) + abs(log_hi)) / max(log_hi - log_lo, 1e-300)
    w, m = hi - lo, 0.5 * (lo + hi)
    midpoint = w**4 * (m**4 + 6 * m**2 + 3) / 1920
    return eps * (1 + abs(_reference(a, b))) + min(direct, midpoint)


CASES = [
    (a, a + w)
    for a in (-40.0, -10.0, -3.0, -1.0, -0.01, 0.0, 0.3, 2.0, 8.0, 35.0)
    for w in (1e-5, 1e-3, 0.01, 0.1, 1.0, 5.0)
] + [(-math.inf, -30.0), (-math.inf, 0.5), (30.0, math.inf), (-1.0, math.inf)]


@pytest.mark.parametrize(("a", "b"), CASES)
def test_log_bin_mass_matches_high_precision(dtype: torch.dtype, a: float, b: float) -> None:
    """log(Φ(b) − Φ(a)) within 4× the derived bound, on bins near 0, far out, narrow and wide."""
    eps = torch.finfo(dtype).eps
    lo, hi = torch.tensor([a], dtype=dtype), torch.tensor([b], dtype=dtype)
    if hi.item() - lo.item() < 100 * eps * (1 + abs(a)):
        pytest.skip("bin narrower than the dtype resolves at this position")
    got = log_bin_mass(lo, hi).item()
    ref = _reference(lo.item(), hi.item())
    assert abs(got - ref) <= 4 * _error_bound(lo.item(), hi.item(), eps)


@pytest.mark.parametrize("levels", [2, 256])
@pytest.mark.parametrize(
    ("mean", "std"), [(0.1, 0.3), (-0.9, 0.01), (5.0, 1e-3), (-300.0, 1e-2), (0.0, 1e4)]
)
def test_bins_sum_to_one_and_are_finite(
    dtype: torch.dtype, levels: int, mean: float, std: float
) -> None:
    """The K bin probabilities are finite and sum to 1 within 4 eps (1 + mean |log P|)·log2 K.

    Far-out means put the whole mass in an edge bin: its log P ≈ 0 and every other
    bin's is finite (with a floor of 1e-300 on P they were log 0 = −∞ in float32).
    """
    decoder = DiscretizedGaussianDecoder(levels)
    centres = ((2 * torch.arange(levels) + 1) / levels - 1.0).to(dtype)[:, None]
    nll = decoder(centres, torch.full((levels, 1), mean), torch.full((levels,), std))
    assert torch.isfinite(nll).all()
    eps = torch.finfo(dtype).eps
    tol = 4 * eps * (1 + (nll.exp().neg().exp() * nll).sum().item()) * math.log2(2 * levels)
    assert abs(torch.logsumexp(-nll, 0).item()) <= tol


def test_edge_bins_reach_infinity_in_float32() -> None:
    """P(x = K-1) = 1 − Φ(a) and P(x = 0) = Φ(b), at 400 digits, μ below the range."""
    levels, mean, std = 256, -3.0, 0.5
    decoder = DiscretizedGaussianDecoder(levels)
    centres = torch.tensor([[-1 + 1 / levels], [1 - 1 / levels]], dtype=torch.float32)
    nll = decoder(centres, torch.full((2, 1), mean), torch.full((2,), std))
    top_a = (1 - 2 / levels - mean) / std
    bottom_b = (-1 + 2 / levels - mean) / std
    refs = [-_reference(-math.inf, bottom_b), -_reference(top_a, math.inf)]
    eps = torch.finfo(torch.float32).eps
    for got, ref in zip(nll.tolist(), refs, strict=True):
        assert abs(got - ref) <= 8 * eps * (1 + abs(ref)) * (1 + abs(top_a))


def test_gradients_are_finite_far_out_in_float32() -> None:
    """d(−log P)/dμ is finite for edge and inner bins, far from μ and at tiny σ."""
    levels = 256
    decoder = DiscretizedGaussianDecoder(levels)
    centres = ((2 * torch.arange(levels) + 1) / levels - 1.0).float()[:, None]
    for mean, std in ((0.0, 1e-4), (40.0, 0.01), (-40.0, 1.0), (0.3, 1e3)):
        mu = torch.full((levels, 1), mean, requires_grad=True)
        decoder(centres, mu, torch.full((levels,), std)).sum().backward()
        assert torch.isfinite(mu.grad).all(), (mean, std)
