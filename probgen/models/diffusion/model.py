"""The diffusion GenerativeModel: a denoiser, an objective, a default sampler and a likelihood.

    loss(x)      the objective (L_simple, DSM with λ(t), or the VLB) on a batch
    sample(n)    the reverse process from the prior with any ``DiffusionSampler``
    log_prob(x)  the probability-flow ODE (EXACT with the exact divergence,
                 ESTIMATE with Hutchinson's) or the VLB (BOUND)

Conditional (``condition_spec`` set): the denoiser reads condition features
(``guidance.condition_features``); ``loss(x, condition=c)`` trains with
condition dropout p_uncond, so the model also defines p(x) (the null
condition, used whenever condition=None: ``unconditional_mode``);
``log_prob(x, condition=c)`` is log p_θ(x | c) by the same likelihood
method; ``sample(n, condition=c, guidance=w)`` runs any sampler on the
classifier-free guided denoiser, and ``classifier=`` adds classifier
guidance (``probgen.models.diffusion.guidance``).

Discrete data (``levels`` = K, values 0…K-1) is modelled on [-1, 1]: the
loss and the ODE see the dequantized y = (x + u)/K (``probgen.data.dequantize``)
mapped to 2y − 1, and ``log_prob`` returns log p(2y − 1) + D log(2/K), which
bounds log P(x) from below in expectation over u (the library's convention,
read with ``dequantized=False``); the VLB uses bin centres (2x + 1)/K − 1 and
the discretized Gaussian decoder, a bound on log P(x) itself.

Reference: Ho, Jain & Abbeel (2020); Song et al. (2021), "Score-based
generative modeling through SDEs"; Ho & Salimans (2022), "Classifier-free
diffusion guidance".
"""

from __future__ import annotations

import abc
import inspect
import itertools
import math

import torch
from torch import Tensor

