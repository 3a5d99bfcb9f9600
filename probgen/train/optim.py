"""Optimizers per player and learning-rate schedules, built from a ``TrainConfig``.

A schedule is a small object ``step -> factor``; the engine sets each player's
learning rate to ``lr_player · factor(step)`` before every round, so the rate
is a pure function of the step and needs no state of its own in a checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim import Optimizer

from probgen.train.config import ConfigError, TrainConfig

__all__ = [
    "ConstantSchedule",
    "CosineSchedule",
    "Schedule",
    "WarmupSchedule",
    "make_optimizers",
    "make_schedule",
    "set_lr",
]


class Schedule:
    """A learning-rate multiplier as a function of the (0-based) round ``step``."""

    def __call__(self, step: int) -> float:
        return 1.0


@dataclass(frozen=True)
class ConstantSchedule(Schedule):
    """factor(t) = 1."""


@dataclass(frozen=True)
class WarmupSchedule(Schedule):
    """Linear warm-up, then constant: factor(t) = min(1, (t + 1) / warmup).

    Reference: Goyal et al. (2017), Accurate, Large Minibatch SGD: Training
    ImageNet in 1 Hour.
    """

    warmup: int

    def __call__(self, step: int) -> float:
        return min(1.0, (step + 1) / self.warmup) if self.warmup > 0 else 1.0


@dataclass(frozen=True)
class CosineSchedule(Schedule):
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``.

    factor(t) = ½ (1 + cos(π (t - w) / (T - w))) for t ≥ w.

    Reference: Loshchilov & Hutter (2017), SGDR: Stochastic Gradient Descent
    with Warm Restarts.
    """

    total: int
    warmup: int = 0

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.total - self.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


_FUSED_DEVICES = ("cpu", "cuda")


def _fused(params: list[nn.Parameter]) -> bool:
    """Whether torch's fused Adam kernel takes these parameters (floating point, CPU or CUDA).

    The fused kernel updates every tensor in one pass: the same arithmetic,
    up to rounding, 2-4x faster than the per-tensor loop, which matters for
    the small networks of 2-D and MNIST-sized models (e.g. 13 % of an NSF step).
    """
    return bool(params) and all(
        p.is_floating_point() and p.device.type in _FUSED_DEVICES for p in params
    )


_OPTIMIZERS: dict[str, Callable[[list[nn.Parameter], float, TrainConfig], Optimizer]] = {
    "adam": lambda p, lr, t: torch.optim.Adam(
        p, lr=lr, betas=t.betas, weight_decay=t.weight_decay, fused=_fused(p)
    ),
    "adamw": lambda p, lr, t: torch.optim.AdamW(
        p, lr=lr, betas=t.betas, weight_decay=t.weight_decay, fused=_fused(p)
    ),
    # SGD takes its momentum from betas[0], so one key serves every optimizer.
    "sgd": lambda p, lr, t: torch.optim.SGD(
        p, lr=lr, momentum=t.betas[0], weight_decay=t.weight_decay
    ),
}


def make_optimizers(
    players: dict[str, list[nn.Parameter]], train: TrainConfig
) -> dict[str, Optimizer]:
    """One optimizer per player, with the player's learning rate (``player_lr`` or ``lr``)."""
    unknown = sorted((set(train.player_lr) | set(train.steps_per_round)) - set(players))
    if unknown:
        raise ConfigError(
            f"train: unknown player {unknown[0]!r} in player_lr/steps_per_round; "
            f"the model's players are {', '.join(sorted(players))}"
        )
    factory = _OPTIMIZERS[train.optimizer]
    return {
        name: factory(params, train.player_lr.get(name, train.lr), train)
        for name, params in players.items()
    }


def make_schedule(train: TrainConfig) -> Schedule:
    """The schedule named by ``train.lr_schedule`` (``warmup_steps`` applies to warmup/cosine)."""
    if train.lr_schedule == "cosine":
        return CosineSchedule(total=train.steps, warmup=train.warmup_steps)
    if train.warmup_steps and train.lr_schedule == "constant":
        raise ConfigError(
            "train.warmup_steps: needs lr_schedule warmup or cosine (constant has no warm-up)"
        )
    if train.lr_schedule == "warmup":
        if train.warmup_steps < 1:
            raise ConfigError("train.warmup_steps: lr_schedule warmup needs warmup_steps ≥ 1")
        return WarmupSchedule(warmup=train.warmup_steps)
    return ConstantSchedule()


def set_lr(optimizer: Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
