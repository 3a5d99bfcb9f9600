"""Reverse-time samplers: one interface, one ``step`` from time t to s < t, no hidden state.

Every sampler runs the same loop over the process's grid 1 = t_0 > … > t_K = 0,

    x ← step(denoiser, x, t_k, t_{k+1}, generator),

starting from the prior x_1 ~ N(0, prior_std² I), and returns a
``probgen.sampling.SampleResult`` whose ``n_evaluations`` counts the network
calls actually made. Only the ``step`` differs:

    Ancestral           x_s ~ q(x_s | x_t, x̂_0)                         (Ho et al. 2020)
    DDIM(η)             x_s = α_s x̂_0 + √(σ_s² − c²) ε̂ + c z,  c = η σ̃   (Song, Meng & Ermon 2021)
    EulerMaruyama       reverse SDE dx = [f x − g² ŝ] dt + g dW̄          (Song et al. 2021)
    PredictorCorrector  Langevin corrector at t, then a predictor step   (Song et al. 2021)
    ProbabilityFlow     dx/dt = f x − ½ g² ŝ by adaptive RK45 (torchdiffeq) (Song et al. 2021)
    AnnealedLangevin    Langevin at each noise level (NCSN)              (Song & Ermon 2019)

The fixed-step ODE solvers with a declared order (Euler, Heun, midpoint,
DPM-Solver++) are in ``probgen.models.diffusion.solvers``; their first-order
step is this module's ``ddim_update``.

Shapes: x (B, *event); grid times are 0-dim tensors, passed to the denoiser as one
time for the batch, so every per-step coefficient is a Python float computed once
(``ForwardProcess.alpha_sigma_at``, ``posterior_coefficients``) and the updates are
fused ``torch.add(·, ·, alpha=c)`` kernels.
"""

from __future__ import annotations

import abc
import itertools
import math
from typing import ClassVar

import torch
from torch import Tensor
from torchdiffeq import odeint

from probgen.core import InvalidInput
from probgen.models.diffusion.parametrizations import Denoiser, Prediction
from probgen.models.diffusion.processes import ForwardProcess
from probgen.sampling import Langevin, Sampler, SampleResult, Score
from probgen.tensors import sum_events

__all__ = [
    "DDIM",
    "Ancestral",
    "AnnealedLangevin",
    "CountingDenoiser",
    "DiffusionSampler",
    "EulerMaruyama",
    "PredictorCorrector",
    "ProbabilityFlow",
    "probability_flow_velocity",
    "sampler_by_name",
]


def sampler_by_name(name: str) -> DiffusionSampler:
    """The diffusion sampler registered as ``name`` in ``SAMPLERS``, built with its defaults."""
    from probgen.registry import SAMPLERS  # the registry imports this package lazily

    cls = SAMPLERS.get(name)
    if not (isinstance(cls, type) and issubclass(cls, DiffusionSampler)):
        raise InvalidInput(
            f"sampler: expected a diffusion sampler, got {name!r} ({SAMPLERS.target(name)})"
        )
    return cls()


class CountingDenoiser:
    """A denoiser that counts its network evaluations: ``denoiser.evaluations`` per call

    (1 for a plain denoiser; 2 for classifier-free guidance, which evaluates the
    network at c and at the null condition)."""

    def __init__(self, denoiser: Denoiser) -> None:
        self.denoiser = denoiser
        self.process: ForwardProcess = denoiser.process
        self.calls = 0

    def __call__(self, x: Tensor, t: Tensor) -> Prediction:
        self.calls += self.denoiser.evaluations
        return self.denoiser(x, t)


