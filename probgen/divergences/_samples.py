"""Validation shared by the sample-based distances: two batches of one event shape."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from probgen.core import InvalidInput, check_input
from probgen.tensors import flatten_events

__all__ = ["sample_pair"]


def sample_pair(x: Tensor, y: Tensor, min_size: int = 1) -> tuple[Tensor, Tensor]:
    """Check x (N, *event) and y (M, *event) share an event shape; return (N, D), (M, D).

    Both are returned in their promoted floating dtype.

    Raises ``InvalidInput`` for non-tensors, mismatched event shapes, non-finite
    values or fewer than ``min_size`` examples in either batch.
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor) or x.dim() == 0:
        raise InvalidInput(f"x: expected a tensor (N, *event_shape), got {_describe(x)}")
    event_shape = tuple(x.shape[1:])
    x = check_input(x, event_shape, name="x")
    y = check_input(y, event_shape, name="y")
    for name, t in (("x", x), ("y", y)):
        if t.shape[0] < min_size:
            raise InvalidInput(f"{name}: expected at least {min_size} examples, got {t.shape[0]}")
    dtype = torch.promote_types(x.dtype, y.dtype)
    return flatten_events(x).to(dtype), flatten_events(y).to(dtype)


def _describe(x: object) -> str:
    return f"shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
