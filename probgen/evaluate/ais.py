"""Annealed importance sampling (AIS): normalising constants and decoder log-likelihoods.

AIS estimates Z = ∫ f(z) dz of an unnormalised density f by moving chains from a
normalised start p_0 through the geometric path

    f_t(z) = p_0(z)^{1-β_t} f(z)^{β_t},   0 = β_0 < β_1 < … < β_T = 1,

with a transition T_t that leaves f_t invariant (HMC or MALA from
``probgen.sampling``). Each chain starts at z_0 ~ p_0 and carries the weight

    log w = Σ_{t=1}^{T} (β_t − β_{t−1}) [log f(z_{t−1}) − log p_0(z_{t−1})],
    z_t ~ T_t(· | z_{t−1}),

so that E[w] = Z exactly, and Ẑ = (1/K) Σ_k w_k over K chains. By Jensen,
E[log Ẑ] ≤ log Z: a stochastic lower bound whose gap shrinks as T grows.

Used three ways:

- a decoder model p(x) = ∫ p(x|z) p(z) dz (a VAE decoder): p_0 = p(z),
  f(z) = p(z) p(x|z), Z = p(x);
- a GAN generator with a Gaussian observation model p(x|z) = N(x; G(z), σ² I)
  (Wu, Burda, Salakhutdinov & Grosse 2017, "On the quantitative analysis of
  decoder-based generative models");
- an energy-based model's log Z_θ = log ∫ exp(−E_θ(x)) dx, with p_0 the
  model's initial distribution.

Reference: Neal 2001, "Annealed importance sampling"; Wu et al. 2017.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

from probgen.core import Estimate, GenerativeModel, InvalidInput
from probgen.sampling import HMC, Energy, Kernel
from probgen.tensors import logmeanexp, sum_events

__all__ = [
    "AIS",
    "AISResult",
    "DecoderLikelihood",
    "GaussianObservation",
    "LatentVariableModel",
    "linear_schedule",
    "sigmoid_schedule",
]

_LOG_2PI = math.log(2.0 * math.pi)
_ADAPT_FACTOR = 1.02  # step-size change per level towards the target acceptance (Wu et al.)


def linear_schedule(n_levels: int) -> Tensor:
    """β_t = t / T for t = 0…T, shape (T + 1,), float64."""
    _check_levels(n_levels)
    return torch.linspace(0.0, 1.0, n_levels + 1, dtype=torch.float64)


def sigmoid_schedule(n_levels: int, radius: float = 4.0) -> Tensor:
    """The sigmoid schedule: β̃_t = σ(δ (2t/T − 1)), rescaled to β_0 = 0, β_T = 1; (T + 1,).

    Spends more levels near β = 0 and β = 1, where the intermediate densities
    change fastest. Reference: Grosse, Maddison & Salakhutdinov 2013,
    "Annealing between distributions by averaging moments"; Wu et al. 2017.
    """
    _check_levels(n_levels)
    t = torch.linspace(-radius, radius, n_levels + 1, dtype=torch.float64)
    s = torch.sigmoid(t)
    return (s - s[0]) / (s[-1] - s[0])


def _check_levels(n_levels: int) -> None:
    if not (isinstance(n_levels, int) and n_levels >= 1):
        raise InvalidInput(f"n_levels: expected an integer >= 1, got {n_levels!r}")


class LatentVariableModel(Protocol):
    """p(x) = ∫ p(x|z) p(z) dz: a prior over latents z (Z,) and an observation model."""

    prior: GenerativeModel

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z): x (N, *event_shape), z (N, Z) -> (N,)."""


class DecoderLikelihood:
    """A VAE's generative half: p(z) = ``vae.prior``, p(x|z) = ``vae.decoder``.

    Works with any model exposing ``prior`` (a distribution over (Z,)) and a
    ``decoder`` with ``log_prob(x, z) -> (N,)``.
    """

    def __init__(self, model: nn.Module) -> None:
        for attribute in ("prior", "decoder"):
            if not hasattr(model, attribute):
                raise InvalidInput(
                    f"DecoderLikelihood: {type(model).__name__} has no {attribute!r}; "
                    "expected a latent-variable model such as a VAE"
                )
        self.prior = model.prior
        self.decoder = model.decoder

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        return self.decoder.log_prob(x, z)


