"""Gradient-based MCMC kernels: unadjusted Langevin, MALA and HMC.

Each is a ``Kernel``: ``step(x, target, generator) -> Transition`` on chain
states (B, *event_shape), and the shared ``run`` loop. Step sizes are plain
floats; noise is drawn on the dtype and device of ``x``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from probgen.core import InvalidInput
from probgen.sampling.base import Kernel, Transition, check_positive
from probgen.sampling.targets import Target
from probgen.tensors import append_dims, sum_events

__all__ = ["HMC", "MALA", "Langevin", "metropolis"]


def _noise(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def metropolis(
    x: Tensor, proposal: Tensor, log_alpha: Tensor, generator: torch.Generator | None
) -> Transition:
    """Accept each row of ``proposal`` with probability min(1, exp(log α)), (B,).

    A NaN log α (a proposal where the energy is undefined) is a rejection.
    ``n_evaluations`` is 0: the caller adds the evaluations it spent.
    """
    log_alpha = torch.nan_to_num(log_alpha, nan=-math.inf)
    u = torch.rand(log_alpha.shape, generator=generator, dtype=x.dtype, device=x.device)
    accepted = u.log() < log_alpha
    x_new = torch.where(append_dims(accepted, x.dim()), proposal, x)
    return Transition(x_new, accepted, log_alpha.clamp(max=0.0).exp(), 0)


class Langevin(Kernel):
    """Unadjusted Langevin algorithm (ULA), one Euler–Maruyama step of the Langevin SDE.

        x' = x + (ε²/2) ∇_x log p(x) + ε η = x - (ε²/2) ∇_x E(x) + ε η,   η ~ N(0, I).

    Every move is accepted, so the chain is biased by O(ε²): for a Gaussian
    target N(μ, Σ) its stationary law is N(μ, ε² (I - A²)⁻¹) with
    A = I - (ε²/2) Σ⁻¹. One score evaluation per step; accepts a ``Score``.

    Args:
        step_size: ε > 0 (the noise scale; the drift step is ε²/2).

    Reference: Roberts & Tweedie (1996), "Exponential convergence of Langevin
    distributions and their discrete approximations"; Welling & Teh (2011),
    "Bayesian learning via stochastic gradient Langevin dynamics".
    """

    def __init__(self, step_size: float) -> None:
        self.step_size = check_positive("step_size", step_size)

    def step(
        self, x: Tensor, target: Target, generator: torch.Generator | None = None
    ) -> Transition:
        eps = self.step_size
        x_new = x + 0.5 * eps**2 * target.score(x) + eps * _noise(x, generator)
        return Transition(x_new, None, None, 1)


class MALA(Kernel):
    """Metropolis-adjusted Langevin algorithm: a Langevin proposal with a Metropolis test.

        y = x + (ε²/2) ∇ log p(x) + ε η,   q(y | x) = N(y; x + (ε²/2) ∇ log p(x), ε² I),
        α(x, y) = exp(E(x) - E(y)) q(x | y) / q(y | x),

    accept y with probability min(1, α). Leaves p ∝ exp(-E) exactly invariant
    for every ε; the acceptance rate is reported (≈ 0.574 is optimal in high
    dimension). Two energy-and-score evaluations per step (at x and at y);
    needs an energy (``Energy`` or ``LogDensity`` target).

    Args:
        step_size: ε > 0.

    Reference: Roberts & Tweedie (1996), "Exponential convergence of Langevin
    distributions and their discrete approximations".
    """

    def __init__(self, step_size: float) -> None:
        self.step_size = check_positive("step_size", step_size)

    def step(
        self, x: Tensor, target: Target, generator: torch.Generator | None = None
    ) -> Transition:
        eps = self.step_size
        e_x, s_x = target.energy_and_score(x)
        mean_x = x + 0.5 * eps**2 * s_x
        y = mean_x + eps * _noise(x, generator)
        e_y, s_y = target.energy_and_score(y)
        mean_y = y + 0.5 * eps**2 * s_y
        log_q_forward = -sum_events((y - mean_x).square()) / (2 * eps**2)  # log q(y|x) + c
        log_q_backward = -sum_events((x - mean_y).square()) / (2 * eps**2)  # log q(x|y) + c
        log_alpha = e_x - e_y + log_q_backward - log_q_forward
        t = metropolis(x, y, log_alpha, generator)
        return Transition(t.x, t.accepted, t.accept_prob, 2)


class HMC(Kernel):
    """Hamiltonian Monte Carlo with a unit mass matrix and the leapfrog integrator.

    With momentum p ~ N(0, I) and H(x, p) = E(x) + ½‖p‖², L leapfrog steps

        p ← p + (ε/2) ∇ log p(x);  x ← x + ε p;  p ← p + (ε/2) ∇ log p(x)

    map (x, p) to (x', p'), accepted with probability
    min(1, exp(H(x, p) - H(x', p'))). Exact for every ε; L + 1
    energy-and-score evaluations per step; needs an energy.

    Args:
        step_size: ε > 0.
        n_leapfrog: L ≥ 1.

    Reference: Neal (2011), "MCMC using Hamiltonian dynamics", Handbook of
    Markov Chain Monte Carlo, ch. 5.
    """

    def __init__(self, step_size: float, n_leapfrog: int = 10) -> None:
        self.step_size = check_positive("step_size", step_size)
        if not (isinstance(n_leapfrog, int) and n_leapfrog >= 1):
            raise InvalidInput(f"n_leapfrog: expected an integer ≥ 1, got {n_leapfrog!r}")
        self.n_leapfrog = n_leapfrog

    def step(
        self, x: Tensor, target: Target, generator: torch.Generator | None = None
    ) -> Transition:
        eps = self.step_size
        e_start, s = target.energy_and_score(x)
        p_start = _noise(x, generator)
        q, p = x, p_start + 0.5 * eps * s
        for i in range(self.n_leapfrog):
            q = q + eps * p
            e_end, s = target.energy_and_score(q)
            p = p + (eps if i < self.n_leapfrog - 1 else 0.5 * eps) * s
        h_start = e_start + 0.5 * sum_events(p_start.square())
        h_end = e_end + 0.5 * sum_events(p.square())
        t = metropolis(x, q, h_start - h_end, generator)
        return Transition(t.x, t.accepted, t.accept_prob, self.n_leapfrog + 1)
