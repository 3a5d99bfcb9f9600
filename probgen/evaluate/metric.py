"""The pieces every metric of ``evaluate_model`` shares: its results, its context, its base.

A ``Metric`` is a named group of results computed from a ``Context`` (the
model, the data, the model's samples and a cache of what several metrics
use: log-likelihoods, features, log Z); it says whether it applies and, if
not, why (``why_not``), and whether the data are of its kind at all
(``asked_of``). ``Results`` is the dict of results with the reasons for what
was left out and notes on how the rest was computed.

Each result is defined on some kinds of data (``DataKind``, from
``data_kind(dataset)``): bits/dim on discrete data, bits per character on
text, every other result on every kind, unless ``Metric.kinds_of`` says
otherwise. A result is never computed, nor reported as left out, on data of
another kind; asked for by name it is an error naming the metric and the kind
(``probgen.cli.metrics.evaluate``). Within its kinds, ``why_not`` gives the
reason a result is left out for this model or data (raw-value distances on
token ids, an NLL without a density).
"""

from __future__ import annotations

import abc
import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from probgen.core import Estimate, GenerativeModel
from probgen.data.base import Dataset
from probgen.evaluate.ais import AIS
from probgen.evaluate.features import (
    FlatFeatures,
    default_features,
    describe_features,
)
from probgen.evaluate.likelihood import (
    LogLikelihoodEstimator,
    log_probs,
)
from probgen.evaluate.samples import embed
from probgen.models.wrapper import DataWrapper

__all__ = [
    "ALL_KINDS",
    "Context",
    "DataKind",
    "Metric",
    "Result",
    "Results",
    "data_kind",
    "is_text",
]

Result = dict[str, Estimate | float]


class DataKind(enum.Enum):
    """What the values of a data set are, which decides the metrics defined on it."""

    CONTINUOUS = "continuous"  # real-valued events (no levels)
    DISCRETE = "discrete"  # ordered integer levels 0…K−1 (pixel intensities, counts)
    TEXT = "text"  # windows (T,) of categorical token ids with a decoder (characters)
    TOKENS = "tokens"  # other categorical ids (labels without an order)


ALL_KINDS = frozenset(DataKind)
"""Every kind: what a result is defined on unless its metric says otherwise."""


def is_text(dataset: Dataset) -> bool:
    """Whether ``dataset`` holds character windows: categorical (T,) tokens with a decoder."""
    spec = dataset.spec
    return (
        dataset.categorical
        and len(spec.event_shape) == 1
        and spec.levels is not None
        and callable(getattr(dataset, "decode", None))
    )


def data_kind(dataset: Dataset) -> DataKind:
    """The ``DataKind`` of ``dataset``: from its levels, ``categorical`` and decoder."""
    if dataset.spec.levels is None:
        return DataKind.CONTINUOUS
    if is_text(dataset):
        return DataKind.TEXT
    return DataKind.TOKENS if dataset.categorical else DataKind.DISCRETE


class Results(dict[str, Estimate | float]):
    """``evaluate_model``'s results by name; ``skipped`` and ``notes``: result name -> one line.

    A plain dict of ``Estimate`` s and numbers to every caller; ``skipped``
    holds one line per result a metric did not compute because it means
    nothing for this model on this data (e.g. ``{"precision": "token ids are
    categorical …"}``); ``notes`` one line per computed result that needs
    one to be read (e.g. ``{"fid": "features: the mnist classifier's …"}``).
    """

    def __init__(
        self,
        *args: object,
        skipped: dict[str, str] | None = None,
        notes: dict[str, str] | None = None,
    ) -> None:
        super().__init__(*args)
        self.skipped: dict[str, str] = dict(skipped or {})
        self.notes: dict[str, str] = dict(notes or {})


