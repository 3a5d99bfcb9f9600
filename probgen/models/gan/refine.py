"""Correcting a generator's samples by a log density ratio: rejection sampling and independence MH.

Let p_g be the law of a generator's samples x = G(z) and d(x) = ln p_data(x)/p_g(x)
(``probgen.models.gan.ratio``). Then p_data(x) = p_g(x) e^{d(x)}, so samples of
p_g become samples of p_data by

- **rejection** (discriminator rejection sampling): accept a proposal x ~ p_g
  with probability e^{d(x) − M}, M ≥ sup d. The accepted x have law p_data and
  the acceptance rate is E_{p_g}[e^{d − M}] = e^{−M};
- **independence Metropolis–Hastings** (MH-GAN): from the state x, propose
  x' ~ p_g and move with probability min(1, e^{d(x') − d(x)}); p_data is the
  chain's stationary law, whatever M.

Both only need d up to an additive constant. With an estimated d̂ they sample
p_g e^{d̂}/Z, which is p_data exactly when d̂ − d is constant on the support.

References: Azadi, Olsson, Darrell, Goodfellow & Odena 2019, "Discriminator
rejection sampling", ICLR; Turner, Hung, Frank, Saatci & Yosinski 2019,
"Metropolis-Hastings generative adversarial networks", ICML; Tierney 1994,
"Markov chains for exploring posterior distributions" (independence chains);
Mengersen & Tweedie 1996, "Rates of convergence of the Hastings and Metropolis
algorithms" (their geometric convergence).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from probgen.core import InvalidInput, ProbgenError
from probgen.tensors import append_dims

__all__ = [
    "IndependenceMetropolisHastings",
    "LogRatioFunction",
    "PerturbedProposal",
    "Refined",
    "Refiner",
    "RejectionSampler",
    "TooFewAccepted",
]

Proposal = Callable[..., Tensor]
"""Draws generator samples: ``proposal(n, generator=...)`` -> (n, *event_shape)."""


class LogRatioFunction(Protocol):
    """d(x) ≈ ln p_data(x)/p_g(x) up to a constant: (B, *event_shape) -> (B,)."""

    def __call__(self, x: Tensor) -> Tensor: ...


class PerturbedProposal:
    """x = G(z) + τ ε, ε ~ N(0, I): a proposal whose law is p_g smoothed by a Gaussian of width τ.

    Its density q = p_g ⊛ N(0, τ² I) is positive and smooth at the scale τ
    wherever p_g has mass within a few τ, so a log-ratio ln p_data/q
    calibrated against this proposal (pass it as ``calibrate``'s ``proposal``
    and to the sampler) stays bounded where G leaves holes narrower than τ
    inside a mode, where ln p_data/p_g is huge and poorly estimated. Both
    samplers stay exact for q: only the proposal's samples are needed.
    Shapes: ``proposal(n, generator=...)`` (n, *event_shape) -> same.

    Reference: Robert & Casella 2004, "Monte Carlo Statistical Methods",
    Chapter 7 (independent Metropolis–Hastings: the proposal must cover the
    target's support, and heavier-tailed proposals mix faster).
    """

    def __init__(self, proposal: Proposal, std: float) -> None:
        if not std > 0:
            raise InvalidInput(f"std: expected τ > 0, got {std}")
        self.proposal = proposal
        self.std = float(std)

    def __call__(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        x = self.proposal(n, generator=generator)
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return x + self.std * noise

    def __repr__(self) -> str:
        return f"PerturbedProposal(std={self.std:g})"


class TooFewAccepted(ProbgenError, RuntimeError):
    """Rejection sampling used its proposal budget before accepting ``n`` samples."""


@dataclass(frozen=True)
class Refined:
    """Corrected samples (n, *event_shape) with the acceptance rate and the proposals they took.

    ``info`` holds sampler-specific diagnostics (the bound M of rejection
    sampling, the chains MH never moved).
    """

    samples: Tensor
    acceptance_rate: float
    proposals: int
    info: dict[str, float] = field(default_factory=dict)


class Refiner(Protocol):
    """A sampler that corrects a proposal's samples towards p_data (``GAN.sample(refine=...)``)."""

    def draw(
        self, proposal: Proposal, n: int, generator: torch.Generator | None = None
    ) -> Refined: ...


def _log_ratio(log_ratio: LogRatioFunction, x: Tensor) -> Tensor:
    with torch.no_grad():
        return log_ratio(x)


def _log_uniform(like: Tensor, generator: torch.Generator | None) -> Tensor:
    """ln u, u ~ U(0, 1), shaped like ``like`` (B,) on its dtype and device."""
    u = torch.rand(like.shape, generator=generator, dtype=like.dtype, device=like.device)
    return torch.log(u)


class RejectionSampler:
    """Discriminator rejection sampling: keep x ~ p_g with probability σ(F(x)).

    With a = d(x) − M ≤ 0,

        F(x) = a − ln(1 − e^{a}) − γ,   σ(F(x)) = e^{a} / (e^{a} + (1 − e^{a}) e^{γ}),

    which is the exact rejection probability e^{d − M} at γ = 0 (the default);
    γ > 0 rejects more, γ < 0 accepts more, trading exactness for speed as in
    Azadi et al. (Section 3.2). M is ``log_bound`` if given, else the largest d
    over ``burn_in`` proposals; a later proposal with d > M is accepted with
    probability 1 and counted in ``info["above_bound"]`` (its excess weight is
    truncated, the bias DRS accepts for an estimated M).

    Args:
        log_ratio: d(x), e.g. a calibrated ``ClassifierLogRatio``.
        log_bound: M ≥ sup d, if known.
        burn_in: proposals that estimate M when ``log_bound`` is None.
        shift: γ.
        chunk: proposals drawn and scored at once.
        max_proposals: the proposal budget. Sampling gives up (``TooFewAccepted``)
            as soon as the proposals needed, projected from the mean acceptance
            probability r̂ of those scored so far (the burn-in's first) as
            drawn + (n − accepted)/r̂, exceed it, so a hopeless run (e^M far
            above the budget per sample) fails in seconds, not after the budget.

    Reference: Azadi et al. 2019, "Discriminator rejection sampling", Section 3, Algorithm 1.
    """

    def __init__(
        self,
        log_ratio: LogRatioFunction,
        *,
        log_bound: float | None = None,
        burn_in: int = 50_000,
        shift: float = 0.0,
        chunk: int = 50_000,
        max_proposals: int = 20_000_000,
    ) -> None:
        if burn_in < 1 or chunk < 1 or max_proposals < 1:
            raise InvalidInput(
                f"burn_in, chunk, max_proposals: expected >= 1, got {burn_in}, {chunk}, "
                f"{max_proposals}"
            )
        if log_bound is not None and not math.isfinite(log_bound):
            raise InvalidInput(f"log_bound: expected a finite M, got {log_bound}")
        self.log_ratio = log_ratio
        self.log_bound = log_bound
        self.burn_in = int(burn_in)
        self.shift = float(shift)
        self.chunk = int(chunk)
        self.max_proposals = int(max_proposals)

    def acceptance_probability(self, d: Tensor, log_bound: float) -> Tensor:
        """σ(F(x)) from d(x) (B,) and M; e^{d − M} at γ = 0, 1 where d ≥ M."""
        a = (d - log_bound).clamp_max(0.0)
        if self.shift == 0.0:
            return a.exp()
        logit = a - torch.log(-torch.expm1(a))  # +inf at a = 0: accepted
        return torch.sigmoid(logit - self.shift)

    def draw(self, proposal: Proposal, n: int, generator: torch.Generator | None = None) -> Refined:
        """``n`` accepted samples (n, *event_shape) of p_g e^{d}/Z, with the acceptance rate."""
        if n < 1:
            raise InvalidInput(f"n: expected >= 1, got {n}")
        proposed = 0
        bound = self.log_bound
        expected, scored = 0.0, 0  # Σ of the acceptance probabilities scored, and their count
        if bound is None:
            d = _log_ratio(self.log_ratio, proposal(self.burn_in, generator=generator))
            bound = d.max().item()
            expected, scored = self.acceptance_probability(d, bound).sum().item(), len(d)
            proposed += self.burn_in
        kept: list[Tensor] = []
        accepted = above = drawn = 0
        while accepted < n:
            rate = expected / scored if scored else 1.0
            needed = drawn + (n - accepted) / rate if rate > 0 else math.inf
            if needed > self.max_proposals or drawn >= self.max_proposals:
                raise TooFewAccepted(
                    f"RejectionSampler: accepted {accepted} of {n} samples in {drawn} proposals; "
                    f"{n} would take about {needed:.3g} (acceptance ≈ {rate:.3g}, M = "
                    f"{bound:.3g}), more than max_proposals = {self.max_proposals}: raise it, "
                    "lower the bound with shift γ < 0, or use independence MH"
                )
            x = proposal(self.chunk, generator=generator)
            d = _log_ratio(self.log_ratio, x)
            probability = self.acceptance_probability(d, bound)
            keep = _log_uniform(d, generator) < probability.log()
            expected, scored = expected + probability.sum().item(), scored + len(d)
            above += int((d > bound).sum())
            kept.append(x[keep])
            accepted += int(keep.sum())
            drawn += self.chunk
        samples = torch.cat(kept)[:n]
        return Refined(
            samples,
            acceptance_rate=accepted / drawn,
            proposals=proposed + drawn,
            info={"log_bound": bound, "above_bound": above / drawn},
        )


class IndependenceMetropolisHastings:
    """MH-GAN: n parallel independence chains with proposals from the generator.

    From the state x, propose x' ~ p_g and move with probability
    min(1, r(x')/r(x)) = min(1, e^{d(x') − d(x)}): the Metropolis–Hastings
    ratio p_data(x') p_g(x) / (p_data(x) p_g(x')) of an independence chain
    whose target is p_data = p_g e^{d}. Each chain starts at a proposal and
    runs ``steps`` steps; its last state is returned. With d normalised so
    that E_{p_g}[e^d] = 1, ‖P^t(x, ·) − p_data‖_TV ≤ (1 − e^{−sup d})^t
    (Mengersen & Tweedie 1996): take ``steps`` several times e^{sup d}.
    ``info["unmoved"]`` is the fraction of chains that never moved (their
    sample is a raw generator sample).

    Reference: Turner et al. 2019, "Metropolis-Hastings generative adversarial
    networks", Algorithm 1 (started here from a generated sample, not a data point).
    """

    def __init__(self, log_ratio: LogRatioFunction, *, steps: int = 1000) -> None:
        if steps < 1:
            raise InvalidInput(f"steps: expected >= 1, got {steps}")
        self.log_ratio = log_ratio
        self.steps = int(steps)

    def draw(self, proposal: Proposal, n: int, generator: torch.Generator | None = None) -> Refined:
        """The last states of ``n`` chains after ``steps`` steps: (n, *event_shape)."""
        if n < 1:
            raise InvalidInput(f"n: expected >= 1, got {n}")
        x = proposal(n, generator=generator)
        d = _log_ratio(self.log_ratio, x)
        moved = torch.zeros(n, dtype=torch.bool, device=x.device)
        accepted = 0
        for _ in range(self.steps):
            x_new = proposal(n, generator=generator)
            d_new = _log_ratio(self.log_ratio, x_new)
            move = _log_uniform(d, generator) < d_new - d
            x = torch.where(append_dims(move, x.dim()), x_new, x)
            d = torch.where(move, d_new, d)
            moved |= move
            accepted += int(move.sum())
        return Refined(
            x,
            acceptance_rate=accepted / (n * self.steps),
            proposals=n * (self.steps + 1),
            info={"unmoved": 1.0 - moved.double().mean().item()},
        )
