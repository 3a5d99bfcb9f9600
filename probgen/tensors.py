"""Small tensor helpers shared by every family (no shape assumptions)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["append_dims", "flatten_events", "logmeanexp", "sum_events"]


def append_dims(t: Tensor, ndim: int) -> Tensor:
    """View per-example values ``t`` of shape (B,) as (B, 1, …, 1) with ``ndim`` dims.

    Lets the same code scale 2-D points (B, D), images (B, C, H, W) and
    sequences (B, T) by a per-example scalar.
    """
    missing = ndim - t.dim()
    if missing < 0:
        raise ValueError(f"append_dims: tensor has {t.dim()} dims, more than {ndim}")
    return t.reshape(*t.shape, *([1] * missing))


def sum_events(t: Tensor) -> Tensor:
    """Sum all but the batch dimension: (B, …) -> (B,)."""
    return t.reshape(t.shape[0], -1).sum(dim=1)


def flatten_events(t: Tensor) -> Tensor:
    """Flatten all but the batch dimension: (B, …) -> (B, D)."""
    return t.reshape(t.shape[0], -1)


def logmeanexp(t: Tensor, dim: int = 0) -> Tensor:
    """log( mean_i exp(t_i) ) along ``dim``, computed stably."""
    n = t.shape[dim]
    return torch.logsumexp(t, dim=dim) - torch.log(torch.tensor(float(n), dtype=t.dtype))