@dataclass
class Context:
    """What the metrics of one evaluation share: the model, the data, the samples, a cache.

    Attributes:
        model, dataset: what is evaluated.
        data: the held-out split, (N, *event_shape).
        samples: n model samples, (n, *event_shape), on the CPU.
        reference: n rows of ``data`` (all of it when smaller), for sample metrics.
        generator: source of the metrics' random draws.
        conditions: the conditions of the rows of ``data`` (None: unconditional data).
        sample_conditions: the conditions ``samples`` were drawn at (those of the
            ``reference`` rows), None for unconditional data.
        cache: values computed once and shared (features, log Z).
        notes: result name -> how to read it (which features), for ``Results.notes``.
    """

    model: GenerativeModel
    dataset: Dataset
    data: Tensor
    samples: Tensor
    reference: Tensor
    generator: torch.Generator | None
    conditions: Tensor | None = None
    sample_conditions: Tensor | None = None
    cache: dict[str, object] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def log_partition(self, ais: AIS, label: int | None = None) -> Estimate:
        """log Ẑ_θ of an unnormalised model (its ``init`` and ``energy``) by AIS, computed once.

        With ``label`` k, log Ẑ_θ(k) of the class-conditional model, Z_θ(k) =
        ∫ exp(−E_θ(x, k)) dx, by AIS on the energy at that class.
        """
        key = "log_partition" if label is None else f"log_partition:{label}"
        if key not in self.cache:
            inner = _partition_model(self.model)
            energy = inner.energy if label is None else _energy_at(inner, label)
            result = ais.log_partition(inner.init, energy, generator=self.generator)
            self.cache[key] = result.estimate("estimate")
        return self.cache[key]

    def mean_log_partition(self, ais: AIS) -> Estimate:
        """log Ẑ_θ, or for class-conditional data Σ_k (N_k / N) log Ẑ_θ(k) over the rows' classes.

        The normaliser a mean energy (1/N) Σ_n E_θ(x_n, c_n) needs to become an NLL;
        the classes' AIS errors are independent, so their variances add with
        weights (N_k / N)².
        """
        if self.conditions is None:
            return self.log_partition(ais)
        labels, counts = torch.unique(self.conditions.cpu(), return_counts=True)
        weights = (counts.double() / counts.sum()).tolist()
        parts = [self.log_partition(ais, int(k)) for k in labels.tolist()]
        value = sum(w * e.value for w, e in zip(weights, parts, strict=True))
        variance = sum((w * e.stderr) ** 2 for w, e in zip(weights, parts, strict=True))
        return Estimate(value, math.sqrt(variance), "estimate")

    def centred_log_partitions(self, ais: AIS) -> Tensor:
        """log Ẑ_θ(c_n) − ``mean_log_partition`` per row of ``data``, (N,) float64 (0 without
        conditions): what turns the energies into per-row NLLs around the mean log Ẑ."""
        mean = self.mean_log_partition(ais).value
        if self.conditions is None:
            return torch.zeros(len(self.data), dtype=torch.float64)
        labels = self.conditions.cpu().long()
        table = {int(k): self.log_partition(ais, int(k)).value for k in labels.unique().tolist()}
        return torch.tensor([table[int(k)] for k in labels.tolist()], dtype=torch.float64) - mean

    def log_likelihoods(self, estimator: LogLikelihoodEstimator | None) -> Tensor:
        """log p_θ(x_n) of every row of ``data`` by ``estimator`` (``log_prob`` when None).

        (N,) float64 on the CPU, computed once per estimator, so the NLL, the
        bits/dim and KL(p_data ‖ p_θ) of one evaluation rest on the same values
        (the same draws, for a stochastic estimator).
        """
        key = f"log_likelihoods:{id(estimator)}"
        if key not in self.cache:
            values = log_probs(
                self.model,
                self.data,
                estimator=estimator,
                generator=self.generator,
                condition=self.conditions,
            )
            self.cache[key] = values.double().cpu()
        return self.cache[key]

    def features(self, net: nn.Module | None, names: Sequence[str] = ()) -> tuple[Tensor, Tensor]:
        """φ(samples), φ(reference) with ``net``, computed once; ``names`` get a note saying which.

        ``net`` None means ``default_features`` for the data: the data set's
        ``feature_net`` (or one chosen by event shape), reading the data's levels.
        Where none ships and the data are continuous, the raw values are
        standardised by the reference's coordinate means and standard deviations
        (``FlatFeatures.fitted``), so the feature metrics do not depend on the
        data's units; pixels with levels keep their common scale.
        """
        key = f"features:{id(net)}"
        if key not in self.cache:
            provenance = " (given)"
            if net is None:
                spec, trained = self.dataset.spec, self.dataset.feature_net
                net = default_features(spec.event_shape, levels=spec.levels, name=trained)
                if isinstance(net, FlatFeatures) and spec.levels is None:
                    net = FlatFeatures.fitted(self.reference)
                provenance = _provenance(net, trained)
            note = f"features: {describe_features(net)}{provenance}"
            self.cache[key] = (
                embed(self.samples, net).double(),
                embed(self.reference, net).double(),
                note,
            )
        fy, fx, note = self.cache[key]
        self.notes.update(dict.fromkeys(names, note))
        return fy, fx


