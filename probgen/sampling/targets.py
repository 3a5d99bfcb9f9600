"""What a sampler samples: an unnormalised density given by its energy or its score.

Every sampler sees one interface, ``Target``: ``score(x) = ∇_x log p(x) =
-∇_x E(x)`` and, when known, ``energy(x) = E(x)`` with p(x) ∝ exp(-E(x)).
``Energy`` (and ``LogDensity``) derive the score by autograd; ``Score`` wraps
a score function directly and has no energy, so only unadjusted samplers
accept it. Shapes: ``x`` is (B, *event_shape); energies are (B,), scores are
shaped like ``x``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import torch
from torch import Tensor

from probgen.core import InvalidInput, ProbgenError

__all__ = [
    "Energy",
    "LogDensity",
    "NoEnergy",
    "NoiseConditionalScore",
    "Score",
    "Target",
    "check_state",
]


class NoEnergy(ProbgenError, TypeError):
    """A Metropolis-adjusted sampler was given a target known only through its score."""


def check_state(x: object, name: str = "x") -> Tensor:
    """Validate a batch of chain states: a floating-point tensor (B, *event_shape)."""
    if not isinstance(x, Tensor):
        raise InvalidInput(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 1 or x.shape[0] < 1:
        raise InvalidInput(
            f"{name}: expected shape (B, *event_shape) with B ≥ 1, got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise InvalidInput(f"{name}: expected a floating-point tensor, got {x.dtype}")
    return x


class Target(abc.ABC):
    """An unnormalised density p(x) ∝ exp(-E(x)) seen through E and ∇ log p."""

    @abc.abstractmethod
    def score(self, x: Tensor) -> Tensor:
        """∇_x log p(x) = -∇_x E(x), shape (B, *event_shape)."""

    def energy(self, x: Tensor) -> Tensor:
        """E(x) = -log p(x) + const, shape (B,); raises ``NoEnergy`` when unknown."""
        raise NoEnergy(
            f"{type(self).__name__} defines only a score; Metropolis-adjusted samplers "
            "(MALA, HMC) need an energy: wrap E(x) in Energy or log p(x) in LogDensity"
        )

    def energy_and_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(E(x) (B,), ∇_x log p(x) (B, *event_shape)) from one evaluation where possible."""
        return self.energy(x), self.score(x)


class Energy(Target):
    """p(x) ∝ exp(-E(x)) for a differentiable energy ``fn: (B, *event_shape) -> (B,)``.

    The score -∇_x E(x) comes from autograd with respect to ``x`` only, so the
    parameters of an energy network receive no gradient from sampling.
    """

    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        self.fn = fn

    def energy(self, x: Tensor) -> Tensor:
        return _per_example(self.fn(x), x, type(self).__name__)

    def energy_and_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            e = self.energy(x)
            (grad,) = torch.autograd.grad(e.sum(), x)
        return e.detach(), -grad

    def score(self, x: Tensor) -> Tensor:
        return self.energy_and_score(x)[1]


class LogDensity(Energy):
    """p(x) ∝ exp(log p̃(x)) for a differentiable ``log_prob: (B, *event_shape) -> (B,)``.

    E(x) = -log p̃(x); e.g. ``LogDensity(mixture.log_prob)`` for an analytic law.
    """

    def __init__(self, log_prob: Callable[[Tensor], Tensor]) -> None:
        super().__init__(lambda x: -log_prob(x))


class Score(Target):
    """A target known only by its score ``fn: (B, *event_shape) -> (B, *event_shape)``."""

    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        self.fn = fn

    def score(self, x: Tensor) -> Tensor:
        s = self.fn(x)
        if s.shape != x.shape:
            raise InvalidInput(
                f"{type(self).__name__}: the score must have the shape of x "
                f"{tuple(x.shape)}, got {tuple(s.shape)}"
            )
        return s


class NoiseConditionalScore:
    """A family of scores s(x, σ) ≈ ∇_x log p_σ(x), p_σ = p * N(0, σ² I).

    ``fn(x, sigma)`` takes x (B, *event_shape) and σ as a tensor (B,) and
    returns (B, *event_shape); ``at(σ)`` is the ``Score`` target of one level.

    Reference: Song & Ermon (2019), "Generative modeling by estimating
    gradients of the data distribution".
    """

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor]) -> None:
        self.fn = fn

    def at(self, sigma: float) -> Score:
        """The target p_σ at one noise level σ."""

        def score(x: Tensor) -> Tensor:
            return self.fn(x, torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device))

        return Score(score)


def _per_example(e: Tensor, x: Tensor, who: str) -> Tensor:
    """Accept energies (B,) or (B, 1); anything else is a clear error."""
    if e.dim() == 2 and e.shape[1] == 1:
        e = e[:, 0]
    if e.shape != (x.shape[0],):
        raise InvalidInput(
            f"{who}: the energy must return one value per example, shape ({x.shape[0]},), "
            f"got {tuple(e.shape)}"
        )
    return e
