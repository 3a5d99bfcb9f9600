"""The diffusion GenerativeModel: a denoiser, an objective, a default sampler and a likelihood.

    loss(x)      the objective (L_simple, DSM with λ(t), or the VLB) on a batch
    sample(n)    the reverse process from the prior with any ``DiffusionSampler``
    log_prob(x)  the probability-flow ODE (EXACT with the exact divergence,
                 ESTIMATE with Hutchinson's) or the VLB (BOUND)

Discrete data (``levels`` = K, values 0…K-1) is modelled on [-1, 1]: the
loss and the ODE see the dequantized y = (x + u)/K (``probgen.data.dequantize``)
mapped to 2y − 1, and ``log_prob`` returns log p(2y − 1) + D log(2/K), which
bounds log P(x) from below in expectation over u (the library's convention,
read with ``dequantized=False``); the VLB uses bin centres (2x + 1)/K − 1 and
the discretized Gaussian decoder, a bound on log P(x) itself.

Reference: Ho, Jain & Abbeel (2020); Song et al. (2021), "Score-based
generative modeling through SDEs".
"""

from __future__ import annotations

import abc
import itertools
import math

import torch
from torch import Tensor

from probgen.core import GenerativeModel, InvalidInput, Likelihood
from probgen.data.dequantize import uniform_dequantize
from probgen.models.diffusion.likelihood import (
    DiscretizedGaussianDecoder,
    Divergence,
    ExactDivergence,
    GaussianDecoder,
    ode_log_likelihood,
    variational_bound,
)
from probgen.models.diffusion.objectives import NoiseMatching, Objective
from probgen.models.diffusion.parametrizations import Denoiser
from probgen.models.diffusion.processes import ForwardProcess
from probgen.models.diffusion.samplers import Ancestral, DiffusionSampler, sampler_by_name
from probgen.sampling import SampleResult

__all__ = ["Diffusion", "LikelihoodMethod", "ODELikelihood", "VLBLikelihood"]


class LikelihoodMethod(abc.ABC):
    """How ``Diffusion.log_prob`` computes log p_θ(x) of (B, *event) -> (B,), and what it is."""

    kind: Likelihood

    @abc.abstractmethod
    def __call__(
        self,
        denoiser: Denoiser,
        x: Tensor,
        levels: int | None,
        generator: torch.Generator | None,
    ) -> Tensor:
        """log p_θ(x) (or its estimate / lower bound) for data x in the model's own scale."""


class ODELikelihood(LikelihoodMethod):
    """The probability-flow ODE with ``divergence`` (exact by default); ``ode_log_likelihood``."""

    def __init__(
        self, divergence: Divergence | None = None, rtol: float = 1e-5, atol: float = 1e-5
    ) -> None:
        self.divergence = divergence if divergence is not None else ExactDivergence()
        self.kind = self.divergence.kind
        self.rtol, self.atol = float(rtol), float(atol)

    def __call__(
        self,
        denoiser: Denoiser,
        x: Tensor,
        levels: int | None,
        generator: torch.Generator | None,
    ) -> Tensor:
        y = x if levels is None else 2.0 * uniform_dequantize(x, levels, generator) - 1.0
        offset = 0.0 if levels is None else x[0].numel() * math.log(2.0 / levels)
        return offset + ode_log_likelihood(
            denoiser, y, self.divergence, rtol=self.rtol, atol=self.atol, generator=generator
        )


class VLBLikelihood(LikelihoodMethod):
    """−L_VLB on a grid of ``steps`` intervals: a lower bound on log p_θ(x), detached.

    Evaluated without a graph, like the ODE likelihood (K network calls would
    otherwise keep K graphs alive); train on the bound with ``VariationalBound``.
    """

    kind = Likelihood.BOUND

    def __init__(self, steps: int = 1000) -> None:
        self.steps = int(steps)

    def __call__(
        self,
        denoiser: Denoiser,
        x: Tensor,
        levels: int | None,
        generator: torch.Generator | None,
    ) -> Tensor:
        with torch.no_grad():
            if levels is None:
                return -variational_bound(denoiser, x, self.steps, GaussianDecoder(), generator)
            centres = (2.0 * x + 1.0) / levels - 1.0
            decoder = DiscretizedGaussianDecoder(levels)
            return -variational_bound(denoiser, centres, self.steps, decoder, generator)


