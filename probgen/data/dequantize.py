"""Uniform dequantization and the one bits-per-dimension convention of probgen.

Discrete data x ∈ {0, …, K-1}^D is turned into continuous data
y = (x + u) / K ∈ [0, 1)^D with u ~ U[0, 1)^D. For any density p on y and
the probability model P(x) = ∫_{[x, x+1)/K} p(y) dy it induces,

    log P(x) ≥ E_u[ log p((x + u)/K) ] − D log K

by Jensen's inequality (equality when p is constant on each bin), so a
density on dequantized data gives an upper bound on the discrete NLL.

References: Theis, van den Oord & Bethge (2016), "A note on the evaluation
of generative models"; Ho, Chen, Srinivas, Duan & Abbeel (2019), "Flow++:
Improving flow-based generative models with variational dequantization and
architecture design".
"""

from __future__ import annotations

import math
from typing import TypeVar

import torch
from torch import Tensor

from probgen.core import InvalidInput

__all__ = ["bin_limits", "bits_per_dim", "uniform_dequantize"]

Value = TypeVar("Value", Tensor, float)


def uniform_dequantize(x: Tensor, levels: int, generator: torch.Generator | None = None) -> Tensor:
    """y = (x + u) / K with u ~ U[0, 1)^D, so y ∈ [0, 1)^D and ⌊K y⌋ = x, in any float dtype.

    ``x`` holds integers in {0, …, K-1} (any shape ``(B, …)``, float or
    integer dtype); the result has the same shape, ``x``'s dtype if floating
    (else the default dtype) and ``x``'s device. ``K = levels``.

    Rounding: in float32, x + u rounds to x + 1 when u > 1 - 2^{-24}·x
    (x ≥ 128 with K = 256 gives y = 1.0), and K·y may round across a bin edge
    when K is not a power of two. So y is clamped into [lo_x, hi_x], the
    smallest and largest numbers of the dtype whose ⌊K y⌋, computed in that
    dtype, is x (``bin_limits``); ⌊K y⌋ = x then holds exactly for every x.
    A dtype too coarse to hold two values in every bin (K > 1/eps, e.g.
    bfloat16 with K > 128) raises ``InvalidInput``.
    """
    if levels < 2:
        raise InvalidInput(f"levels must be >= 2, got {levels}")
    dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
    lo, hi = bin_limits(levels, dtype, x.device)
    u = torch.rand(x.shape, generator=generator, dtype=dtype, device=x.device)
    index = x.long()
    return torch.minimum(torch.maximum((x.to(dtype) + u) / levels, lo[index]), hi[index])


def bin_limits(
    levels: int, dtype: torch.dtype, device: torch.device | None = None
) -> tuple[Tensor, Tensor]:
    """The smallest and largest y of ``dtype`` with ⌊K y⌋ = k (in that dtype), for k = 0 … K-1.

    Two tensors (K,) of ``dtype``: starting from k/K and (k+1)/K rounded to
    the dtype, each steps by one unit in the last place (``nextafter``) into
    the bin and then outwards while its neighbour is still in it; a few steps
    at most, since K y rounds by at most half a unit. Raises ``InvalidInput`` when
    the dtype's spacing below 1 (eps/2) leaves fewer than two values in a bin
    of width 1/K, i.e. K·eps > 1.
    """
    eps = torch.finfo(dtype).eps
    if levels * eps > 1:
        raise InvalidInput(
            f"uniform dequantization of {levels} levels needs a finer dtype than {dtype}: "
            f"its spacing {eps / 2:g} below 1 leaves fewer than two values in a bin of width "
            f"1/{levels} (needs levels <= {int(1 / eps)}); use float32 or float64"
        )
    k = torch.arange(levels, dtype=torch.float64, device=device)
    kd = k.to(dtype)

    def in_bin(y: Tensor) -> Tensor:
        return (y * levels).floor() == kd

    down = torch.tensor(-1.0, dtype=dtype, device=device)
    up = torch.tensor(2.0, dtype=dtype, device=device)
    lo, hi = (k / levels).to(dtype), ((k + 1) / levels).to(dtype)
    for _ in range(8):  # into the bin, then out to its last values
        lo_in, hi_in = in_bin(lo), in_bin(hi)
        lo_down, hi_up = torch.nextafter(lo, down), torch.nextafter(hi, up)
        step_lo = ~lo_in | in_bin(lo_down)
        step_hi = ~hi_in | in_bin(hi_up)
        if not (step_lo.any() or step_hi.any()):
            return lo, hi
        lo = torch.where(lo_in, torch.where(step_lo, lo_down, lo), torch.nextafter(lo, up))
        hi = torch.where(hi_in, torch.where(step_hi, hi_up, hi), torch.nextafter(hi, down))
    raise AssertionError(f"bin_limits: no {dtype} value in some bin of {levels} levels")


def bits_per_dim(
    log_prob: Value,
    dim: int,
    levels: int | None = None,
    *,
    dequantized: bool | None = None,
) -> Value:
    """Bits per dimension of per-example log-likelihoods in nats, the library's one convention.

    With D = ``dim`` and K = ``levels``:

    - continuous data (``levels=None``): bpd = −log p(x) / (D ln 2), the
      density itself;
    - ``dequantized=True``: ``log_prob`` is log p(y) of a density on
      y = (x + u)/K ∈ [0, 1)^D, and bpd = −(log p(y) − D log K) / (D ln 2),
      an upper bound on the discrete bpd in expectation over u (see module
      docstring). A density on a rescaled range y' = a·y + b must first
      add D log|a| to its log p(y') to become a density on [0, 1)^D;
    - ``dequantized=False``: ``log_prob`` is log P(x) of a probability mass
      on {0, …, K-1}^D, and bpd = −log P(x) / (D ln 2).

    ``dequantized`` must be given whenever ``levels`` is, since the two
    readings differ by log2 K. Works elementwise on a tensor ``(B,)`` or on a
    float. A uniform density on [0, 1)^D and a uniform mass on {0…K-1}^D
    both give bpd = log2 K.
    """
    if dim < 1:
        raise InvalidInput(f"dim must be >= 1, got {dim}")
    if levels is None:
        if dequantized:
            raise InvalidInput("dequantized=True needs the number of levels K of the data")
        return -log_prob / (dim * math.log(2))
    if dequantized is None:
        raise InvalidInput(
            "with levels given, pass dequantized=True (log_prob is a density of "
            "y = (x + u)/K on [0, 1)^D) or dequantized=False (a probability mass on "
            "{0, …, K-1}^D)"
        )
    offset = dim * math.log(levels) if dequantized else 0.0
    return -(log_prob - offset) / (dim * math.log(2))
