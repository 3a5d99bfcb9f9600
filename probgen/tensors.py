"""Small tensor helpers shared by every family (no shape assumptions)."""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

__all__ = [
    "FUSED_SOFTMAX_MIN_WIDTH",
    "append_dims",
    "constant",
    "flatten_events",
    "log1mexp",
    "log_softmax_last",
    "logmeanexp",
    "softmax_last",
    "sum_events",
]


def append_dims(t: Tensor, ndim: int) -> Tensor:
    """View per-example values ``t`` of shape (B,) as (B, 1, …, 1) with ``ndim`` dims.

    Lets the same code scale 2-D points (B, D), images (B, C, H, W) and
    sequences (B, T) by a per-example scalar.
    """
    missing = ndim - t.dim()
    if missing < 0:
        raise ValueError(f"append_dims: tensor has {t.dim()} dims, more than {ndim}")
    return t.reshape(*t.shape, *([1] * missing))


def constant(value: float | tuple[float, ...], like: Tensor) -> Tensor:
    """``value`` as a tensor of ``like``'s dtype and device (0-dim, or 1-D for a tuple), cached.

    torch 2.13 wraps a Python number in an operation into a tensor and converts
    it on every call: on CPU ``x * 2`` takes 2.0 µs on a (200, 2) tensor and
    ``x * c`` with a 0-dim ``c`` 1.0 µs (this project's machine). Hot paths of
    small models, where such operations are most of a step, use these
    constants. The result is shared: never modify it in place.
    """
    key = tuple(float(v) for v in value) if isinstance(value, tuple) else float(value)
    return _constant(key, like.dtype, like.device)


@functools.lru_cache(maxsize=256)
def _constant(value: float | tuple[float, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    with torch.inference_mode(False):  # usable by autograd even if first made under inference
        return torch.tensor(value, dtype=dtype, device=device)


def sum_events(t: Tensor) -> Tensor:
    """Sum all but the batch dimension: (B, …) -> (B,)."""
    return t.reshape(t.shape[0], -1).sum(dim=1)


def flatten_events(t: Tensor) -> Tensor:
    """Flatten all but the batch dimension: (B, …) -> (B, D)."""
    return t.reshape(t.shape[0], -1)


def log1mexp(d: Tensor) -> Tensor:
    """log(1 − e^{−d}) for d ≥ 0, elementwise and accurate for every d (same shape).

    Two forms, each exact where the other cancels: log(−expm1(−d)) for d ≤ ln 2
    (1 − e^{−d} is computed without subtracting nearly equal numbers) and
    log1p(−e^{−d}) for d > ln 2 (e^{−d} < ½ is small). log1mexp(0) = −∞,
    log1mexp(∞) = 0. Both branches are evaluated on safe arguments, so the
    gradient is finite wherever the value is.

    Reference: Mächler (2012), "Accurately computing log(1 − exp(−|a|))".
    """
    small = d <= math.log(2.0)
    d_small = torch.where(small, d, torch.zeros_like(d))
    d_large = torch.where(small, torch.ones_like(d), d)
    return torch.where(small, torch.log(-torch.expm1(-d_small)), torch.log1p(-torch.exp(-d_large)))


def logmeanexp(t: Tensor, dim: int = 0) -> Tensor:
    """log( mean_i exp(t_i) ) along ``dim``, computed stably."""
    return torch.logsumexp(t, dim=dim) - math.log(t.shape[dim])


FUSED_SOFTMAX_MIN_WIDTH = 16
"""Narrowest last axis for which torch's fused CPU (log-)softmax kernel is the faster one."""


def softmax_last(t: Tensor) -> Tensor:
    """Softmax over the last axis, exp(t_k − max t) / Σ_j exp(t_j − max t): (…, K) -> (…, K).

    On CPU, torch 2.13's fused kernel is 3–10× slower than these four ops when
    K < 16 (e.g. the 8 bins of a spline) and about 2× faster when K ≥ 16
    (measured on this project's machine, forward and backward), so short axes
    take the written-out form.
    """
    if t.shape[-1] >= FUSED_SOFTMAX_MIN_WIDTH:
        return torch.softmax(t, dim=-1)
    e = torch.exp(t - t.amax(dim=-1, keepdim=True))
    return e / e.sum(dim=-1, keepdim=True)


def log_softmax_last(t: Tensor) -> Tensor:
    """log softmax over the last axis, t_k − log Σ_j exp(t_j): (…, K) -> (…, K).

    Written out as ``t - logsumexp(t)`` when K < 16, for the reason given in
    ``softmax_last``.
    """
    if t.shape[-1] >= FUSED_SOFTMAX_MIN_WIDTH:
        return torch.log_softmax(t, dim=-1)
    return t - torch.logsumexp(t, dim=-1, keepdim=True)
