"""Intra-op threads for a training run: one for small steps, measured for the rest.

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
backward (a gradient penalty's ``autograd.grad``). Below ``TUNE_THRESHOLD`` a round is one thread:
a second never paid for its synchronisation there (MAF and RealNVP on 2-D points,
docs/training.md). From it, whether a second thread helps depends on what else
the machine runs, not on the step alone: on a quiet 2-core machine a MADE, VAE or
GAN round on 2-D points is 10–50 % faster on both cores, with one busy process
beside it two spinning threads run it 30–100× slower (``benchmarks/threads.py``). No
count chosen before training is right in both cases, so the engine measures
(``ThreadTuner``): it starts at ``cores`` when F ≥ ``FLOP_THRESHOLD`` (else 1),
times rounds on 1 and on ``cores`` threads, keeps the faster, and measures again
every ``RECHECK_SECONDS`` or at once when a multi-thread round slows down.
``train.threads`` set to an integer overrides all of this; it applies only on CPU.

``torch.set_num_threads`` is process-global, so ``intra_op_threads`` sets it
for the run and restores it afterwards.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Iterator
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
    "FREE_FRACTION",
    "RECHECK_SECONDS",
    "TUNE_THRESHOLD",
    "IdleCores",
    "ThreadTuner",
    "available_cores",
    "choose_threads",
    "intra_op_threads",
    "round_flops",
    "training_threads",
]

AUTO = "auto"
"""``train.threads: auto`` (the default): the engine picks the thread count for the work."""

FLOP_THRESHOLD = 2.0e9
"""FLOPs of one training round from which a run starts on every core (the measured crossover)."""

TUNE_THRESHOLD = 5.0e7
"""FLOPs of one round from which the count is measured, not fixed at 1.

Between the largest toy rounds that gained at most 3 % from a second thread on
a quiet 2-core machine (batch 256 on 2-D points: MAF 0.034 GFLOP, RealNVP
0.033) and the smallest that gained more (the diffusion and flow-matching MLP
0.068, 4–13 %; MADE 0.125, 28 %); the NSF (0.055) is measured and finds no
difference. ``benchmarks/threads.py``, 2026-12-03."""

RECHECK_SECONDS = 30.0
"""Seconds (by the run's clock) a measured count is kept before it is measured again."""

FREE_FRACTION = 0.5
"""Every core is tried only when the other cores were at least this idle (on average)."""


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    return len(_affinity())


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
    clock: Callable[[], float] = time.perf_counter,
) -> int | ThreadTuner | None:
    """The intra-op threads of a run: ``threads`` if an integer, the rule on CPU, else None.

    On CPU with ``"auto"``: 1 below ``TUNE_THRESHOLD`` FLOPs per round or on one
    core, else a ``ThreadTuner`` that starts at ``choose_threads(F)`` and times
    rounds by ``clock`` (the run's budget clock). None (off the CPU with
    ``"auto"``) leaves torch's setting alone.
    """
    if threads != AUTO:
        return int(threads)
    if accelerator != "cpu":
        return None
    idle = IdleCores()  # its first window: the FLOP count, on one thread
    with intra_op_threads(1):  # the count is the same on any thread count; one cannot spin
        flops = round_flops(model, dataset, batch_size, steps_per_round)
    cores = available_cores()
    if cores == 1 or flops < TUNE_THRESHOLD:
        return 1
    return ThreadTuner(cores, choose_threads(flops, cores), clock=clock, idle=idle)


class IdleCores:
    """Idle cores of this process's CPUs since the previous call, from ``/proc/stat``.

    Each call returns Σ_cpu Δidle / Δtotal over the CPUs the process may run on,
    for the window since the last call that returned a number (idle counts
    ``idle``, ``iowait`` and ``nice`` jiffies: a niced process yields to this
    one). A window shorter than ``min_seconds`` per CPU returns None and keeps
    growing. Without ``/proc/stat`` (not Linux) it is
    ``cores − 1-minute load average`` (which counts this process), and without
    that None. A run on one thread of a quiet 2-core machine sees about 1.0; with
    one other busy process, about 0.
    """

    def __init__(self, min_seconds: float = 0.05) -> None:
        self.cpus = {f"cpu{n}" for n in _affinity()}
        self.min_ticks = min_seconds * os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 5
        self.last = self._read()

    def __call__(self) -> float | None:
        now = self._read()
        if now is None or self.last is None:
            return _idle_from_load(len(self.cpus))
        ticks = {cpu: (idle - self.last[cpu][0], total - self.last[cpu][1])
                 for cpu, (idle, total) in now.items()}  # fmt: skip
        if min(total for _, total in ticks.values()) < self.min_ticks:
            return None
        self.last = now
        return sum(idle / total for idle, total in ticks.values())

    def _read(self) -> dict[str, tuple[int, int]] | None:
        """(idle, total) jiffies per CPU of ``cpus``; None where ``/proc/stat`` is unreadable."""
        try:
            with open("/proc/stat") as stat:
                lines = [line.split() for line in stat if line.startswith("cpu")]
        except OSError:
            return None
        ticks = {}
        for name, *fields in lines:
            if name in self.cpus:
                counts = [int(v) for v in fields[:8]]  # user … steal; guest is inside user
                # idle, iowait and niced work (which yields to this process) are free
                ticks[name] = (counts[1] + counts[3] + counts[4], sum(counts))
        return ticks if len(ticks) == len(self.cpus) else None


