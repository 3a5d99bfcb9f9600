"""The metrics a run reports, computed by ``probgen.evaluate.evaluate_model``, saved as JSON.

One evaluation path: the CLI computes nothing itself. Without names a run
reports every metric of ``DEFAULT_METRICS`` that applies to the model and the
data (the likelihood metrics by the model's likelihood kind, the KL to the data
when its law is known, sample and feature distances, mode coverage, sampling
time and network evaluations). Names chosen by the user are the registry's
(``probgen.registry.METRICS``); ``PROVIDERS`` maps each to the suite metric
objects that compute it, so the model's samples, their pairing with data and
every formula are the suite's. Results the suite computes alongside a chosen
name that are no registry name themselves (``kl_data_model`` beside ``nll``,
``log_partition`` of an EBM, ``sampling_seconds``, ``network_evaluations``,
``held_out_examples``) are
kept; other registry names are not.

Each result is an ``Estimate``; the suite's plain numbers (counts and seconds)
get ``kind="measured"`` and an unknown (NaN) standard error. Results the suite
leaves out keep their one-line reason (``Results.skipped``), and the notes on
computed ones (``Results.notes``: which feature network a FID used) theirs:
printed under the table and written to metrics.json. A divergence estimate
below zero is printed as its upper confidence bound, never as a negative
number (``divergence_text``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from rich.table import Table

from probgen.core import Estimate, GenerativeModel, ProbgenError
from probgen.data.base import Dataset
from probgen.evaluate.display import DIVERGENCES, divergence_text
from probgen.evaluate.metric import DataKind, data_kind
from probgen.evaluate.suite import (
    DEFAULT_METRICS,
    NLL,
    FeatureDistances,
    KLDataModel,
    Metric,
    PrecisionRecall,
    Results,
    SampleDistances,
    TwoSampleClassifier,
    evaluate_model,
)
from probgen.evaluate.text import CharacterNLL, NgramStatistics
from probgen.registry import METRICS

__all__ = [
    "PROVIDERS",
    "UNITS",
    "MetricNotApplicable",
    "evaluate",
    "kinds_of",
    "metrics_table",
    "write_metrics",
]

UNITS = {
    "nll": "nats",
    "nll_iwae": "nats",
    "bpd": "bits/dim",
    "kl_data_model": "nats",
    "kl_model_data": "nats",
    "kl_model_data_smoothed": "nats",
    "reverse_kl": "nats",
    "log_partition": "nats",
    "sampling_seconds": "s",
    "nats_per_char": "nats/char",
    "bits_per_char": "bits/char",
    **{f"ngram_js_{n}": "nats" for n in range(1, 9)},
}
"""Units shown next to metric values (others are in the metric's own units)."""

_NLL = NLL()
_SAMPLE_DISTANCES = SampleDistances()
_FEATURE_DISTANCES = FeatureDistances()
_PRECISION_RECALL = PrecisionRecall()
_CHARACTER_NLL = CharacterNLL()
_NGRAMS = NgramStatistics()

PROVIDERS: dict[str, tuple[Metric, ...]] = {
    "nll": (_NLL, KLDataModel()),
    "bpd": (_NLL,),
    "mmd": (_SAMPLE_DISTANCES,),
    "energy_distance": (_SAMPLE_DISTANCES,),
    "sliced_wasserstein": (_SAMPLE_DISTANCES,),
    "fid": (_FEATURE_DISTANCES,),
    "kid": (_FEATURE_DISTANCES,),
    "precision": (_PRECISION_RECALL,),
    "recall": (_PRECISION_RECALL,),
    "density": (_PRECISION_RECALL,),
    "coverage": (_PRECISION_RECALL,),
    "c2st": (TwoSampleClassifier(),),
    "nats_per_char": (_CHARACTER_NLL,),
    "bits_per_char": (_CHARACTER_NLL,),
    **dict.fromkeys(_NGRAMS.names, (_NGRAMS,)),
}
"""The suite metrics computing each ``METRICS`` name (``nll`` brings the KL to the data)."""


def kinds_of(name: str) -> frozenset[DataKind]:
    """The data kinds the registered metric ``name`` is defined on (``Metric.kinds_of``)."""
    return frozenset().union(*(m.kinds_of(name) for m in PROVIDERS[name] if name in m.names))


class MetricNotApplicable(ProbgenError):
    """A chosen metric that means nothing for this model on this data (e.g. ``nll`` of a GAN)."""


def evaluate(
    model: GenerativeModel,
    dataset: Dataset,
    names: Sequence[str] | None = None,
    *,
    split: str = "test",
    n_samples: int = 2000,
    seed: int = 0,
    max_examples: int | None = None,
) -> Results:
    """``evaluate_model`` on ``split`` of ``dataset``: ``DEFAULT_METRICS``, or the ``names`` chosen.

    ``n_samples`` model samples are drawn once with a generator seeded by
    ``seed`` (so equal seeds give equal numbers); ``max_examples`` keeps the
    first rows of the split only. The results are ``Estimate`` s; ``skipped``
    gives the reason for each default result left out. Raises ``UnknownName`` for a
    name not in ``METRICS`` (listing the valid ones) and ``MetricNotApplicable``
    for a chosen name defined on another kind of data (``kinds_of``: bits per
    character on images) or that the suite does not compute for this model and data.
    """
    metrics: Sequence[Metric] = DEFAULT_METRICS
    if names is not None:
        kind = data_kind(dataset)
        for name in names:
            METRICS.target(name)  # raises UnknownName, listing the registered metrics
            if kind not in kinds_of(name):
                defined = _listed([k.value for k in DataKind if k in kinds_of(name)])
                raise MetricNotApplicable(
                    f"{name!r} is defined on {defined} data, not on {kind.value} data "
                    f"({type(dataset).__name__})"
                )
        chosen = {id(m): m for name in names for m in PROVIDERS[name]}
        metrics = tuple(chosen.values())
    generator = torch.Generator(device=model.device).manual_seed(seed)
    results = evaluate_model(
        model,
        dataset,
        n_samples=n_samples,
        generator=generator,
        metrics=metrics,
        split=split,
        max_examples=max_examples,
    )
    all_notes = results.notes
    if names is not None:
        missing = [name for name in names if name not in results]
        if missing:
            levels = dataset.spec.levels
            reasons = "; ".join(
                f"{name}: {results.skipped[name]}" for name in missing if name in results.skipped
            )
            raise MetricNotApplicable(
                f"{', '.join(map(repr, missing))} not applicable to {type(model).__name__} "
                f"(likelihood {model.likelihood.value}) on {type(dataset).__name__} "
                f"({'continuous' if levels is None else f'{levels} levels'})"
                + (f" ({reasons})" if reasons else "")
                + f"; computed: {', '.join(r for r in results if r in METRICS) or 'none'}"
            )
        companions = {r: v for r, v in results.items() if r not in METRICS}
        results = {**{name: results[name] for name in names}, **companions}
    # plain numbers (counts, seconds) after the estimates, each group in the suite's order
    ordered = sorted(results.items(), key=lambda item: not isinstance(item[1], Estimate))
    skipped = {} if names is not None else results.skipped
    notes = {name: note for name, note in all_notes.items() if name in results}
    return Results(
        {name: _as_estimate(value) for name, value in ordered}, skipped=skipped, notes=notes
    )


def write_metrics(
    path: Path, split: str, results: dict[str, Estimate], data_map: dict | None = None
) -> None:
    """Merge ``results`` for ``split`` into the JSON file at ``path``.

    Layout: ``{split: {metric: {"value", "stderr", "kind", "unit"}}}``; an
    unknown standard error is written as ``null``; the raw value is written
    even when a divergence estimate is below zero (with its stderr). The
    reasons for left-out results (``Results.skipped``) go to
    ``{"skipped": {split: {metric: reason}}}``, the notes (``Results.notes``) to
    ``{"notes": {split: {metric: note}}}``. Other splits already in the
    file are kept. ``data_map`` (the ``{method, shift, scale}`` of a
    standardised model, ``probgen.train.standardization_record``) is written
    under ``"data_map"``: the numbers are of a model of x = shift + scale · z.
    """
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
    if not isinstance(data, dict):
        data = {}
    data[split] = {
        name: {
            "value": est.value,
            "stderr": None if math.isnan(est.stderr) else est.stderr,
            "kind": est.kind,
            "unit": UNITS.get(name, ""),
        }
        for name, est in results.items()
    }
    for key in ("skipped", "notes"):
        lines = data.pop(key, None)
        lines = {k: v for k, v in lines.items() if k != split} if isinstance(lines, dict) else {}
        if getattr(results, key, None):
            lines[split] = dict(getattr(results, key))
        if lines:
            data[key] = lines
    if data_map is not None:
        data["data_map"] = data_map
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def metrics_table(results: dict[str, Estimate], title: str) -> Table:
    """A rich table: metric, value, standard error, kind, unit; then the notes and the left-outs.

    A divergence (``DIVERGENCES``) estimated below zero shows ``divergence_text``;
    results sharing a note (the feature metrics) share its line.
    """
    by_note: dict[str, list[str]] = {}
    for name, note in getattr(results, "notes", {}).items():
        by_note.setdefault(note, []).append(name)
    skipped = getattr(results, "skipped", {})
    caption = "\n".join(
        [f"note: {', '.join(names)}: {note}" for note, names in by_note.items()]
        + [f"not computed: {k}: {why}" for k, why in skipped.items()]
    )
    table = Table(
        title=title, title_justify="left", caption=caption or None, caption_justify="left"
    )
    table.add_column("metric", style="bold cyan")
    table.add_column("value", justify="right")
    table.add_column("± stderr", justify="right")
    table.add_column("kind")
    table.add_column("unit", style="dim")
    for name, est in results.items():
        stderr = "—" if math.isnan(est.stderr) else f"{est.stderr:.4g}"
        value = divergence_text(est) if name in DIVERGENCES else f"{est.value:.6g}"
        table.add_row(name, value, stderr, est.kind, UNITS.get(name, ""))
    return table


def _as_estimate(value: Estimate | float) -> Estimate:
    return value if isinstance(value, Estimate) else Estimate(float(value), math.nan, "measured")


def _listed(words: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return " and ".join(filter(None, [", ".join(words[:-1]), words[-1]]))