class Diffusion(GenerativeModel):
    """A diffusion / score-based model p_θ(x) defined by a denoiser under a forward process.

    Args:
        event_shape: shape of one example.
        denoiser: the network with its parametrization (``NoisePrediction`` …),
            which also holds the forward process.
        objective: the training loss; default ``NoiseMatching()`` (L_simple).
        sampler: the default sampler of ``sample``; default ``Ancestral()``.
        steps: the default number of sampler steps.
        likelihood_method: ``ODELikelihood()`` (default, EXACT), ``ODELikelihood(
            HutchinsonDivergence())`` (ESTIMATE, for high dimension) or
            ``VLBLikelihood()`` (BOUND).
        levels: K for discrete data in {0, …, K-1}, ``None`` for continuous data.
    """

    def __init__(
        self,
        event_shape: tuple[int, ...],
        denoiser: Denoiser,
        objective: Objective | None = None,
        sampler: DiffusionSampler | None = None,
        steps: int = 100,
        likelihood_method: LikelihoodMethod | None = None,
        levels: int | None = None,
    ) -> None:
        super().__init__(event_shape)
        if levels is not None and levels < 2:
            raise InvalidInput(f"levels: expected None or an integer >= 2, got {levels}")
        self.denoiser = denoiser
        self.objective = objective if objective is not None else NoiseMatching()
        self.sampler = sampler if sampler is not None else Ancestral()
        self.steps = int(steps)
        self.likelihood_method = (
            likelihood_method if likelihood_method is not None else ODELikelihood()
        )
        self.levels = levels
        kind = self.likelihood_method.kind
        # a dequantized density bounds the discrete log-mass only in expectation: a bound
        self.likelihood = Likelihood.BOUND if levels is not None else kind

    @property
    def handles_levels(self) -> bool:
        """Whether the model dequantizes discrete data itself (``levels`` given)."""
        return self.levels is not None

    @property
    def process(self) -> ForwardProcess:
        """The forward process of the denoiser."""
        return self.denoiser.process

    def _to_model_scale(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.levels is None:
            return x
        return 2.0 * uniform_dequantize(x, self.levels, generator) - 1.0

    def loss(self, x: Tensor, player: str = "model") -> Tensor:
        """The objective's mean over the batch x (B, *event_shape)."""
        self._check_player(player)
        return self.objective(self.denoiser, self._to_model_scale(self._check(x))).mean()

    def log_prob(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """log p_θ(x) per example (B,) in nats, by ``likelihood_method`` (see ``likelihood``).

        Its draws (Hutchinson probes, the VLB's times and noise) come from ``generator``.
        """
        x = self._check(x)
        return self.likelihood_method(self.denoiser, x, self.levels, generator)

    def run_sampler(
        self,
        n: int,
        sampler: DiffusionSampler | str | None = None,
        steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> SampleResult:
        """Samples (n, *event_shape) and the number of network evaluations used.

        ``sampler`` is a ``DiffusionSampler`` or a name registered in
        ``probgen.registry.SAMPLERS`` (built with its defaults).
        """
        if n < 1:
            raise InvalidInput(f"n: expected a positive integer, got {n}")
        sampler = self._resolve(sampler)
        tensors = itertools.chain(self.parameters(), self.buffers())
        dtype = next((p.dtype for p in tensors if p.is_floating_point()), None)
        like = torch.empty(0, device=self.device, dtype=dtype or torch.get_default_dtype())
        x1 = self.process.prior_sample((n, *self.event_shape), generator, like=like)
        with torch.no_grad():
            result = sampler.run(self.denoiser, x1, steps or self.steps, generator=generator)
        if self.levels is None:
            return result
        levels = ((result.samples + 1.0) * 0.5 * self.levels).floor().clamp(0, self.levels - 1)
        return SampleResult(levels, None, result.n_evaluations, result.trajectory)

    def sample(
        self,
        n: int,
        sampler: DiffusionSampler | str | None = None,
        steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``n`` samples (n, *event_shape) with ``sampler`` (default the model's) and ``steps``."""
        return self.run_sampler(n, sampler, steps, generator).samples

    def _resolve(self, sampler: DiffusionSampler | str | None) -> DiffusionSampler:
        if sampler is None:
            return self.sampler
        if isinstance(sampler, str):
            sampler = sampler_by_name(sampler)
        if not isinstance(sampler, DiffusionSampler):
            raise InvalidInput(
                f"sampler: expected a diffusion sampler, got {type(sampler).__name__}"
            )
        return sampler