from probgen.conditions import ConditionSpec
from probgen.core import DataInitialized, GenerativeModel, InvalidInput, Likelihood
from probgen.data.dequantize import uniform_dequantize
from probgen.models.diffusion.guidance import (
    Classifier,
    ClassifierFreeGuidance,
    ClassifierGuidance,
    Conditioned,
    condition_features,
    drop_conditions,
)
from probgen.models.diffusion.likelihood import (
    DiscretizedGaussianDecoder,
    Divergence,
    ExactDivergence,
    GaussianDecoder,
    ode_log_likelihood,
    variational_bound,
)
from probgen.models.diffusion.objectives import NoiseMatching, Objective
from probgen.models.diffusion.parametrizations import Denoiser, NetworkDenoiser
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
    """The probability-flow ODE with ``divergence`` (exact by default); ``ode_log_likelihood``.

    ``grad=True`` keeps the graph of the solve, so ``log_prob`` can be
    differentiated in x and in the parameters (maximum-likelihood fine-tuning).
    """

    def __init__(
        self,
        divergence: Divergence | None = None,
        rtol: float = 1e-5,
        atol: float = 1e-5,
        grad: bool = False,
    ) -> None:
        self.divergence = divergence if divergence is not None else ExactDivergence()
        self.kind = self.divergence.kind
        self.rtol, self.atol = float(rtol), float(atol)
        self.grad = bool(grad)

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
            denoiser,
            y,
            self.divergence,
            rtol=self.rtol,
            atol=self.atol,
            generator=generator,
            grad=self.grad,
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
        condition: what c of p(x | c) is (``ConditionSpec``), or None for p(x).
            The denoiser must then take ``condition=`` features (B, width + 1)
            (``NetworkDenoiser`` around a network built with ``condition=width + 1``).
        p_uncond: condition dropout in ``loss`` (Ho & Salimans 2022 use 0.1–0.2);
            with p_uncond > 0 the model also defines p(x) (``unconditional_mode``).
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
        condition: ConditionSpec | None = None,
        p_uncond: float = 0.1,
    ) -> None:
        super().__init__(event_shape)
        if levels is not None and levels < 2:
            raise InvalidInput(f"levels: expected None or an integer >= 2, got {levels}")
        if not 0.0 <= p_uncond < 1.0:
            raise InvalidInput(f"p_uncond: expected a probability in [0, 1), got {p_uncond}")
        if condition is not None:
            if "condition" not in inspect.signature(denoiser.forward).parameters:
                raise InvalidInput(
                    f"denoiser: a conditional Diffusion needs a denoiser taking condition= "
                    f"features, got {type(denoiser).__name__}"
                )
            self.condition_spec = condition
            self.unconditional_mode = p_uncond > 0
        self.p_uncond = float(p_uncond)
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

    @torch.no_grad()
    def initialize_from_data(self, x: Tensor, condition: Tensor | None = None) -> None:
        """Fit a data-initialised reference of the denoiser (``reference.MixtureReference``)
        to training examples x (N, *event_shape) in the model's scale; without one, nothing.

        ``DataInitialized``, called once by ``build_model``; conditions are passed on.
        """
        reference = self.denoiser.reference if isinstance(self.denoiser, NetworkDenoiser) else None
        if not isinstance(reference, DataInitialized):
            return
        x = self._to_model_scale(self._check(x)).to(self._like())
        reference.initialize_from_data(x, self._condition(condition, len(x)))

    def conditioned(self, c: Tensor | None, rows: int, like: Tensor) -> Denoiser:
        """The denoiser of p_t(x | c) for ``rows`` rows, of p_t(x) for c = None (the null
        condition), or the unconditional model's own denoiser."""
        if self.condition_spec is None:
            return self.denoiser
        return Conditioned(self.denoiser, condition_features(self.condition_spec, c, rows, like))

    def loss(self, x: Tensor, player: str = "model", condition: Tensor | None = None) -> Tensor:
        """The objective's mean over the batch x (B, *event_shape), conditions c (B, …).

        A conditional model trains with condition dropout: each row's condition is
        replaced by the null one with probability ``p_uncond`` (Ho & Salimans 2022,
        Algorithm 1); with condition=None every row is null (p(x) only).
        """
        self._check_player(player)
        x = self._to_model_scale(self._check(x))
        c = self._condition(condition, len(x))
        denoiser = self.denoiser
        if self.condition_spec is not None:
            h = condition_features(self.condition_spec, c, len(x), x)
            denoiser = Conditioned(self.denoiser, drop_conditions(h, self.p_uncond))
        return self.objective(denoiser, x).mean()

    def log_prob(
        self,
        x: Tensor,
        condition: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """log p_θ(x | c) (or log p_θ(x)) per example (B,) in nats, by ``likelihood_method``.

        Its draws (Hutchinson probes, the VLB's times and noise) come from ``generator``.
        A conditional model given no condition scores x under its unconditional mode.
        """
        x = self._check(x)
        c = self._condition(condition, len(x))
        denoiser = self.conditioned(c, len(x), self._like())
        return self.likelihood_method(denoiser, x, self.levels, generator)

    def guided(
        self,
        n: int,
        condition: Tensor | None = None,
        guidance: float = 0.0,
        classifier: Classifier | None = None,
        classifier_scale: float = 1.0,
        classifier_labels: int | Tensor | None = None,
    ) -> Denoiser:
        """The denoiser ``sample`` runs for ``n`` rows: conditioned, and guided if asked.

        ``guidance`` w > 0 is classifier-free guidance (a conditional model with an
        unconditional mode, and a condition); ``classifier`` adds
        ``classifier_scale`` · ∇ log p(y | x_t) with target classes y =
        ``classifier_labels`` (one label or (n,)), by default the condition of a
        class-conditional model. The classifier reads x_t in the model's own
        scale ([-1, 1] for data with levels; the standardised space under
        ``Standardized``). See ``probgen.models.diffusion.guidance``.
        """
        c = self._condition(condition, n, expand=True)
        like = self._like()
        denoiser = self.conditioned(c, n, like)
        if guidance != 0.0:
            if c is None or not self.unconditional_mode:
                raise InvalidInput(
                    "guidance: classifier-free guidance needs a conditional model with an "
                    "unconditional mode (trained with p_uncond > 0) and a condition"
                )
            null = self.conditioned(None, n, like)
            denoiser = ClassifierFreeGuidance(denoiser, null, guidance)
        if classifier is None:
            if classifier_labels is not None:
                raise InvalidInput("classifier_labels: given without a classifier")
            return denoiser
        if classifier_labels is None:
            spec = self.condition_spec
            if c is None or spec is None or not spec.is_classes:
                raise InvalidInput(
                    "classifier: pass classifier_labels= (the target classes), or a class "
                    "condition to a class-conditional model"
                )
            classifier_labels = c
        if isinstance(classifier_labels, int):
            classifier_labels = torch.full((n,), classifier_labels, dtype=torch.long)
        if isinstance(classifier_labels, Tensor) and classifier_labels.dim() == 0:
            classifier_labels = classifier_labels.expand(n)
        if not isinstance(classifier_labels, Tensor) or classifier_labels.shape != (n,):
            raise InvalidInput(f"classifier_labels: expected one label or ({n},) labels")
        if len(classifier_labels) and int(classifier_labels.min()) < 0:
            raise InvalidInput("classifier_labels: class labels must be >= 0")
        labels = classifier_labels.to(self.device)
        return ClassifierGuidance(denoiser, classifier, labels, classifier_scale)

    def run_sampler(
        self,
        n: int,
        condition: Tensor | None = None,
        sampler: DiffusionSampler | str | None = None,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        *,
        guidance: float = 0.0,
        classifier: Classifier | None = None,
        classifier_scale: float = 1.0,
        classifier_labels: int | Tensor | None = None,
    ) -> SampleResult:
        """Samples (n, *event_shape) and the number of network evaluations used.

        ``sampler`` is a ``DiffusionSampler`` or a name registered in
        ``probgen.registry.SAMPLERS`` (built with its defaults). ``condition``
        and the guidance options are those of ``guided``; with classifier-free
        guidance every step evaluates the network twice (at c and at ∅) and
        ``n_evaluations`` counts both.
        """
        if n < 1:
            raise InvalidInput(f"n: expected a positive integer, got {n}")
        sampler = self._resolve(sampler)
        denoiser = self.guided(
            n, condition, guidance, classifier, classifier_scale, classifier_labels
        )
        like = self._like()
        x1 = self.process.prior_sample((n, *self.event_shape), generator, like=like)
        with torch.no_grad():
            result = sampler.run(denoiser, x1, steps or self.steps, generator=generator)
        if self.levels is None:
            return result
        levels = ((result.samples + 1.0) * 0.5 * self.levels).floor().clamp(0, self.levels - 1)
        return SampleResult(levels, None, result.n_evaluations, result.trajectory)

    def sample(
        self,
        n: int,
        condition: Tensor | None = None,
        sampler: DiffusionSampler | str | None = None,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        *,
        guidance: float = 0.0,
        classifier: Classifier | None = None,
        classifier_scale: float = 1.0,
        classifier_labels: int | Tensor | None = None,
    ) -> Tensor:
        """``n`` samples (n, *event_shape) of p_θ(· | c) (or p_θ), with ``sampler`` and ``steps``.

        ``guidance`` = w is classifier-free guidance, ε̃ = (1 + w) ε̂(x, c) − w ε̂(x, ∅);
        ``classifier`` (x_t, t) -> log p(y | x_t) (B, K) adds classifier guidance
        of scale ``classifier_scale`` (see ``guided``).
        """
        return self.run_sampler(
            n,
            condition,
            sampler,
            steps,
            generator,
            guidance=guidance,
            classifier=classifier,
            classifier_scale=classifier_scale,
            classifier_labels=classifier_labels,
        ).samples

    def _like(self) -> Tensor:
        """An empty tensor of the model's floating dtype and device."""
        tensors = itertools.chain(self.parameters(), self.buffers())
        dtype = next((p.dtype for p in tensors if p.is_floating_point()), None)
        return torch.empty(0, device=self.device, dtype=dtype or torch.get_default_dtype())

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
