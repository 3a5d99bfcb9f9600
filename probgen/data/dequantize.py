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

__all__ = ["bits_per_dim", "uniform_dequantize"]

Value = TypeVar("Value", Tensor, float)


def uniform_dequantize(x: Tensor, levels: int, generator: torch.Generator | None = None) -> Tensor:
    """y = (x + u) / K with u ~ U[0, 1)^D, so y ∈ [0, 1)^D and ⌊K y⌋ = x.

    ``x`` holds integers in {0, …, K-1} (any shape ``(B, …)``, float or
    integer dtype); the result has the same shape, ``x``'s dtype if floating
    (else the default dtype) and ``x``'s device. ``K = levels``.
    """
    if levels < 2:
        raise InvalidInput(f"levels must be >= 2, got {levels}")
    dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
    u = torch.rand(x.shape, generator=generator, dtype=dtype, device=x.device)
    return (x.to(dtype) + u) / levels


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
