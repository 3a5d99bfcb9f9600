"""Intra-op threads for a training run: one for small steps, every core for large ones.

A training round of a toy model (a flow or a diffusion MLP on 2-D points,
batch 256) is a few dozen small kernels; splitting each over two threads
costs more in synchronisation than it saves, and on a machine where another
process holds a core, the second thread waits (spinning) for a core that is
busy, so the step runs several times slower. A convolutional or transformer
step is dominated by large matrix products that split well. The engine
decides by the work of one round, counted in floating-point operations:

    F = Σ_p steps_per_round[p] · FLOPs(loss(x, p) and its backward), x one batch

(the formulas of ``torch.utils.flop_counter``: matrix products, convolutions,
attention; elementwise work is not counted, so small element-heavy models
count low and keep one thread). The count runs in a dispatch mode of its
own, without ``FlopCounterMode``'s module hooks, which break double
backward (a gradient penalty's ``autograd.grad``). ``threads = cores`` when F ≥ ``FLOP_THRESHOLD``,
else 1. The threshold is the measured crossover on a 2-core CPU (see
docs/training.md, ``benchmarks/thread_crossover.py``). ``train.threads`` set to
an integer overrides the rule; the rule applies only on CPU.

``torch.set_num_threads`` is process-global, so ``intra_op_threads`` sets it
for the run and restores it afterwards.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from probgen.core import GenerativeModel
from probgen.data.base import Dataset

__all__ = [
    "AUTO",
    "FLOP_THRESHOLD",
    "available_cores",
    "choose_threads",
    "intra_op_threads",
    "round_flops",
    "training_threads",
]

AUTO = "auto"
"""``train.threads: auto`` (the default): the engine picks the thread count for the work."""

FLOP_THRESHOLD = 2.0e9
"""FLOPs of one training round from which every core is used (the measured crossover)."""


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def round_flops(
    model: GenerativeModel,
    dataset: Dataset,
    batch_size: int,
    steps_per_round: dict[str, int],
) -> float:
    """F: FLOPs of one training round, forward and backward of every player's loss.

    Counted on a copy of ``model`` (so data-dependent initialisation, running
    statistics and gradients of the real model are untouched) with a batch
    drawn by a generator of its own, inside ``torch.random.fork_rng`` (so the
    run's random streams are unchanged).
    """
    probe = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        x, c = dataset.draw("train", batch_size, torch.Generator().manual_seed(0))
        total = 0.0
        for player in probe.players():
            with _FlopCount() as counter:
                probe.loss(x, player, condition=c).backward()
            total += steps_per_round.get(player, 1) * counter.flops
    return total


class _FlopCount(TorchDispatchMode):
    """Adds up ``flop_registry``'s formula of every operator that has one, as it runs."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.flops += formula(*args, **kwargs, out_val=out)
        return out


def choose_threads(flops: float, cores: int | None = None) -> int:
    """``cores`` (default: ``available_cores()``) when ``flops ≥ FLOP_THRESHOLD``, else 1."""
    cores = available_cores() if cores is None else cores
    return cores if flops >= FLOP_THRESHOLD else 1


def training_threads(
    threads: int | str,
    accelerator: str,
    model: GenerativeModel,
    dataset: Dataset,
    batch_size: int,
    steps_per_round: dict[str, int],
) -> int | None:
    """The intra-op threads of a run: ``threads`` if an integer, the rule on CPU, else None.

    None (off the CPU with ``"auto"``) leaves torch's setting alone.
    """
    if threads != AUTO:
        return int(threads)
    if accelerator != "cpu":
        return None
    with intra_op_threads(1):  # the count is the same on any thread count; one cannot spin
        flops = round_flops(model, dataset, batch_size, steps_per_round)
    return choose_threads(flops)


@contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` inside the block, the previous count restored after."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
