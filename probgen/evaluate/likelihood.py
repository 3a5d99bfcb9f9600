"""Likelihood-based evaluation: NLL and bits/dim through ``log_prob`` or a better estimator.

Every number is an ``Estimate`` labelled with what the model's ``log_prob``
means (``model.likelihood``), so an ELBO is never read as a log-likelihood:

    exact         -log p_θ(x) itself
    estimate      an unbiased stochastic estimate of -log p_θ(x)
    bound         an upper bound on -log p_θ(x) (from a lower bound on log p_θ(x))
    unnormalized  E_θ(x) = -log p_θ(x) - log Z_θ, off by the unknown log Z_θ

The standard error is that of the mean over the evaluated examples.

Where ``log_prob`` is only a bound or has no density, an ``estimator`` gives a
better number through the same calls: ``ELBOBound(k)`` and ``IWAEBound(k)`` for
models with ``elbo`` / ``iwae_bound`` (VAEs; Burda, Grosse & Salakhutdinov 2016,
"Importance weighted autoencoders"), ``AISBound(ais, observation)`` for decoder
models and GAN generators under a Gaussian observation model (Wu et al. 2017,
"On the quantitative analysis of decoder-based generative models"). Each is a
(stochastic) lower bound on log p_θ(x), labelled ``bound``. For an
unnormalised model, ``normalized_nll`` adds an estimate of log Z_θ (from
``AIS.log_partition``) to the mean energy.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from probgen.core import (
    Estimate,
    GenerativeModel,
    IntractableLikelihood,
    InvalidInput,
    Likelihood,
    call_log_prob,
)
from probgen.data.dequantize import bits_per_dim as _bits_per_dim_convention
from probgen.evaluate.ais import AIS, DecoderLikelihood, LatentVariableModel

__all__ = [
    "AISBound",
    "ELBOBound",
    "IWAEBound",
    "LogLikelihoodEstimator",
    "ModelLogProb",
    "bits_per_dim",
    "log_probs",
    "nll",
    "normalized_nll",
    "with_log_partition",
]


class LogLikelihoodEstimator(abc.ABC):
    """A per-example estimate of log p_θ(x): (B, *event_shape) -> (B,), with a label."""

    @abc.abstractmethod
    def kind(self, model: GenerativeModel) -> str:
        """What the estimate is for this model: an ``Estimate.kind``."""

    @abc.abstractmethod
    def __call__(
        self,
        model: GenerativeModel,
        x: Tensor,
        generator: torch.Generator | None,
        condition: Tensor | None = None,
    ) -> Tensor:
        """The estimate for each row of x (B, *event_shape) given its condition, shape (B,)."""


class ModelLogProb(LogLikelihoodEstimator):
    """The model's own ``log_prob``, labelled ``model.likelihood`` (the default).

    A ``log_prob`` that draws noise gets the ``generator`` (``call_log_prob``).
    """

    def kind(self, model: GenerativeModel) -> str:
        if model.likelihood is Likelihood.NONE:
            raise IntractableLikelihood(
                f"{type(model).__name__} has no likelihood (likelihood = none); "
                "use a sample-based metric such as mmd or energy_distance, or AISBound "
                "with a GaussianObservation"
            )
        return model.likelihood.value

    def __call__(
        self,
        model: GenerativeModel,
        x: Tensor,
        generator: torch.Generator | None,
        condition: Tensor | None = None,
    ) -> Tensor:
        return call_log_prob(model, x, generator, condition)


class ELBOBound(LogLikelihoodEstimator):
    """The evidence lower bound with k draws, E_q[log p_θ(x|z)] − KL(q_φ(z|x) ‖ p(z)).

    Needs ``model.elbo(x, k, generator=...)`` (a VAE). Reference: Kingma &
    Welling 2014, "Auto-encoding variational Bayes".
    """

    def __init__(self, k: int = 1) -> None:
        self.k = _positive("k", k)

    def kind(self, model: GenerativeModel) -> str:
        _require(model, "elbo")
        return "bound"

    def __call__(
        self,
        model: GenerativeModel,
        x: Tensor,
        generator: torch.Generator | None,
        condition: Tensor | None = None,
    ) -> Tensor:
        if condition is None:
            return model.elbo(x, self.k, generator=generator)
        return model.elbo(x, self.k, generator=generator, condition=condition)


class IWAEBound(LogLikelihoodEstimator):
    """One draw of the importance-weighted bound L_K = E[log (1/K) Σ_k p_θ(x, z_k)/q_φ(z_k|x)].

    L_1 = ELBO ≤ L_K ≤ L_{K+1} ≤ log p_θ(x), L_K → log p_θ(x) as K → ∞. Needs
    ``model.iwae_bound(x, k, generator)`` (a VAE). Reference: Burda, Grosse &
    Salakhutdinov 2016, "Importance weighted autoencoders", Theorem 1.
    """

    def __init__(self, k: int = 1000) -> None:
        self.k = _positive("k", k)

    def kind(self, model: GenerativeModel) -> str:
        _require(model, "iwae_bound")
        return "bound"

    def __call__(
        self,
        model: GenerativeModel,
        x: Tensor,
        generator: torch.Generator | None,
        condition: Tensor | None = None,
    ) -> Tensor:
        if condition is None:
            return model.iwae_bound(x, self.k, generator)
        return model.iwae_bound(x, self.k, generator, condition=condition)


class AISBound(LogLikelihoodEstimator):
    """log p̂(x) by annealed importance sampling from the prior to the posterior.

    A stochastic lower bound, E[log p̂(x)] ≤ log p(x) (see ``probgen.evaluate.ais``).

    Args:
        ais: the sampler (schedule, kernel, chains).
        observation: model -> ``LatentVariableModel``: ``DecoderLikelihood`` (the
            default, for VAEs) or e.g. ``lambda gan: GaussianObservation(gan.generator, 0.1)``.
    """

    def __init__(
        self,
        ais: AIS | None = None,
        observation: Callable[[nn.Module], LatentVariableModel] = DecoderLikelihood,
    ) -> None:
        self.ais = AIS() if ais is None else ais
        self.observation = observation

    def kind(self, model: GenerativeModel) -> str:
        return "bound"

    def __call__(
        self,
        model: GenerativeModel,
        x: Tensor,
        generator: torch.Generator | None,
        condition: Tensor | None = None,
    ) -> Tensor:
        _unconditional_only(self, condition)
        return self.ais.log_likelihood(
            self.observation(model), x, generator=generator
        ).log_normalizer


def _unconditional_only(estimator: LogLikelihoodEstimator, condition: Tensor | None) -> None:
    if condition is not None:
        raise InvalidInput(
            f"{type(estimator).__name__} estimates log p(x) of unconditional models only; "
            "score a conditional model by its log_prob (ModelLogProb)"
        )


def _positive(name: str, k: int) -> int:
    if not (isinstance(k, int) and k >= 1):
        raise InvalidInput(f"{name}: expected an integer >= 1, got {k!r}")
    return k


def _require(model: GenerativeModel, method: str) -> None:
    if not callable(getattr(model, method, None)):
        raise IntractableLikelihood(
            f"{type(model).__name__} has no {method}(); this estimator applies to "
            "latent-variable models such as the VAE"
        )


def log_probs(
    model: GenerativeModel,
    x: Tensor,
    batch_size: int = 1024,
    *,
    estimator: LogLikelihoodEstimator | None = None,
    generator: torch.Generator | None = None,
    condition: Tensor | None = None,
) -> Tensor:
    """log p_θ(x | c) over a whole data set ``x`` (N, *event_shape), in batches.

    ``condition`` holds the conditions of the rows of x (N,) or (N, *shape)
    for a conditional model (None: p(x)).

    By ``model.log_prob`` unless an ``estimator`` is given (draws from
    ``generator``). Evaluated without parameter gradients, in eval mode (the
    training mode is restored), on the model's device; floating-point data is
    cast to the model's floating dtype, integer data (tokens, pixels) is passed
    as is. Returns (N,) in nats, on the model's device.

    Raises ``IntractableLikelihood`` when ``model.likelihood`` is NONE (a GAN)
    and no estimator applies.
    """
    estimator = ModelLogProb() if estimator is None else estimator
    estimator.kind(model)
    if batch_size < 1:
        raise InvalidInput(f"batch_size must be positive, got {batch_size}")
    dtype = _floating_dtype(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = [
                estimator(
                    model,
                    _to_model(x[i : i + batch_size], model.device, dtype),
                    generator,
                    None if condition is None else condition[i : i + batch_size].to(model.device),
                )
                for i in range(0, len(x), batch_size)
            ]
    finally:
        model.train(was_training)
    return torch.cat(out)


def nll(
    model: GenerativeModel,
    x: Tensor,
    batch_size: int = 1024,
    *,
    estimator: LogLikelihoodEstimator | None = None,
    generator: torch.Generator | None = None,
) -> Estimate:
    """Mean negative log-likelihood in nats per example, with its standard error.

    NLL = -1/N Σ_n log p_θ(x_n) over x of shape (N, *event_shape); ``kind`` is
    ``model.likelihood.value`` ("exact", "estimate", "bound" = an upper bound on
    the NLL, "unnormalized" = the mean energy, off by log Z_θ), or that of the
    ``estimator`` (e.g. ``IWAEBound(5000)``: "bound").

    Raises ``IntractableLikelihood`` when the model has no likelihood.
    """
    estimator = ModelLogProb() if estimator is None else estimator
    values = log_probs(model, x, batch_size, estimator=estimator, generator=generator)
    return Estimate.from_samples(-values, kind=estimator.kind(model))


def normalized_nll(
    model: GenerativeModel, x: Tensor, log_partition: Estimate, batch_size: int = 1024
) -> Estimate:
    """NLL of an unnormalised model, 1/N Σ_n E_θ(x_n) + log Ẑ_θ, given an estimate of log Z_θ.

    ``model.log_prob`` must return -E_θ(x) (likelihood UNNORMALIZED); see
    ``with_log_partition`` for the error and the bias.
    """
    if model.likelihood is not Likelihood.UNNORMALIZED:
        raise InvalidInput(
            f"normalized_nll: expected an unnormalized model, got likelihood = "
            f"{model.likelihood.value}"
        )
    energy = Estimate.from_samples(-log_probs(model, x, batch_size))
    return with_log_partition(energy, log_partition)


def with_log_partition(mean: Estimate, log_partition: Estimate) -> Estimate:
    """``mean`` + log Ẑ_θ: turns a mean energy (or energy gap) into a normalised figure.

    The standard errors add in quadrature; the kind is "estimate". With log Ẑ
    from AIS, E[log Ẑ] ≤ log Z_θ, so the NLL is biased low (an optimistic
    score) by the AIS gap.
    """
    return Estimate(
        value=mean.value + log_partition.value,
        stderr=math.hypot(mean.stderr, log_partition.stderr),
        kind="estimate",
    )


def bits_per_dim(
    model: GenerativeModel,
    x: Tensor,
    levels: int | None = None,
    *,
    dequantized: bool | None = None,
    batch_size: int = 1024,
    estimator: LogLikelihoodEstimator | None = None,
    generator: torch.Generator | None = None,
) -> Estimate:
    """Mean bits per dimension of ``x`` (N, *event_shape) under ``model``, with its stderr.

    Applies probgen's one convention, ``probgen.data.dequantize.bits_per_dim``,
    to each example's log-likelihood and averages. With D entries per example:
    continuous data (``levels`` None): bpd = -log p_θ(x) / (D ln 2); data with
    ``levels`` K: ``dequantized=False`` reads ``log_prob`` as a log-probability
    mass log P_θ(x), bpd = -log P_θ(x) / (D ln 2); ``dequantized=True`` reads it
    as a density on y = (x + u)/K ∈ [0, 1)^D (pass the dequantized y as ``x``),
    bpd = -(log p_θ(y) - D log K) / (D ln 2) (Theis, van den Oord & Bethge 2016,
    "A note on the evaluation of generative models"). The ``kind`` is that of
    the model's likelihood, or of the ``estimator``, as in ``nll``.
    """
    estimator = ModelLogProb() if estimator is None else estimator
    dim = int(torch.Size(model.event_shape).numel())
    values = log_probs(model, x, batch_size, estimator=estimator, generator=generator)
    per_example = _bits_per_dim_convention(values, dim, levels, dequantized=dequantized)
    return Estimate.from_samples(per_example, kind=estimator.kind(model))


def _floating_dtype(model: GenerativeModel) -> torch.dtype | None:
    for t in (*model.parameters(), *model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return None


def _to_model(x: Tensor, device: torch.device, dtype: torch.dtype | None) -> Tensor:
    if x.is_floating_point() and dtype is not None:
        return x.to(device=device, dtype=dtype)
    return x.to(device=device)