def _affinity() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return list(range(os.cpu_count() or 1))


def _idle_from_load(cores: int) -> float | None:
    try:
        return max(0.0, cores - os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


class ThreadTuner:
    """Keeps the faster of 1 and ``cores`` intra-op threads by timing the training rounds.

    A measurement, repeated while the run lasts:

    1. the kept count a runs ``probe`` rounds (after one settling round when the
       count has just changed: a new thread pool starts); their mean time is t_a;
    2. the other count b is tried, unless b = ``cores`` and the other cores were
       busy (``idle()``, the idle cores since it last answered, below
       ``FREE_FRACTION · (cores − 1)``: one busy process beside a two-thread
       round makes a single round cost 30–100 one-thread rounds, too much to
       learn what the idle count already says); a tried b runs one settling
       round, then up to ``probe`` rounds, stopped as soon as the settling
       round alone, or the measured rounds together, have taken longer than
       ``probe · t_a`` (then b's mean cannot beat t_a; the settling round, which
       starts a thread pool, is not part of b's mean);
    3. the count with the lower mean is kept for ``recheck`` seconds, then 1–2
       repeat; a kept count above 1 whose round takes longer than ``SLOWDOWN``
       times its mean (load arrived) is challenged at once by 1 thread (step 2,
       with that round's time as t_a).

    A run that starts on every core (``start = cores``) starts on one thread
    instead when ``idle()`` already says the other cores are busy. Every round
    is a real training round, so measuring costs only the rounds run on the
    slower count. ``clock`` is the run's budget clock: wall time by default, CPU
    time for a CPU budget (where one thread almost always wins); ``idle``
    defaults to ``IdleCores()``, and one returning None means unknown (then b is
    tried). The count changes which kernels split a sum, so the last bits of a
    run can differ between runs on a busy and a quiet machine;
    ``train.threads: 1`` makes a CPU run repeat bit for bit.
    """

    SLOWDOWN = 4.0

    def __init__(
        self,
        cores: int,
        start: int,
        *,
        probe: int = 10,
        recheck: float = RECHECK_SECONDS,
        clock: Callable[[], float] = time.perf_counter,
        idle: Callable[[], float | None] | None = None,
    ) -> None:
        if start not in (1, cores) or cores < 2:
            raise ValueError(f"ThreadTuner: start must be 1 or cores ≥ 2, got {start} of {cores}")
        self.cores, self.probe, self.recheck, self.clock = cores, probe, recheck, clock
        self.idle = IdleCores() if idle is None else idle
        self.rounds: dict[int, int] = {1: 0, cores: 0}
        self.current = start if start == 1 or self._others_free() else 1
        self.kept_mean, self.kept_since = 0.0, 0.0
        self._phase, self._settle, self._times, self._spent = "baseline", True, [], 0.0

    @property
    def threads(self) -> int:
        """The count that ran the most rounds so far (what a run reports)."""
        return max(self.rounds, key=lambda n: (self.rounds[n], n == self.current))

    @contextmanager
    def round(self) -> Iterator[None]:
        """One training round on the count the measurement asks for, timed."""
        torch.set_num_threads(self.current)
        start = self.clock()
        yield
        self.record(self.clock() - start)

    def record(self, seconds: float) -> None:
        """Account one round of ``seconds`` on ``current`` threads; choose the next count."""
        self.rounds[self.current] += 1
        if self._phase == "keep":
            if self.current > 1 and seconds > self.SLOWDOWN * self.kept_mean:
                self._challenge(seconds)  # load arrived: this round is the new baseline
            elif self.clock() - self.kept_since > self.recheck:
                self._phase, self._settle, self._times = "baseline", False, []
            return
        if self._phase == "challenge":
            # abandoned once its settling round alone, or its measured rounds together,
            # took longer than the kept count's ``probe`` rounds: its mean cannot win
            self._spent = seconds if self._settle else self._spent + seconds
            if self._spent > self.probe * self.kept_mean:
                self._keep(self._other(), self.kept_mean)
                return
        if self._settle:
            self._settle, self._spent = False, 0.0
            return
        self._times.append(seconds)
        if len(self._times) < self.probe:
            return
        mean = sum(self._times) / len(self._times)
        if self._phase == "baseline":  # step 2: try the other count against this mean
            if self.current > 1 or self._others_free():
                self._challenge(mean)
            else:
                self._keep(1, mean)
        elif mean < self.kept_mean:
            self._keep(self.current, mean)
        else:
            self._keep(self._other(), self.kept_mean)

    def _others_free(self) -> bool:
        """Whether the cores beside this process's one were idle enough to try them all."""
        free = self.idle()
        return free is None or free >= FREE_FRACTION * (self.cores - 1)

    def _challenge(self, against: float) -> None:
        self.kept_mean, self.current = against, self._other()
        self._phase, self._settle, self._times, self._spent = "challenge", True, [], 0.0

    def _other(self) -> int:
        return 1 if self.current == self.cores else self.cores

    def _keep(self, count: int, mean: float) -> None:
        self.current, self.kept_mean, self.kept_since = count, mean, self.clock()
        self._phase = "keep"


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