def _noise(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def probability_flow_velocity(
    denoiser: Denoiser | CountingDenoiser, x: Tensor, t: Tensor
) -> Tensor:
    """v(x, t) = f(t) x − ½ g(t)² ŝ(x, t) = α̇ x̂_0 + σ̇ ε̂, the probability-flow ODE's velocity.

    Read from the prediction (``Prediction.velocity``), so a velocity network
    is used as is and no path divides by α_t where it vanishes. ``t`` is one
    time (0-dim; the coefficients are then Python floats) or per-example times
    (B,); x and the result are (B, *event). The solution has the same marginals
    p_t as the forward SDE (Song et al. 2021, eq. (13)). Times are clamped to
    [t_min, 1], where the network is defined: adaptive solvers probe past the ends.
    """
    t = t.clamp(denoiser.process.t_min, 1.0)
    return denoiser(x, t).velocity


class DiffusionSampler(Sampler):
    """A reverse-time sampler: ``step`` from t to s < t, and the shared loop (``run``, ``solve``).

    A multistep solver also reads what earlier steps computed: it overrides
    ``advance``, which carries that ``memory`` explicitly from one step to the
    next (the loop holds it, never the sampler), and ``begin``, its initial value.
    """

    @abc.abstractmethod
    def step(
        self,
        denoiser: Denoiser | CountingDenoiser,
        x: Tensor,
        t: Tensor,
        s: Tensor,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Move x (B, *event) from time t to time s < t (0-dim tensors)."""

    def times(self, process: ForwardProcess, n_steps: int, *, like: Tensor) -> Tensor:
        """The grid 1 = t_0 > … > t_K = 0 of ``run``: the process's own (uniform) grid."""
        return process.grid(n_steps, like=like)

    def begin(self, times: Tensor) -> object:
        """The memory before the first step on the grid ``times`` (None: memoryless)."""
        return None

    def advance(
        self,
        denoiser: Denoiser | CountingDenoiser,
        x: Tensor,
        t: Tensor,
        s: Tensor,
        generator: torch.Generator | None,
        memory: object,
    ) -> tuple[Tensor, object]:
        """One step of the loop with the memory of the earlier steps: (x_s, the new memory)."""
        return self.step(denoiser, x, t, s, generator), memory

    def run(
        self,
        target: object,
        x0: Tensor,
        n_steps: int,
        *,
        generator: torch.Generator | None = None,
        record_every: int | None = None,
    ) -> SampleResult:
        """Run the reverse process of ``target`` (a ``Denoiser``) from prior draws ``x0``.

        ``x0`` (B, *event) are draws of the prior (``process.prior_sample``);
        ``n_steps`` is the number of grid intervals K (on the grid ``times``);
        ``record_every = k`` keeps the states after every k-th step in ``trajectory``.
        """
        if not isinstance(target, Denoiser):
            raise InvalidInput(
                f"target: a diffusion sampler needs a Denoiser, got {type(target).__name__}"
            )
        grid = self.times(target.process, n_steps, like=x0)
        return self.solve(target, x0, grid, generator=generator, record_every=record_every)

    def solve(
        self,
        target: Denoiser,
        x: Tensor,
        times: Tensor,
        *,
        generator: torch.Generator | None = None,
        record_every: int | None = None,
    ) -> SampleResult:
        """Step x (B, *event) from times[0] through every time of the decreasing ``times`` (K + 1,).

        ``run`` on its grid; call it directly to integrate between any two times.
        """
        if not isinstance(target, Denoiser):
            raise InvalidInput(
                f"target: a diffusion sampler needs a Denoiser, got {type(target).__name__}"
            )
        if record_every is not None and record_every < 1:
            raise InvalidInput(f"record_every: expected a positive integer, got {record_every}")
        if times.dim() != 1 or len(times) < 2 or not bool((times[1:] < times[:-1]).all()):
            raise InvalidInput("times: expected a decreasing 1-D tensor of at least two times")
        counted = CountingDenoiser(target)
        kept = []
        memory = self.begin(times)
        for i, (t, s) in enumerate(itertools.pairwise(times)):
            x, memory = self.advance(counted, x, t, s, generator, memory)
            if record_every is not None and (i + 1) % record_every == 0:
                kept.append(x)
        return SampleResult(
            samples=x,
            acceptance_rate=None,
            n_evaluations=counted.calls,
            trajectory=torch.stack(kept) if kept else None,
        )


class Ancestral(DiffusionSampler):
    """Ancestral sampling: x_s = μ̃(x_t, x̂_0) + σ̃ z with the posterior q(x_s | x_t, x_0).

    On the DDPM grid with every step this is Ho et al.'s Algorithm 2 with
    σ_t² = β̃_t; the last step (s = 0, σ̃ = 0) returns the posterior mean.

    Reference: Ho, Jain & Abbeel (2020), "Denoising diffusion probabilistic models".
    """

    def step(
        self,
        denoiser: Denoiser | CountingDenoiser,
        x: Tensor,
        t: Tensor,
        s: Tensor,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        pred = denoiser(x, t)
        # one time for the whole batch: the coefficients are Python floats
        c_t, c_0, std = denoiser.process.posterior_coefficients(float(t), float(s))
        mean = torch.add(pred.data * c_0, x, alpha=c_t)
        return mean.add_(_noise(x, generator), alpha=std)


class DDIM(DiffusionSampler):
    """DDIM: x_s = α_s x̂_0 + √(σ_s² − c²) ε̂ + c z with c = η σ̃_{s|t}.

    η = 0 is the deterministic DDIM (a first-order solver of the probability-flow
    ODE); η = 1 coincides with ancestral sampling.

    Reference: Song, Meng & Ermon (2021), "Denoising diffusion implicit models", eq. (12).
    """

    def __init__(self, eta: float = 0.0) -> None:
        if not 0.0 <= eta <= 1.0:
            raise InvalidInput(f"eta: expected a number in [0, 1], got {eta}")
        self.eta = float(eta)

    def step(
        self,
        denoiser: Denoiser | CountingDenoiser,
        x: Tensor,
        t: Tensor,
        s: Tensor,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        pred = denoiser(x, t)
        return ddim_update(denoiser.process, x, pred, float(t), float(s), self.eta, generator)


def ddim_update(
    process: ForwardProcess,
    x: Tensor,
    pred: Prediction,
    t: float,
    s: float,
    eta: float,
    generator: torch.Generator | None,
) -> Tensor:
    """The DDIM update of x (B, *event) from time t to s < t given a prediction at (x, t)."""
    alpha_s, sigma_s = process.alpha_sigma_at(s)
    c = eta * process.posterior_coefficients(t, s)[2] if eta > 0 else 0.0
    keep = math.sqrt(max(sigma_s**2 - c**2, 0.0))
    out = torch.add(pred.data * alpha_s, pred.noise, alpha=keep)
    if eta > 0:
        out.add_(_noise(x, generator), alpha=c)
    return out


class EulerMaruyama(DiffusionSampler):
    """Euler–Maruyama on the reverse SDE dx = [f x − g² ŝ] dt + g dW̄, dt = s − t < 0.

        x_s = x + (f x − g² ŝ)(s − t) + g √(t − s) z.

    Reference: Song et al. (2021), "Score-based generative modeling through SDEs", eq. (6).
    """

    def step(
        self,
        denoiser: Denoiser | CountingDenoiser,
        x: Tensor,
        t: Tensor,
        s: Tensor,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        f, g2 = denoiser.process.drift_diffusion_at(float(t))  # one time for the batch
        score = denoiser(x, t).score
        dt = float(s) - float(t)
        out = torch.add(x * (1.0 + f * dt), score, alpha=-g2 * dt)
        return out.add_(_noise(x, generator), alpha=math.sqrt(-g2 * dt))


class PredictorCorrector(DiffusionSampler):
    """Predictor–corrector: ``corrector_steps`` Langevin steps on p_t, then a predictor step.

    The corrector is ``probgen.sampling.Langevin`` on the score ŝ(·, t) with
    drift step ε = 2 (r ‖z‖ / ‖ŝ‖)², ‖z‖ = √D and ‖ŝ‖ the batch mean of the
    score norms, r = ``snr`` (Song et al.'s Algorithm 5 for VE, 4 for VP).

    Reference: Song et al. (2021), "Score-based generative modeling through SDEs", Appendix G.
    """

    def __init__(
        self,
        predictor: DiffusionSampler | None = None,
        snr: float = 0.16,
        corrector_steps: int = 1,
    ) -> None:
        if snr <= 0 or corrector_steps < 1:
            raise InvalidInput(
                f"expected snr > 0 and corrector_steps >= 1, got {snr}, {corrector_steps}"
            )
        self.predictor = predictor if predictor is not None else EulerMaruyama()
        self.snr = float(snr)
        self.corrector_steps = int(corrector_steps)

    def step(
        self,
        denoiser: Denoiser | CountingDenoiser,
        x: Tensor,
        t: Tensor,
        s: Tensor,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        for _ in range(self.corrector_steps):
            score = denoiser(x, t).score
            norm = sum_events(score.square()).sqrt().mean().item()
            drift_step = 2.0 * (self.snr * math.sqrt(x[0].numel()) / max(norm, 1e-12)) ** 2
            current = x

            def known_score(y: Tensor, current: Tensor = current, score: Tensor = score) -> Tensor:
                # the score at the current state is already computed; no second evaluation
                return score if y is current else denoiser(y, t).score

            x = Langevin(math.sqrt(2.0 * drift_step)).step(x, Score(known_score), generator).x
        return self.predictor.step(denoiser, x, t, s, generator)


class ProbabilityFlow(DiffusionSampler):
    """The probability-flow ODE dx/dt = f x − ½ g² ŝ, solved by torchdiffeq from t to s.

    Adaptive Dormand–Prince RK45 (``method="dopri5"``, ``order`` 5) with
    tolerances ``rtol``, ``atol``; the number of network evaluations is the
    solver's (``n_evaluations``). The network is not evaluated below ``process.t_min``:
    a step ending below it integrates to t_min and finishes with one
    deterministic DDIM jump (x_s = α_s x̂_0 + σ_s ε̂).

    Reference: Song et al. (2021), "Score-based generative modeling through SDEs",
    eq. (13); Chen, Rubanova, Bettencourt & Duvenaud (2018), "Neural ordinary
    differential equations"; Dormand & Prince (1980).
    """

    ORDERS: ClassVar[dict[str, int]] = {
        "dopri8": 8,
        "dopri5": 5,
        "bosh3": 3,
        "fehlberg2": 2,
        "adaptive_heun": 2,
    }
    """The adaptive methods of torchdiffeq and their orders (of the solution they propagate)."""

    def __init__(self, rtol: float = 1e-5, atol: float = 1e-5, method: str = "dopri5") -> None:
        if method not in self.ORDERS:
            raise InvalidInput(
                f"method: expected an adaptive torchdiffeq method, one of "
                f"{', '.join(self.ORDERS)}; got {method!r}"
            )
        self.rtol, self.atol, self.method = float(rtol), float(atol), method
        self.order = self.ORDERS[method]

    def step(
        self,
        denoiser: Denoiser | CountingDenoiser,
        x: Tensor,
        t: Tensor,
        s: Tensor,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        t_min = denoiser.process.t_min
        end = s.clamp(min=t_min).to(x.dtype)
        if end < t:
            x = solve_probability_flow(
                denoiser, x, t.to(x.dtype), end, self.rtol, self.atol, self.method
            )
        if s < end:
            pred = denoiser(x, end)
            x = ddim_update(denoiser.process, x, pred, float(end), float(s), 0.0, generator)
        return x


def solve_probability_flow(
    denoiser: Denoiser | CountingDenoiser,
    x: Tensor,
    t: Tensor,
    s: Tensor,
    rtol: float,
    atol: float,
    method: str,
) -> Tensor:
    """x_s from x_t (B, *event) along the probability-flow ODE, with torchdiffeq."""

    def velocity(time: Tensor, y: Tensor) -> Tensor:
        return probability_flow_velocity(denoiser, y, time.to(y.dtype))

    return odeint(velocity, x, torch.stack([t, s]), rtol=rtol, atol=atol, method=method)[-1]


class AnnealedLangevin(DiffusionSampler):
    """Annealed Langevin dynamics (NCSN) over the process's noise levels.

    At level t the variance-exploding variable x̃ = x / α_t has noise level
    σ̃_t = σ_t / α_t and score α_t ŝ(α_t x̃, t). ``steps_per_level`` Langevin
    steps (``probgen.sampling.Langevin``) with drift step
    a_t = ε σ̃_t² / σ̃_{t_min}² on x̃ are, in x, Langevin steps with noise
    scale α_t √a_t; then x is rescaled to the next level, x ← x α_s / α_t.

    Reference: Song & Ermon (2019), "Generative modeling by estimating gradients
    of the data distribution", Algorithm 1.
    """

    def __init__(self, step_size: float = 2e-5, steps_per_level: int = 10) -> None:
        if step_size <= 0 or steps_per_level < 1:
            raise InvalidInput(
                f"expected step_size > 0 and steps_per_level >= 1, got {step_size}, "
                f"{steps_per_level}"
            )
        self.step_size = float(step_size)
        self.steps_per_level = int(steps_per_level)

    def step(
        self,
        denoiser: Denoiser | CountingDenoiser,
        x: Tensor,
        t: Tensor,
        s: Tensor,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        process = denoiser.process
        alpha_t, sigma_t = process.alpha_sigma_at(float(t))
        alpha_s = process.alpha_sigma_at(float(s))[0]
        alpha_min, sigma_min = process.alpha_sigma_at(process.t_min)
        drift = self.step_size * ((sigma_t / alpha_t) / (sigma_min / alpha_min)) ** 2
        kernel = Langevin(alpha_t * math.sqrt(drift))
        target = Score(lambda y: denoiser(y, t).score)
        for _ in range(self.steps_per_level):
            x = kernel.step(x, target, generator).x
        return x * (alpha_s / alpha_t)
