"""Annealed Langevin dynamics over a decreasing sequence of noise levels."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from probgen.core import InvalidInput
from probgen.sampling.base import Sampler, SampleResult, check_positive, check_steps
from probgen.sampling.kernels import Langevin
from probgen.sampling.targets import NoiseConditionalScore, check_state

__all__ = ["AnnealedLangevin"]


class AnnealedLangevin(Sampler):
    """Langevin dynamics on p_σ1, then p_σ2, …, then p_σL, with σ_1 > … > σ_L.

    At level i, T = ``n_steps`` unadjusted Langevin steps with drift step
    α_i = ε σ_i² / σ_L² (noise scale √α_i):

        x ← x + (α_i / 2) s(x, σ_i) + √α_i η,   η ~ N(0, I),

    so the signal-to-noise ratio of every step is the same at every level.
    The target is a ``NoiseConditionalScore`` s(x, σ) ≈ ∇ log p_σ(x); each
    level is the ``Langevin`` kernel on ``target.at(σ_i)``. One score
    evaluation per step, L·T in total.

    Args:
        sigmas: σ_1 > … > σ_L > 0.
        step_size: ε > 0, the drift step at the last level (Song & Ermon's ε).

    Reference: Song & Ermon (2019), "Generative modeling by estimating
    gradients of the data distribution", Algorithm 1.
    """

    def __init__(self, sigmas: Sequence[float] | Tensor, step_size: float) -> None:
        sig = [float(s) for s in sigmas]
        if not sig or any(not (math.isfinite(s) and s > 0) for s in sig):
            raise InvalidInput(f"sigmas: expected finite values > 0, got {sig}")
        if any(a <= b for a, b in itertools.pairwise(sig)):
            raise InvalidInput(f"sigmas: expected a strictly decreasing sequence, got {sig}")
        self.sigmas = sig
        self.step_size = check_positive("step_size", step_size)

    def kernel(self, level: int) -> Langevin:
        """The Langevin kernel of level ``level`` (0-based): noise scale √ε σ_i / σ_L."""
        return Langevin(math.sqrt(self.step_size) * self.sigmas[level] / self.sigmas[-1])

    def run(
        self,
        target: object,
        x0: Tensor,
        n_steps: int,
        *,
        generator: torch.Generator | None = None,
        record_every: int | None = None,
    ) -> SampleResult:
        """``n_steps`` = T, the steps per noise level; L·T steps in all."""
        if not isinstance(target, NoiseConditionalScore):
            raise InvalidInput(
                f"target: annealed Langevin needs a NoiseConditionalScore s(x, σ), "
                f"got {type(target).__name__}"
            )
        x = check_state(x0, "x0").detach()
        check_steps(n_steps, record_every)
        evaluations, kept = 0, []
        for level, sigma in enumerate(self.sigmas):
            result = self.kernel(level).run(
                target.at(sigma), x, n_steps, generator=generator, record_every=record_every
            )
            x, evaluations = result.samples, evaluations + result.n_evaluations
            if result.trajectory is not None:
                kept.append(result.trajectory)
        return SampleResult(
            samples=x,
            acceptance_rate=None,
            n_evaluations=evaluations,
            trajectory=torch.cat(kept) if kept else None,
        )