class Metric(abc.ABC):
    """A named group of results computed from a ``Context``.

    ``names`` are the results it returns (those ``evaluate_model`` records as
    skipped, with ``why_not``'s reason, when it does not apply).
    """

    names: tuple[str, ...] = ()
    kinds: frozenset[DataKind] = ALL_KINDS
    """The data kinds it is defined on (``kinds_of`` may narrow one result's)."""

    def kinds_of(self, name: str) -> frozenset[DataKind]:
        """The data kinds the result ``name`` is defined on, within ``kinds`` (default: all)."""
        return self.kinds

    def why_not(self, model: GenerativeModel, dataset: Dataset) -> str | None:
        """None when this metric means something for ``model`` on ``dataset``, else why not."""
        return None

    def asked_of(self, dataset: Dataset) -> bool:
        """Whether ``dataset`` is of the kind this metric is for at all (by default, whether
        ``data_kind(dataset)`` is in ``kinds``); one that is not gets no skip reason (text
        metrics on images, a classifier on unlabelled data)."""
        return data_kind(dataset) in self.kinds

    def applies(self, model: GenerativeModel, dataset: Dataset) -> bool:
        """Whether this metric means something for ``model`` on ``dataset`` (no ``why_not``)."""
        return self.why_not(model, dataset) is None

    @abc.abstractmethod
    def __call__(self, ctx: Context) -> Result:
        """The results, by name."""


def _provenance(net: nn.Module, trained: str | None) -> str:
    """Whether a default feature net was trained on the data (named by it) or chosen by shape."""
    if trained is not None:
        return ", trained on this data set"
    if isinstance(net, FlatFeatures):
        return " (no feature network ships for this event shape)"
    return "; chosen by event shape, not trained on this data set (weaker features)"


def _partition_model(model: GenerativeModel) -> GenerativeModel:
    """The model whose ``init`` and ``energy`` define ``model``'s normaliser Z.

    The model itself, or for a wrapper that changes variables exactly (the
    ``Standardized`` data map) the inner model, whose log Z it shares.
    """
    return getattr(model, "partition_model", model)


def _energy_at(model: GenerativeModel, label: int) -> Callable[[Tensor], Tensor]:
    """x ↦ E_θ(x, k) = −log_prob(x, condition=k) of a class-conditional unnormalised model."""

    def energy(x: Tensor) -> Tensor:
        labels = torch.full((len(x),), label, dtype=torch.long, device=x.device)
        return -model.log_prob(x, condition=labels)

    return energy


def _unknown_error(value: Tensor | float) -> Estimate:
    """A sample statistic with no standard error known: NaN stderr, kind "estimate"."""
    return Estimate(float(value), math.nan, "estimate")


def _cpu(generator: torch.Generator | None) -> torch.Generator | None:
    """``generator`` if it lives on the CPU, else a CPU generator seeded from it."""
    if generator is None or generator.device.type == "cpu":
        return generator
    seed = int(torch.randint(2**62, (), generator=generator, device=generator.device))
    return torch.Generator().manual_seed(seed)


def _name(model: GenerativeModel) -> str:
    """The family's class name, seen through the data wrappers build_model applies."""
    while isinstance(model, DataWrapper):
        model = model.model
    return type(model).__name__