class GaussianObservation:
    """A generator G(z), z ~ p(z), made a density by p(x|z) = N(x; G(z), σ² I).

    log p(x|z) = −‖x − G(z)‖² / (2σ²) − D log σ − (D/2) log 2π over D entries.
    ``generator`` is a module with a ``prior`` and ``forward(z) -> (N, *event_shape)``
    (e.g. ``probgen.models.gan.Generator``; pass ``gan.generator``). σ is a
    modelling choice; Wu et al. 2017 pick it on validation data.

    Reference: Wu, Burda, Salakhutdinov & Grosse 2017, Section 3.
    """

    def __init__(self, generator: nn.Module, std: float) -> None:
        if not std > 0:
            raise InvalidInput(f"GaussianObservation: expected std > 0, got {std}")
        if not hasattr(generator, "prior"):
            raise InvalidInput(
                f"GaussianObservation: {type(generator).__name__} has no 'prior'; pass the "
                "generator network of a GAN (e.g. gan.generator)"
            )
        self.generator = generator
        self.prior = generator.prior
        self.std = float(std)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        u = (x - self.generator(z)) / self.std
        d = u[0].numel()
        return -0.5 * sum_events(u.square()) - d * (math.log(self.std) + 0.5 * _LOG_2PI)


@dataclass(frozen=True)
class AISResult:
    """The outcome of one AIS run of K chains for each of B targets.

    Attributes:
        log_weights: log w of every chain, (K, B).
        log_normalizer: log Ẑ = log (1/K) Σ_k w_k per target, (B,).
        samples: final chain states, (K, B, *state_shape), approximately from f/Z.
        acceptance_rate: mean acceptance of the transitions (None if unadjusted).
        n_evaluations: batched evaluations of f and p_0 (each over all K·B chains).
        step_size: the kernel step size after adaptation.
    """

    log_weights: Tensor
    log_normalizer: Tensor
    samples: Tensor
    acceptance_rate: float | None
    n_evaluations: int
    step_size: float

    def effective_sample_size(self) -> Tensor:
        """(Σ_k w_k)² / Σ_k w_k² per target, (B,): between 1 and K."""
        w = self.log_weights
        return (2 * torch.logsumexp(w, 0) - torch.logsumexp(2 * w, 0)).exp()

    def estimate(self, kind: str = "bound") -> Estimate:
        """Mean of log Ẑ over the B targets with its standard error (one target: the
        delta-method error √(var w / K) / mean w)."""
        if self.log_normalizer.numel() > 1:
            return Estimate.from_samples(self.log_normalizer, kind=kind)
        w = self.log_weights.flatten()
        ratio = (w - w.max()).exp()  # w / max w
        k = ratio.numel()
        stderr = (ratio.std() / ratio.mean()).item() / math.sqrt(k) if k > 1 else 0.0
        return Estimate(self.log_normalizer.item(), stderr, kind)


