"""Solvers of the probability-flow ODE on any path t ↦ (α_t, σ_t): each with an order and one step.

The probability-flow ODE (Song et al. 2021, eq. (13)) is solved in one of two
exact rewritings, both generic in the path (they read only α_t, σ_t and a
``Prediction``):

**Runge–Kutta in the noise ratio** (Karras et al. 2022, Section 3). With
σ̃ = σ_t / α_t and y = x / α_t the ODE is

    dy/dσ̃ = ε̂(α_t y, t(σ̃)),

the "VE-equivalent" form of EDM with s(t) = α_t. An explicit Runge–Kutta
tableau (c, A, b) with step Δ = σ̃_s − σ̃_t takes stages
y_i = y_t + Δ Σ_j a_ij k_j at σ̃_t + c_i Δ and returns y_s = y_t + Δ Σ_i b_i k_i:

    Euler      order 1   one stage: x_s = α_s x̂_0 + σ_s ε̂ — deterministic DDIM
    Heun       order 2   c = (0, 1),  b = (½, ½)     (Karras et al. 2022, Algorithm 1)
    Midpoint   order 2   c = (0, ½),  b = (0, 1)

A step whose stages would leave the times where the network is defined
(below ``t_min``, e.g. the last step into t = 0) or that starts where α_t = 0
is the Euler step, as in Karras et al.'s Algorithm 1.

**Exponential integrator in λ = log(α_t / σ_t)** (Lu et al. 2022, DPM-Solver++).
The exact solution from t to s, h = λ_s − λ_t, is

    x_s = (σ_s / σ_t) x_t + σ_s ∫_{λ_t}^{λ_s} e^{λ} x̂_0(x_λ, λ) dλ,

and its Taylor expansion in λ gives x_s = (σ_s/σ_t) x_t + α_s Σ_n φ_n(h) x̂_0^{(n)}
with φ_0 = 1 − e^{−h}, φ_1 = h − φ_0, φ_2 = h²/2 − φ_1. The multistep solvers
estimate the derivatives from the data predictions of earlier steps
(``DPMSolver2M``: order 2, Lu et al.'s Algorithm 2; ``DPMSolver3M``: order 3).
Their first order is DDIM again, so every first-order step here is
``samplers.ddim_update``: there is one implementation of it.

Every solver is a ``DiffusionSampler`` on a ``TimeGrid`` (uniform by default;
``KarrasGrid``, ``LogSNRGrid``), counts the network evaluations it makes, and
runs any ``Denoiser``, guided ones included. The adaptive Dormand–Prince
solver through torchdiffeq is ``samplers.ProbabilityFlow``.

References: Karras, Aittala, Aila & Laine (2022), "Elucidating the design
space of diffusion-based generative models"; Lu, Zhou, Bao, Chen, Li & Zhu
(2022), "DPM-Solver++: fast solver for guided sampling of diffusion
probabilistic models"; Song, Meng & Ermon (2021), "Denoising diffusion
implicit models"; Hairer, Nørsett & Wanner (1993), "Solving ordinary
differential equations I", Section II.1.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from probgen.core import InvalidInput
from probgen.models.diffusion.grids import (
    TimeGrid,
    UniformGrid,
    noise_ratio,
    time_at_noise_ratio,
)
from probgen.models.diffusion.parametrizations import Denoiser
from probgen.models.diffusion.processes import ForwardProcess
from probgen.models.diffusion.samplers import CountingDenoiser, DiffusionSampler, ddim_update

__all__ = [
    "DPMSolver2M",
    "DPMSolver3M",
    "DPMSolverPlusPlus",
    "Euler",
    "Heun",
    "History",
    "Midpoint",
    "ODESolver",
    "RungeKutta",
]


class ODESolver(DiffusionSampler):
    """A deterministic solver of the probability-flow ODE of order ``order`` on a ``grid``.

    Args:
        grid: the times of ``run`` (default ``UniformGrid()``).
    """

    order: int

    def __init__(self, grid: TimeGrid | None = None) -> None:
        if grid is not None and not isinstance(grid, TimeGrid):
            raise InvalidInput(f"grid: expected a TimeGrid, got {type(grid).__name__}")
        self.grid = grid if grid is not None else UniformGrid()

    def times(self, process: ForwardProcess, n_steps: int, *, like: Tensor) -> Tensor:
        return self.grid(process, n_steps, like=like)


class RungeKutta(ODESolver):
    """An explicit Runge–Kutta method on dy/dσ̃ = ε̂, y = x/α_t, σ̃ = σ_t/α_t (module docstring).

    A subclass states its Butcher tableau: ``nodes`` c (c_1 = 0), the rows of
    ``matrix`` A below the diagonal (stage i ≥ 2 reads a_i1 … a_i,i−1) and
    ``weights`` b. In x, with every coefficient a Python float,

        x_i = (α_i / α_t) x_t + α_i Δ Σ_j a_ij k_j,    x_s = (α_s / α_t) x_t + α_s Δ Σ_i b_i k_i,

    where k_i = ε̂(x_i, t_i) and t_i solves σ̃(t_i) = σ̃_t + c_i Δ.
    """

    nodes: tuple[float, ...] = (0.0,)
    matrix: tuple[tuple[float, ...], ...] = ()
    weights: tuple[float, ...] = (1.0,)

    def step(
        self,
        denoiser: Denoiser | CountingDenoiser,
        x: Tensor,
        t: Tensor,
        s: Tensor,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        process = denoiser.process
        pred = denoiser(x, t)
        t_, s_ = float(t), float(s)
        alpha_t, sigma_t = process.alpha_sigma_at(t_)
        alpha_s, sigma_s = process.alpha_sigma_at(s_)
        stage_times = [] if alpha_t == 0 else _stage_times(process, t, s, self.nodes[1:])
        if (
            len(self.nodes) == 1
            or alpha_t == 0
            or any(float(u) < process.t_min for u in stage_times)
        ):
            return ddim_update(process, x, pred, t_, s_, 0.0, None)
        delta = sigma_s / alpha_s - sigma_t / alpha_t
        slopes = [pred.noise]  # k_1 = ε̂(x_t, t)
        for row, u in zip(self.matrix, stage_times, strict=True):
            alpha_u = process.alpha_sigma_at(float(u))[0]
            slopes.append(
                denoiser(_combination(x, alpha_u / alpha_t, slopes, row, alpha_u * delta), u).noise
            )
        return _combination(x, alpha_s / alpha_t, slopes, self.weights, alpha_s * delta)


def _stage_times(
    process: ForwardProcess, t: Tensor, s: Tensor, nodes: tuple[float, ...]
) -> list[Tensor]:
    """The 0-dim times t_i with σ̃(t_i) = σ̃_t + c_i (σ̃_s − σ̃_t): s itself for c_i = 1."""
    ratio_t, ratio_s = noise_ratio(process, float(t)), noise_ratio(process, float(s))
    out = []
    for c in nodes:
        if c == 1.0:
            out.append(s)
        else:
            u = time_at_noise_ratio(process, ratio_t + c * (ratio_s - ratio_t))
            out.append(torch.tensor(u, dtype=t.dtype, device=t.device))
    return out


def _combination(
    x: Tensor, scale: float, slopes: list[Tensor], weights: tuple[float, ...], step: float
) -> Tensor:
    """scale · x + step · Σ_j w_j k_j, in fused adds (zero weights skipped)."""
    out = x * scale
    for w, k in zip(weights, slopes, strict=True):
        if w != 0.0:
            out.add_(k, alpha=step * w)
    return out


class Euler(RungeKutta):
    """Euler's method in (σ̃, y): x_s = α_s x̂_0 + σ_s ε̂, i.e. deterministic DDIM; order 1.

    Reference: Song, Meng & Ermon (2021), eq. (12) with σ = 0; Karras et al. (2022), Section 3.
    """

    order = 1


class Heun(RungeKutta):
    """Heun's second-order method in (σ̃, y), EDM's sampler (Euler on the last step into t = 0).

    Reference: Karras, Aittala, Aila & Laine (2022), Algorithm 1.
    """

    order = 2
    nodes = (0.0, 1.0)
    matrix = ((1.0,),)
    weights = (0.5, 0.5)


class Midpoint(RungeKutta):
    """The explicit midpoint method in (σ̃, y): the slope at σ̃_t + Δ/2 carries the step; order 2.

    Reference: Hairer, Nørsett & Wanner (1993), Section II.1, eq. (1.9).
    """

    order = 2
    nodes = (0.0, 0.5)
    matrix = ((0.5,),)
    weights = (0.0, 1.0)


@dataclass(frozen=True)
class History:
    """What a multistep solver carries between steps (``DiffusionSampler.advance``'s memory).

    Attributes:
        steps: K, the number of steps of the grid being solved.
        done: the steps taken so far.
        previous: (λ_k, x̂_0 at t_k) of the latest steps, most recent first.
    """

    steps: int
    done: int = 0
    previous: tuple[tuple[float, Tensor], ...] = ()


class DPMSolverPlusPlus(ODESolver):
    """DPM-Solver++ (multistep, data prediction) of order ``order`` in λ = log(α_t / σ_t).

    Step k uses order min(``order``, k + 1): the first steps have no history
    yet. On grids of fewer than ``lower_order_final`` steps the last steps
    lower it again, min(…, K − k), which keeps few-step sampling stable; a step
    into σ_s = 0 (h = ∞) or from α_t = 0 (λ_t = −∞) is first order, and the
    latter leaves no history. ``step`` alone (no history) is the first-order
    step, DDIM. The orders' updates (h = λ_s − λ_t, h_0 = λ_t − λ_{t'} for the
    previous time t', m_0 = x̂_0(x_t, t), m_1 = x̂_0 at t', m_2 before that):

        1   x_s = (σ_s/σ_t) x_t + α_s φ_0 m_0                                    (DDIM)
        2   x_s = (σ_s/σ_t) x_t + α_s φ_0 [(1 + h/(2h_0)) m_0 − h/(2h_0) m_1]     (Lu et al. Alg. 2)
        3   x_s = (σ_s/σ_t) x_t + α_s [φ_0 m_0 + φ_1 p'(0) + φ_2 p''(0)]

    with p the quadratic through (0, m_0), (−h_0, m_1), (−h_0 − h_1, m_2) in
    u = λ − λ_t (Newton's divided differences).

    **Warm start.** The first-order first step has local error O(h²), so a
    multistep solver of order p ≥ 3 started that way has global error O(h²)
    wherever x̂_0 varies in λ at the start (it does not for diffusion started at
    t = 1, where the signal is nil: there the start costs nothing). With
    ``warm_start`` the first step is instead DPM-Solver++(2S), the second-order
    single-step update through the λ-midpoint u, λ_u = λ_t + r h (r ≈ ½, the
    exact r of the time found for it):

        x_u = (σ_u/σ_t) x_t + α_u φ_0(r h) m_0
        x_s = (σ_s/σ_t) x_t + α_s φ_0(h) [(1 − 1/(2r)) m_0 + 1/(2r) x̂_0(x_u, u)]

    with local error O(h³); every later step then has order ≥ 2 and the global
    error is O(h^p) for p ≤ 3, at one extra network evaluation per solve.

    Args:
        grid: the times of ``run`` (default ``UniformGrid()``).
        lower_order_final: below this many steps the final steps use lower
            orders (15, the threshold of Lu et al.'s released sampler).
        warm_start: the first step by DPM-Solver++(2S) (one more network
            evaluation) instead of DDIM; Lu et al.'s sampler starts with DDIM.

    Reference: Lu, Zhou, Bao, Chen, Li & Zhu (2022), "DPM-Solver++", eq. (9),
    Algorithms 1 (2S) and 2 (2M).
    """

    order: int

    def __init__(
        self,
        grid: TimeGrid | None = None,
        lower_order_final: int = 15,
        *,
        warm_start: bool = False,
    ) -> None:
        super().__init__(grid)
        if lower_order_final < 0:
            raise InvalidInput(
                f"lower_order_final: expected an integer >= 0, got {lower_order_final}"
            )
        if not isinstance(warm_start, bool):
            raise InvalidInput(f"warm_start: expected True or False, got {warm_start!r}")
        self.lower_order_final = int(lower_order_final)
        self.warm_start = warm_start

    def begin(self, times: Tensor) -> History:
        return History(steps=len(times) - 1)

    def step(
        self,
        denoiser: Denoiser | CountingDenoiser,
        x: Tensor,
        t: Tensor,
        s: Tensor,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        return self.advance(denoiser, x, t, s, generator, History(steps=1))[0]

    def advance(
        self,
        denoiser: Denoiser | CountingDenoiser,
        x: Tensor,
        t: Tensor,
        s: Tensor,
        generator: torch.Generator | None,
        memory: object,
    ) -> tuple[Tensor, History]:
        if not isinstance(memory, History):
            raise InvalidInput(f"memory: expected a History, got {type(memory).__name__}")
        process = denoiser.process
        t_, s_ = float(t), float(s)
        alpha_t, sigma_t = process.alpha_sigma_at(t_)
        alpha_s, sigma_s = process.alpha_sigma_at(s_)
        pred = denoiser(x, t)
        allowed = self.order
        if memory.steps < self.lower_order_final:
            allowed = min(allowed, memory.steps - memory.done)
        if alpha_t == 0 or sigma_s == 0:
            allowed = 1
        order = min(allowed, len(memory.previous) + 1)
        if order <= 1 and allowed >= 2 and self.warm_start:
            out = _singlestep_2s(denoiser, x, t, pred.data, s_)
        elif order <= 1:
            out = ddim_update(process, x, pred, t_, s_, 0.0, None)
        else:
            lam_t, lam_s = _log_snr(alpha_t, sigma_t), _log_snr(alpha_s, sigma_s)
            lams = [lam_t] + [lam for lam, _ in memory.previous[: order - 1]]
            data = [pred.data] + [m for _, m in memory.previous[: order - 1]]
            gaps = [a - b for a, b in itertools.pairwise(lams)]
            weights = _multistep_weights(lam_s - lam_t, gaps)
            out = _combination(x, sigma_s / sigma_t, data, tuple(weights), alpha_s)
        if alpha_t == 0:
            return out, History(memory.steps, memory.done + 1)
        kept = ((_log_snr(alpha_t, sigma_t), pred.data), *memory.previous)[: self.order - 1]
        return out, History(memory.steps, memory.done + 1, kept)


def _singlestep_2s(
    denoiser: Denoiser | CountingDenoiser, x: Tensor, t: Tensor, data: Tensor, s: float
) -> Tensor:
    """DPM-Solver++(2S) from t to s through the λ-midpoint (class docstring), given m_0 = ``data``.

    Needs α_t > 0 and σ_s > 0 (finite λ at both ends).
    """
    process = denoiser.process
    alpha_t, sigma_t = process.alpha_sigma_at(float(t))
    alpha_s, sigma_s = process.alpha_sigma_at(s)
    lam_t, lam_s = _log_snr(alpha_t, sigma_t), _log_snr(alpha_s, sigma_s)
    h = lam_s - lam_t
    u = time_at_noise_ratio(process, math.exp(-(lam_t + 0.5 * h)))
    alpha_u, sigma_u = process.alpha_sigma_at(u)
    r = (_log_snr(alpha_u, sigma_u) - lam_t) / h
    x_u = _combination(x, sigma_u / sigma_t, [data], (-math.expm1(-r * h),), alpha_u)
    mid = denoiser(x_u, torch.tensor(u, dtype=t.dtype, device=t.device)).data
    c = 1.0 / (2.0 * r)
    phi0 = -math.expm1(-h)
    return _combination(x, sigma_s / sigma_t, [data, mid], (phi0 * (1 - c), phi0 * c), alpha_s)


def _log_snr(alpha: float, sigma: float) -> float:
    """λ = log(α / σ)."""
    return math.log(alpha) - math.log(sigma)


def _multistep_weights(h: float, gaps: list[float]) -> list[float]:
    """Weights w_j of x_s = (σ_s/σ_t) x_t + α_s Σ_j w_j m_j for order len(gaps) + 1 ∈ {2, 3}.

    ``gaps`` = [h_0] or [h_0, h_1], the λ-distances back to the earlier predictions.
    """
    phi0 = -math.expm1(-h)
    if len(gaps) == 1:  # Lu et al.'s Algorithm 2: D = (1 + 1/(2r)) m_0 − 1/(2r) m_1, r = h_0/h
        c = h / (2.0 * gaps[0])
        return [phi0 * (1.0 + c), -phi0 * c]
    h0, h1 = gaps
    phi1 = h - phi0
    phi2 = 0.5 * h * h - phi1
    # p'(0) = d01 + h0 dd and p''(0) = 2 dd, d01 = (m0 − m1)/h0, dd = (d01 − d12)/(h0 + h1)
    c_dd = (phi1 * h0 + 2.0 * phi2) / (h0 + h1)  # weight of dd
    c_01 = phi1 + c_dd  # weight of d01 (d12 has weight −c_dd)
    return [phi0 + c_01 / h0, -c_01 / h0 - c_dd / h1, c_dd / h1]


class DPMSolver2M(DPMSolverPlusPlus):
    """DPM-Solver++(2M), the second-order multistep solver (Lu et al. 2022, Algorithm 2)."""

    order = 2


class DPMSolver3M(DPMSolverPlusPlus):
    """DPM-Solver++(3M), the third-order multistep solver (Lu et al. 2022, Section 4)."""

    order = 3
