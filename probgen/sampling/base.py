"""The one sampler interface: ``run(target, x0, n_steps, generator=...) -> SampleResult``.

A ``Kernel`` is a Markov transition usable one step at a time,
``step(x, target, generator) -> Transition``, with no hidden state: the target
is passed to every step, so a caller may change it between steps (annealed
importance sampling moves through intermediate densities this way). ``run``
is the same loop for every kernel. Shapes: chain states ``x`` are
(B, *event_shape), one chain per row.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from probgen.core import InvalidInput
from probgen.sampling.targets import Target, check_state

__all__ = [
    "Kernel",
    "SampleResult",
    "Sampler",
    "Transition",
    "check_positive",
    "check_steps",
    "check_target",
]


@dataclass(frozen=True)
class Transition:
    """One step of B chains.

    Attributes:
        x: the new states, (B, *event_shape).
        accepted: which proposals were accepted, (B,) bool; ``None`` for
            unadjusted kernels, which accept every move.
        accept_prob: the Metropolis acceptance probabilities min(1, α), (B,);
            ``None`` for unadjusted kernels.
        n_evaluations: batched energy / score evaluations this step used.
    """

    x: Tensor
    accepted: Tensor | None
    accept_prob: Tensor | None
    n_evaluations: int


@dataclass(frozen=True)
class SampleResult:
    """The outcome of ``run``.

    Attributes:
        samples: the final states, (B, *event_shape).
        acceptance_rate: fraction of accepted proposals over all steps and
            chains; ``None`` for unadjusted samplers.
        n_evaluations: batched energy / score evaluations in total (each
            evaluates all B chains once).
        trajectory: the states after every ``record_every``-th step,
            (S, B, *event_shape), or ``None`` when not recorded.
    """

    samples: Tensor
    acceptance_rate: float | None
    n_evaluations: int
    trajectory: Tensor | None = None


class Sampler(abc.ABC):
    """Anything that turns starting states into samples of a target."""

    @abc.abstractmethod
    def run(
        self,
        target: object,
        x0: Tensor,
        n_steps: int,
        *,
        generator: torch.Generator | None = None,
        record_every: int | None = None,
    ) -> SampleResult:
        """Run B chains from ``x0`` (B, *event_shape) for ``n_steps`` steps.

        ``record_every = k`` keeps the states after every k-th step in
        ``SampleResult.trajectory``.
        """


class Kernel(Sampler):
    """A Markov transition kernel for p(x) ∝ exp(-E(x)), applied one step at a time."""

    @abc.abstractmethod
    def step(
        self, x: Tensor, target: Target, generator: torch.Generator | None = None
    ) -> Transition:
        """One transition of every chain in ``x`` (B, *event_shape) towards ``target``."""

    def run(
        self,
        target: object,
        x0: Tensor,
        n_steps: int,
        *,
        generator: torch.Generator | None = None,
        record_every: int | None = None,
    ) -> SampleResult:
        target = check_target(target)
        x = check_state(x0, "x0").detach()
        check_steps(n_steps, record_every)
        accepted = torch.zeros((), dtype=torch.long, device=x.device)
        proposals = evaluations = 0
        kept = []
        for i in range(n_steps):
            t = self.step(x, target, generator)
            x, evaluations = t.x.detach(), evaluations + t.n_evaluations
            if t.accepted is not None:
                accepted = accepted + t.accepted.sum()
                proposals += t.accepted.numel()
            if record_every is not None and (i + 1) % record_every == 0:
                kept.append(x)
        return SampleResult(
            samples=x,
            acceptance_rate=accepted.item() / proposals if proposals else None,
            n_evaluations=evaluations,
            trajectory=torch.stack(kept) if kept else None,
        )


def check_target(target: object) -> Target:
    """Reject anything that is not a ``Target`` with a message saying how to wrap it."""
    if not isinstance(target, Target):
        raise InvalidInput(
            f"target: expected a probgen.sampling Target, got {type(target).__name__}; wrap an "
            "energy in Energy(fn), a log-density in LogDensity(fn), a score in Score(fn)"
        )
    return target


def check_steps(n_steps: int, record_every: int | None) -> None:
    """Validate ``n_steps ≥ 0`` and ``record_every ≥ 1`` (or None)."""
    if n_steps < 0:
        raise InvalidInput(f"n_steps: expected a non-negative integer, got {n_steps}")
    if record_every is not None and record_every < 1:
        raise InvalidInput(f"record_every: expected a positive integer, got {record_every}")


def check_positive(name: str, value: float) -> float:
    """Validate a finite number > 0 (a step size) and return it as a float."""
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise InvalidInput(f"{name}: expected a finite number > 0, got {value!r}")
    return float(value)
