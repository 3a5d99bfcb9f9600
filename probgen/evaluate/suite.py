"""One entry point scoring any model on any data set: ``evaluate_model``.

Each metric is an object that says whether it means something for a model on
a data set (``why_not``: None, or the one-line reason it is left out; from the
model's likelihood kind and the data set's spec, truth and ``categorical``) and
returns named results; ``evaluate_model`` draws the model's samples once,
timing them and counting network evaluations, runs every metric that applies,
and records the reason for every result it leaves out (``Results.skipped``):

    NLL               nll (and bpd on discrete data): log_prob, an estimator, or E + log Ẑ
    IWAENLL           nll_iwae: the IWAE-K bound (models with ``iwae_bound``, e.g. VAEs)
    KLDataModel       kl_data_model   = KL(p_data ‖ p_θ)       (data with a known law)
    KLModelData       kl_model_data   = KL(p_θ ‖ p_data)       (exact densities only)
    SmoothedKL        kl_model_data_smoothed = KL(p_θ∗N_h ‖ p_data∗N_h) ≤ KL(p_θ ‖ p_data)
    SampleDistances   mmd, energy_distance, sliced_wasserstein on raw samples (not tokens)
    FeatureDistances  fid (Fréchet distance), kid on features (not raw tokens)
    PrecisionRecall   precision, recall, density, coverage on features (not raw tokens)
    ModeCoverage      modes, high_quality, reverse_kl (data from a Gaussian mixture)
    GenerativeClassifier  classifier_accuracy, _ece, _nll: p(c | x) by Bayes' rule (class labels)
    ClassConditionalQuality  sample_class_accuracy, per_class_fid: samples of each class
                      scored by the classifier shipped for the data (digits, MNIST)
    CharacterNLL      nats_per_char, bits_per_char (text; ``evaluate.text``)
    NgramStatistics   distinct_n, ngram_js_n of samples vs held-out text (text)

Results are ``Estimate`` s (a NaN ``stderr`` when none is known) except the
plain counts ``modes``, ``sampling_seconds`` and ``network_evaluations`` (float).
Feature metrics say in ``Results.notes`` which feature network they used, read
at the data's levels (``default_features(shape, levels=spec.levels,
name=dataset.feature_net)``), and whether it was trained on this data set.
Every draw of an evaluation (samples, data rows, log_prob's noise, AIS, KID's
subsets, projections, the smoothed KL's noise) comes from its ``generator``,
so one seed gives the same numbers, bit for bit, on the same machine.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from probgen.core import Estimate, GenerativeModel, InvalidInput, Likelihood
from probgen.data.base import Dataset
from probgen.data.dequantize import bits_per_dim as bits_per_dim_convention
from probgen.distributions import GaussianMixture
from probgen.divergences import energy_distance, mmd, sliced_wasserstein
from probgen.evaluate.ais import AIS, sigmoid_schedule
from probgen.evaluate.conditional_metrics import (
    ClassConditionalQuality,
    GenerativeClassifier,
    TwoSampleClassifier,
)
from probgen.evaluate.ground_truth import (
    kl_data_model,
    kl_model_data,
    kl_model_data_smoothed,
    scott_bandwidth,
)
from probgen.evaluate.likelihood import (
    IWAEBound,
    LogLikelihoodEstimator,
    ModelLogProb,
    with_log_partition,
)
from probgen.evaluate.metric import (
    ALL_KINDS,
    Context,
    DataKind,
    Metric,
    Result,
    Results,
    _cpu,
    _name,
    _partition_model,
    _unknown_error,
    data_kind,
)
from probgen.evaluate.modes import mode_metrics_for
from probgen.evaluate.samples import frechet_distance, kernel_inception_distance, prdc
from probgen.evaluate.text import CharacterNLL, NgramStatistics
from probgen.sampling import MALA

__all__ = [
    "DEFAULT_METRICS",
    "IWAENLL",
    "NLL",
    "ClassConditionalQuality",
    "Context",
    "FeatureDistances",
    "GenerativeClassifier",
    "KLDataModel",
    "KLModelData",
    "Metric",
    "ModeCoverage",
    "PrecisionRecall",
    "Results",
    "SampleDistances",
    "SmoothedKL",
    "TwoSampleClassifier",
    "count_network_calls",
    "evaluate_model",
]


def _has_log_partition(model: GenerativeModel) -> bool:
    inner = _partition_model(model)
    return hasattr(inner, "init") and callable(getattr(inner, "energy", None))


def _default_ais() -> AIS:
    return AIS(sigmoid_schedule(200), MALA, step_size=0.05, n_chains=512)


class NLL(Metric):
    """``nll`` (nats) and, on discrete data, ``bpd``: by ``log_prob`` or ``estimator``.

    Unnormalised models (EBMs with ``init`` and ``energy``) get E_θ(x) + log Ẑ_θ
    with log Ẑ_θ from ``ais`` (``log_partition`` also reported).
    """

    names = ("nll", "bpd")

    def __init__(self, estimator: LogLikelihoodEstimator | None = None, ais: AIS | None = None):
        self.estimator = estimator
        self.ais = ais

    def kinds_of(self, name: str) -> frozenset[DataKind]:
        """bits/dim on data with levels (a density of continuous data has no bits/dim)."""
        return ALL_KINDS - {DataKind.CONTINUOUS} if name == "bpd" else ALL_KINDS

    def why_not(self, model: GenerativeModel, dataset: Dataset) -> str | None:
        if self.estimator is not None:
            return None
        if model.likelihood is Likelihood.UNNORMALIZED and not _has_log_partition(model):
            return f"{_name(model)} is unnormalized and has no init/energy to estimate log Z by AIS"
        spec = model.condition_spec
        if model.likelihood is Likelihood.UNNORMALIZED and spec is not None and not spec.is_classes:
            return (
                f"{_name(model)} is unnormalized with a continuous condition: log Z(c) would "
                "need one AIS run per row (class conditions get one per class)"
            )
        if model.likelihood is Likelihood.NONE:
            return f"{_name(model)} has no density (likelihood none)"
        return None

    def __call__(self, ctx: Context) -> Result:
        model, levels = ctx.model, ctx.dataset.spec.levels
        values = ctx.log_likelihoods(self.estimator)
        if self.estimator is None and model.likelihood is Likelihood.UNNORMALIZED:
            ais = self.ais or _default_ais()
            log_z = ctx.mean_log_partition(ais)  # per class for class conditions
            energy = Estimate.from_samples(-values + ctx.centred_log_partitions(ais))
            return {"nll": with_log_partition(energy, log_z), "log_partition": log_z}
        kind = (self.estimator or ModelLogProb()).kind(model)
        out: Result = {"nll": Estimate.from_samples(-values, kind=kind)}
        if data_kind(ctx.dataset) in self.kinds_of("bpd"):
            bits = bits_per_dim_convention(values, ctx.dataset.spec.dim, levels, dequantized=False)
            out["bpd"] = Estimate.from_samples(bits, kind=kind)
        return out


class IWAENLL(Metric):
    """``nll_iwae``: the NLL bound from IWAE with ``k`` samples, for models with ``iwae_bound``."""

    names = ("nll_iwae",)

    def __init__(self, k: int = 100) -> None:
        self.estimator = IWAEBound(k)

    def why_not(self, model: GenerativeModel, dataset: Dataset) -> str | None:
        if callable(getattr(model, "iwae_bound", None)):
            return None
        return f"{_name(model)} has no latent variables to importance-sample (no iwae_bound)"

    def __call__(self, ctx: Context) -> Result:
        values = ctx.log_likelihoods(self.estimator)
        return {"nll_iwae": Estimate.from_samples(-values, kind=self.estimator.kind(ctx.model))}


class KLDataModel(Metric):
    """``kl_data_model`` = KL(p_data ‖ p_θ) on the held-out split (see ``ground_truth``)."""

    names = ("kl_data_model",)

    def __init__(self, estimator: LogLikelihoodEstimator | None = None, ais: AIS | None = None):
        self.nll = NLL(estimator, ais)

    def why_not(self, model: GenerativeModel, dataset: Dataset) -> str | None:
        return _unknown_law(dataset) or self.nll.why_not(model, dataset)

    def __call__(self, ctx: Context) -> Result:
        estimator = self.nll.estimator
        log_z, log_q = None, ctx.log_likelihoods(estimator)
        if estimator is None and ctx.model.likelihood is Likelihood.UNNORMALIZED:
            ais = self.nll.ais or _default_ais()
            log_z = ctx.mean_log_partition(ais)
            log_q = log_q - ctx.centred_log_partitions(ais)  # log Ẑ(c_n) per row
        value = kl_data_model(
            ctx.model,
            ctx.dataset.truth,
            ctx.data,
            estimator=estimator,
            log_partition=log_z,
            log_q=log_q,
            conditions=ctx.conditions,
        )
        return {"kl_data_model": value}


def _unknown_law(dataset: Dataset) -> str | None:
    if dataset.truth is None:
        return "the data's law is unknown (no truth)"
    if dataset.spec.condition is not None and dataset.truth.condition_spec is None:
        return "conditional data whose truth has no p(x | c)"
    return None


def _continuous_law(dataset: Dataset) -> str | None:
    if dataset.truth is not None and dataset.spec.levels is not None:
        return "the data are discrete; this divergence is defined here for densities"
    return _unknown_law(dataset)


class KLModelData(Metric):
    """``kl_model_data`` = KL(p_θ ‖ p_data) from the model's samples, for exact densities.

    A model without an exact log p_θ is left out (a kernel density in its
    place is biased low without bound, below zero for sharp models): see
    ``SmoothedKL``, which every model gets.
    """

    names = ("kl_model_data",)

    def why_not(self, model: GenerativeModel, dataset: Dataset) -> str | None:
        if model.likelihood is not Likelihood.EXACT:
            return (
                f"{_name(model)}'s log_prob is {model.likelihood.value}, not an exact density; "
                "see kl_model_data_smoothed"
            )
        return _continuous_law(dataset)

    def __call__(self, ctx: Context) -> Result:
        value = kl_model_data(
            ctx.model,
            ctx.dataset.truth,
            ctx.samples,
            generator=ctx.generator,
            conditions=ctx.sample_conditions,
        )
        return {"kl_model_data": value}


class SmoothedKL(Metric):
    """``kl_model_data_smoothed`` = KL(p_θ ∗ N_h ‖ p_data ∗ N_h), 0 ≤ it ≤ KL(p_θ ‖ p_data).

    For every model that samples, on continuous data of known law; h is
    Scott's rule on the evaluation split for the number of kernel centres
    (half the samples), the same for every model of a data set (see
    ``ground_truth.kl_model_data_smoothed`` for the estimator and its bias).
    """

    names = ("kl_model_data_smoothed",)

    def why_not(self, model: GenerativeModel, dataset: Dataset) -> str | None:
        if dataset.spec.condition is not None:
            return "conditional data: kernel densities of p(x | c) per condition are not estimated"
        return _continuous_law(dataset)

    def __call__(self, ctx: Context) -> Result:
        data = ctx.data.reshape(len(ctx.data), -1).double().cpu()
        h = scott_bandwidth(data, n=len(ctx.samples) // 2)
        value = kl_model_data_smoothed(
            ctx.samples, ctx.dataset.truth, h, generator=_cpu(ctx.generator)
        )
        return {"kl_model_data_smoothed": value}


_TOKENS = "token ids are categorical: Euclidean distances between ids mean nothing"


def _categorical(dataset: Dataset) -> str | None:
    return _TOKENS if dataset.categorical else None


class SampleDistances(Metric):
    """``mmd``, ``energy_distance``, ``sliced_wasserstein`` of raw samples and data.

    Left out on categorical data (tokens), where the raw values are labels.
    """

    names = ("mmd", "energy_distance", "sliced_wasserstein")

    def why_not(self, model: GenerativeModel, dataset: Dataset) -> str | None:
        return _categorical(dataset)

    def __call__(self, ctx: Context) -> Result:
        y, x = ctx.samples, ctx.reference.to(ctx.samples.dtype)
        return {
            "mmd": _unknown_error(mmd(y, x)),
            "energy_distance": _unknown_error(energy_distance(y, x)),
            "sliced_wasserstein": _unknown_error(sliced_wasserstein(y, x, generator=ctx.generator)),
        }


class _OnFeatures(Metric):
    """A metric on features φ: the given net, else ``default_features``.

    Left out on categorical data (tokens) unless a feature net is given: no
    net ships for them, and the default (the raw values) means nothing there.
    """

    def __init__(self, features: nn.Module | None = None) -> None:
        self.features = features

    def why_not(self, model: GenerativeModel, dataset: Dataset) -> str | None:
        if self.features is not None or _categorical(dataset) is None:
            return None
        return f"no feature network ships for this data and {_TOKENS}"


class FeatureDistances(_OnFeatures):
    """``fid`` (Fréchet distance) and ``kid`` on features (``default_features`` if None)."""

    names = ("fid", "kid")

    def __call__(self, ctx: Context) -> Result:
        fy, fx = ctx.features(self.features, self.names)
        flat = nn.Flatten()
        return {
            "fid": _unknown_error(frechet_distance(fy, fx, flat)),
            "kid": kernel_inception_distance(fy, fx, flat, generator=ctx.generator),
        }


class PrecisionRecall(_OnFeatures):
    """``precision``, ``recall``, ``density``, ``coverage`` on features, k-NN balls of size k."""

    names = ("precision", "recall", "density", "coverage")

    def __init__(self, k: int = 5, features: nn.Module | None = None) -> None:
        super().__init__(features)
        self.k = k

    def __call__(self, ctx: Context) -> Result:
        fy, fx = ctx.features(self.features, self.names)
        values = prdc(fy, fx, self.k, nn.Flatten()).as_dict()
        return {name: _unknown_error(v) for name, v in values.items()}


class ModeCoverage(Metric):
    """``modes`` covered, ``high_quality`` fraction, ``reverse_kl`` (see ``evaluate.modes``)."""

    names = ("modes", "high_quality", "reverse_kl")

    def why_not(self, model: GenerativeModel, dataset: Dataset) -> str | None:
        if isinstance(dataset.truth, GaussianMixture):
            return None
        return "the data's law is not a known Gaussian mixture"

    def __call__(self, ctx: Context) -> Result:
        report = mode_metrics_for(ctx.dataset.truth, ctx.samples)
        return {
            "modes": float(report.modes_covered),
            "high_quality": _unknown_error(report.high_quality),
            "reverse_kl": _unknown_error(report.reverse_kl),
        }


DEFAULT_METRICS: tuple[Metric, ...] = (
    NLL(),
    IWAENLL(),
    KLDataModel(),
    KLModelData(),
    SmoothedKL(),
    SampleDistances(),
    FeatureDistances(),
    PrecisionRecall(),
    ModeCoverage(),
    GenerativeClassifier(),
    ClassConditionalQuality(),
    CharacterNLL(),
    NgramStatistics(),
)
"""What ``evaluate_model`` computes unless told otherwise (each where it applies)."""


def count_network_calls(model: nn.Module) -> tuple[list[object], list[int]]:
    """Hooks counting the outermost forward calls of ``model`` and its parameterised submodules.

    Returns (handles, counter): ``counter[0]`` grows by one per call of a
    module with parameters that is not nested in another counted call, so a
    network called inside a larger network is one evaluation. ``model`` itself
    is hooked too: a model whose ``forward`` is its network (the transformer,
    whose embeddings, blocks and final norm are its own attributes) counts one
    evaluation per forward pass, not one per part. Remove the hooks with
    ``handle.remove()``.
    """
    counter, depth = [0], [0]

    def enter(module: nn.Module, args: object) -> None:
        if depth[0] == 0:
            counter[0] += 1
        depth[0] += 1

    def leave(module: nn.Module, args: object, output: object) -> None:
        depth[0] -= 1

    handles: list[object] = []
    for module in model.modules():
        if any(True for _ in module.parameters()):
            handles.append(module.register_forward_pre_hook(enter))
            handles.append(module.register_forward_hook(leave, always_call=True))
    return handles, counter


def _draw(
    model: GenerativeModel,
    n: int,
    generator: torch.Generator | None,
    condition: Tensor | None = None,
) -> tuple[Tensor, float, int]:
    """n samples on the CPU (given the n conditions, when any), the wall time of
    ``sample`` and its network evaluations."""
    handles, counter = count_network_calls(model)
    was_training = model.training
    model.eval()
    try:
        start = time.perf_counter()
        if condition is not None:
            condition = condition.to(model.device)
        samples = model.sample(n, condition=condition, generator=generator)
        seconds = time.perf_counter() - start
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    samples = samples.detach().cpu()
    if not samples.is_floating_point():
        samples = samples.to(torch.get_default_dtype())
    return samples, seconds, counter[0]


def evaluate_model(
    model: GenerativeModel,
    dataset: Dataset,
    *,
    n_samples: int = 2000,
    generator: torch.Generator | None = None,
    metrics: Sequence[Metric] = DEFAULT_METRICS,
    split: str = "test",
    max_examples: int | None = None,
) -> Results:
    """Every metric of ``metrics`` that applies to ``model`` on ``dataset``, by name.

    Draws ``n_samples`` samples once with ``generator`` (on the model's device),
    recording ``sampling_seconds`` (wall time of ``model.sample``) and
    ``network_evaluations`` (batched forward calls of the model's networks during
    it: 1 for a GAN or VAE, the number of steps of an MCMC or diffusion sampler,
    one per dimension of an autoregressive model). Sample metrics compare the
    samples with as many rows of ``split`` (a random subset drawn with
    ``generator`` when the split is larger). ``max_examples`` keeps only the
    first rows of the split (for likelihoods that cost seconds per batch,
    e.g. a diffusion model's ODE); ``held_out_examples`` records how many.
    Every draw comes from ``generator`` (the same seed gives the same numbers).
    A result a metric leaves out is in ``Results.skipped`` with the reason
    (``nll`` of a GAN, ``bpd`` only on discrete data is not recorded); a
    feature metric's note (``Results.notes``) names the feature network.
    """
    if max_examples is not None and (isinstance(max_examples, bool) or max_examples < 1):
        raise InvalidInput(f"max_examples: expected a positive integer, got {max_examples!r}")
    data = dataset.split(split)[:max_examples]
    conditions = dataset.conditions(split)
    conditions = None if conditions is None else conditions[: len(data)]
    rows = torch.randperm(len(data), generator=_cpu(generator))[:n_samples]
    # a conditional model is sampled at the conditions of the reference rows, so its
    # samples follow p_θ(x | c) p_data(c) like the reference rows follow p_data(x, c)
    drawn = None if conditions is None else conditions[rows]
    if drawn is not None:
        n_samples = len(drawn)
    samples, seconds, calls = _draw(model, n_samples, generator, drawn)
    ctx = Context(model, dataset, data, samples, data[rows].cpu(), generator, conditions, drawn)
    results = Results(
        {
            "sampling_seconds": seconds,
            "network_evaluations": float(calls),
            "held_out_examples": float(len(data)),
        }
    )
    kind = data_kind(dataset)
    for metric in metrics:
        if not metric.asked_of(dataset):
            continue
        if metric.applies(model, dataset):
            results.update(metric(ctx))
            continue
        reason = metric.why_not(model, dataset) or f"{type(metric).__name__} does not apply"
        for name in metric.names:
            if kind in metric.kinds_of(name):  # not defined on this kind: no reason to give
                results.skipped.setdefault(name, reason)
    for name in results:
        results.skipped.pop(name, None)  # computed by another metric
    results.notes.update({k: v for k, v in ctx.notes.items() if k in results})
    return results
