"""Shared pieces of every discrete autoregressive model: input levels and logit filters.

Sampling from p(x_i | x_{<i}) = softmax(l) may reshape the logits l first:

    temperature T   l ↦ l / T           (T < 1 sharpens, T > 1 flattens; T = 0 is
                    the limit T → 0: only the largest logits are kept, greedy)
    top-k           keep the k largest logits, set the rest to -∞
    top-p (nucleus) keep the smallest set of most probable values whose
                    probability mass reaches p, set the rest to -∞

applied in that order. With T = 1 and no top-k / top-p the draw is exact.

References: Holtzman, Buys, Du, Forbes & Choi, 2020, "The Curious Case of
Neural Text Degeneration" (top-p); Fan, Lewis & Dauphin, 2018, "Hierarchical
Neural Story Generation" (top-k).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from probgen.core import InvalidInput, check_input

__all__ = ["LogitFilter", "as_levels", "sample_logits"]


@dataclass(frozen=True)
class LogitFilter:
    """Temperature, top-k and top-p applied to logits (…, K) before a categorical draw.

    Args:
        temperature: T ≥ 0; logits are divided by T. T = 0 is the limit T → 0
            (greedy decoding): every logit below the maximum is removed.
        top_k: keep the k largest logits (ties with the k-th are kept); ``None`` keeps all.
        top_p: 0 < p ≤ 1; keep the most probable values until their mass reaches p
            (the most probable one is always kept); ``None`` keeps all.
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise InvalidInput(f"temperature: expected >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise InvalidInput(f"top_k: expected ≥ 1 or None, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise InvalidInput(f"top_p: expected in (0, 1] or None, got {self.top_p}")

    @property
    def exact(self) -> bool:
        """True when the filter leaves the distribution unchanged."""
        return self.temperature == 1 and self.top_k is None and self.top_p is None

    def __call__(self, logits: Tensor) -> Tensor:
        """Filtered logits (…, K); removed values are -∞."""
        if self.temperature == 0:  # softmax(l / T) -> uniform on the argmax set as T -> 0
            best = logits.max(dim=-1, keepdim=True).values
            logits = torch.where(logits < best, -torch.inf, torch.zeros_like(logits))
        else:
            logits = logits / self.temperature
        if self.top_k is not None and self.top_k < logits.shape[-1]:
            kth = logits.topk(self.top_k, dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, -torch.inf)
        if self.top_p is not None:
            sorted_logits, idx = logits.sort(dim=-1, descending=True)
            probs = sorted_logits.softmax(dim=-1)
            mass_before = probs.cumsum(dim=-1) - probs
            drop_sorted = mass_before >= self.top_p
            drop = torch.zeros_like(drop_sorted).scatter(-1, idx, drop_sorted)
            logits = logits.masked_fill(drop, -torch.inf)
        return logits


def sample_logits(
    logits: Tensor,
    filt: LogitFilter | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One categorical draw per row of ``logits`` (…, K) after ``filt``; returns (…) long."""
    if filt is not None:
        logits = filt(logits)
    probs = logits.reshape(-1, logits.shape[-1]).softmax(dim=-1)
    draw = torch.multinomial(probs, 1, generator=generator)
    return draw.reshape(logits.shape[:-1])


def as_levels(
    x: object,
    event_shape: tuple[int, ...],
    levels: int,
    *,
    name: str = "x",
) -> Tensor:
    """Validate discrete data (B, *event_shape) with values in {0, …, K-1}; return it as long.

    Accepts integer or boolean tensors and floating-point tensors holding whole
    numbers (the usual storage of pixel levels), so every data convention works.
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if isinstance(x, Tensor) and x.dtype == torch.bool:
        x = x.long()
    integer = isinstance(x, Tensor) and not x.is_floating_point() and not x.is_complex()
    x = check_input(x, event_shape, name=name, integer=integer)
    if not integer and not torch.equal(x, x.round()):
        raise InvalidInput(f"{name}: expected whole-number levels 0…{levels - 1}, got fractions")
    if x.numel():
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > levels - 1:
            raise InvalidInput(
                f"{name}: expected levels in 0…{levels - 1}, got values in {lo}…{hi}"
            )
    return x.long()