class AIS:
    """Annealed importance sampling with a schedule and a Metropolis-adjusted kernel.

    Args:
        schedule: β_0 = 0 < … < β_T = 1, e.g. ``sigmoid_schedule(1000)`` (the
            default) or ``linear_schedule(200)``.
        kernel: the transition family, a callable step size -> ``Kernel``
            leaving each f_t invariant: ``HMC`` (the default, 10 leapfrog steps),
            ``MALA``, or ``functools.partial(HMC, n_leapfrog=5)``.
        step_size: the initial step size.
        target_acceptance: after each level the step size is multiplied by
            1.02 when the acceptance rate of all chains exceeds this, else
            divided by it (as in Wu et al. 2017); ``None`` keeps it fixed.
        n_chains: K, chains per target.
        steps_per_level: transitions at each intermediate density.
    """

    def __init__(
        self,
        schedule: Tensor | Sequence[float] | None = None,
        kernel: Callable[[float], Kernel] = HMC,
        *,
        step_size: float = 0.05,
        target_acceptance: float | None = 0.65,
        n_chains: int = 16,
        steps_per_level: int = 1,
    ) -> None:
        betas = sigmoid_schedule(1000) if schedule is None else torch.as_tensor(schedule)
        betas = betas.detach().to(torch.float64).flatten()
        if (
            len(betas) < 2
            or betas[0].item() != 0.0
            or betas[-1].item() != 1.0
            or not bool((betas.diff() > 0).all())
        ):
            raise InvalidInput("schedule: expected increasing values from exactly 0 to exactly 1")
        if target_acceptance is not None and not 0.0 < target_acceptance < 1.0:
            raise InvalidInput(
                f"target_acceptance: expected a value in (0, 1) or None, got {target_acceptance}"
            )
        if n_chains < 1 or steps_per_level < 1:
            raise InvalidInput(
                f"expected n_chains >= 1 and steps_per_level >= 1, got {n_chains}, "
                f"{steps_per_level}"
            )
        self.betas = betas
        self.kernel = kernel
        self.step_size = float(step_size)
        kernel(self.step_size)  # validates the step size now rather than mid-run
        self.target_acceptance = target_acceptance
        self.n_chains = int(n_chains)
        self.steps_per_level = int(steps_per_level)

    def run(
        self,
        initial: GenerativeModel,
        log_target: Callable[[Tensor], Tensor],
        batch: int = 1,
        *,
        generator: torch.Generator | None = None,
    ) -> AISResult:
        """log Ẑ of ``batch`` unnormalised densities, each from K chains.

        Args:
            initial: p_0 with exact ``log_prob`` and ``sample(n, generator=...)``.
            log_target: log f on states (K·B, *state_shape) -> (K·B,); row
                k·B + b belongs to target b (chain-major layout).
            batch: B, the number of targets.
            generator: source of every random draw.
        """
        k = self.n_chains
        with torch.no_grad():
            z = initial.sample(k * batch, generator=generator)

        def log_ratio(z: Tensor) -> Tensor:  # log f(z) − log p_0(z), (K·B,)
            with torch.no_grad():
                return log_target(z) - initial.log_prob(z)

        log_w = torch.zeros(k * batch, dtype=z.dtype, device=z.device)
        step_size, evaluations = self.step_size, 0
        accepted = proposals = 0
        betas = self.betas.tolist()
        for beta_prev, beta in itertools.pairwise(betas):
            log_w = log_w + (beta - beta_prev) * log_ratio(z)
            evaluations += 1
            target = Energy(_annealed_energy(initial, log_target, beta))
            kernel = self.kernel(step_size)
            level_accepted = level_proposals = 0
            for _ in range(self.steps_per_level):
                t = kernel.step(z, target, generator)
                z, evaluations = t.x.detach(), evaluations + t.n_evaluations
                if t.accepted is not None:
                    level_accepted += int(t.accepted.sum())
                    level_proposals += t.accepted.numel()
            accepted, proposals = accepted + level_accepted, proposals + level_proposals
            if self.target_acceptance is not None and level_proposals:
                rate = level_accepted / level_proposals
                step_size *= _ADAPT_FACTOR if rate > self.target_acceptance else 1 / _ADAPT_FACTOR
        log_w = log_w.reshape(k, batch)
        return AISResult(
            log_weights=log_w,
            log_normalizer=logmeanexp(log_w, dim=0),
            samples=z.reshape(k, batch, *z.shape[1:]),
            acceptance_rate=accepted / proposals if proposals else None,
            n_evaluations=evaluations,
            step_size=step_size,
        )

    def log_likelihood(
        self,
        model: LatentVariableModel,
        x: Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> AISResult:
        """log p̂(x) of x (B, *event_shape) under p(x) = ∫ p(x|z) p(z) dz, in ``log_normalizer``.

        A stochastic lower bound: E[log p̂(x)] ≤ log p(x), tight as T grows.
        """
        xs = x.repeat(self.n_chains, *([1] * (x.dim() - 1)))  # (K·B, *event_shape)

        def log_joint(z: Tensor) -> Tensor:
            return model.prior.log_prob(z) + model.log_likelihood(xs, z)

        return self.run(model.prior, log_joint, batch=len(x), generator=generator)

    def log_partition(
        self,
        initial: GenerativeModel,
        energy: Callable[[Tensor], Tensor],
        *,
        generator: torch.Generator | None = None,
    ) -> AISResult:
        """log Ẑ for Z = ∫ exp(−E(x)) dx with the K chains started from ``initial`` (B = 1).

        For an ``EBM``: ``ais.log_partition(ebm.init, ebm.energy)``.
        """
        return self.run(initial, lambda z: -energy(z), batch=1, generator=generator)


def _annealed_energy(
    initial: GenerativeModel, log_target: Callable[[Tensor], Tensor], beta: float
) -> Callable[[Tensor], Tensor]:
    """E_β(z) = −(1 − β) log p_0(z) − β log f(z)."""

    def energy(z: Tensor) -> Tensor:
        return -(1.0 - beta) * initial.log_prob(z) - beta * log_target(z)

    return energy
