"""The metrics a run reports: chosen by name from ``probgen.registry.METRICS``, saved as JSON.

Two calling conventions, told apart by the metric's first parameter:

- likelihood metrics ``f(model, x, ...)`` (first parameter ``model``), e.g.
  ``nll`` and ``bpd``; a ``levels`` parameter receives the data's number of
  levels, and ``dequantized=False`` is passed with it, since a model's
  ``log_prob`` on discrete data is read as a log-probability mass (or a bound
  on it);
- sample metrics ``f(samples, data)``, e.g. ``mmd`` and ``energy_distance``,
  given ``n`` model samples and ``n`` examples of the split, flattened to (n, D).

Each result is an ``Estimate``; a metric returning a bare number gets
``kind="estimate"`` and an unknown (NaN) standard error.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from rich.table import Table
from torch import Tensor

from probgen.core import Estimate, GenerativeModel, Likelihood, ProbgenError
from probgen.data.base import Dataset
from probgen.evaluate.likelihood import log_probs
from probgen.registry import METRICS
from probgen.tensors import flatten_events

__all__ = [
    "KL_TO_DATA",
    "UNITS",
    "MetricUnavailable",
    "default_metrics",
    "evaluate",
    "metrics_table",
    "write_metrics",
]

UNITS = {"nll": "nats", "bpd": "bits/dim", "kl_data_model": "nats"}
"""Units shown next to metric values (others are in the metric's own units)."""

KL_TO_DATA = "kl_data_model"
"""Name of the extra result KL(p_data || p_θ) = E[log p_data(x) - log p_θ(x)], in nats.

Reported beside ``nll`` whenever the data set knows its exact distribution
(``dataset.truth``) and the model's density is normalized: the per-example
differences on the same examples give a paired estimate with a small standard
error, and ``nll`` minus it is the data entropy, the best NLL any model can reach."""


class MetricUnavailable(ProbgenError):
    """A registered metric's implementation cannot be imported."""


def default_metrics(model: GenerativeModel, dataset: Dataset) -> list[str]:
    """The metrics a run reports unless told otherwise.

    ``nll`` and ``bpd`` when the model has a likelihood; ``mmd`` and
    ``energy_distance`` on continuous data, or whenever the model has no
    likelihood (a GAN is judged by its samples).
    """
    names = []
    if model.likelihood is not Likelihood.NONE:
        names += ["nll", "bpd"]
    if model.likelihood is Likelihood.NONE or dataset.spec.levels is None:
        names += ["mmd", "energy_distance"]
    return [n for n in names if n in METRICS]


def evaluate(
    model: GenerativeModel,
    dataset: Dataset,
    names: Sequence[str],
    *,
    split: str = "test",
    n_samples: int = 2000,
    seed: int = 0,
) -> dict[str, Estimate]:
    """Compute the metrics ``names`` of ``model`` on ``split`` of ``dataset``.

    Sample metrics compare ``n_samples`` model samples (drawn with a generator
    seeded by ``seed``) with as many examples of the split (a random subset
    when the split is larger). Raises ``UnknownName`` for an unregistered
    name, ``MetricUnavailable`` when its module cannot be imported, and
    ``IntractableLikelihood`` for a likelihood metric of a model without one.
    """
    functions = {name: load_metric(name) for name in names}
    x = dataset.split(split)
    results: dict[str, Estimate] = {}
    pair: tuple[Tensor, Tensor] | None = None
    for name, fn in functions.items():
        if _takes_model(fn):
            results[name] = _as_estimate(fn(model, x, **_data_options(fn, dataset)))
            if name == "nll" and _kl_is_meaningful(model, dataset):
                results[KL_TO_DATA] = _kl_to_data(model, dataset.truth, x)
        else:
            if pair is None:
                pair = _sample_pair(model, x, n_samples, seed)
            results[name] = _as_estimate(fn(*pair))
    return results


def load_metric(name: str) -> Callable[..., Any]:
    """Import the metric registered as ``name`` (``UnknownName`` lists the valid ones)."""
    try:
        return METRICS.get(name)
    except ImportError as e:
        raise MetricUnavailable(
            f"metric {name!r} is unavailable ({METRICS.target(name)}): {e}"
        ) from e


def write_metrics(path: Path, split: str, results: dict[str, Estimate]) -> None:
    """Merge ``results`` for ``split`` into the JSON file at ``path``.

    Layout: ``{split: {metric: {"value", "stderr", "kind", "unit"}}}``; an
    unknown standard error is written as ``null``. Other splits already in
    the file are kept.
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
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def metrics_table(results: dict[str, Estimate], title: str) -> Table:
    """A rich table: metric, value, standard error, kind, unit."""
    table = Table(title=title, title_justify="left")
    table.add_column("metric", style="bold cyan")
    table.add_column("value", justify="right")
    table.add_column("± stderr", justify="right")
    table.add_column("kind")
    table.add_column("unit", style="dim")
    for name, est in results.items():
        stderr = "—" if math.isnan(est.stderr) else f"{est.stderr:.4g}"
        table.add_row(name, f"{est.value:.6g}", stderr, est.kind, UNITS.get(name, ""))
    return table


def _takes_model(fn: Callable[..., Any]) -> bool:
    params = list(inspect.signature(fn).parameters)
    return bool(params) and params[0] == "model"


def _data_options(fn: Callable[..., Any], dataset: Dataset) -> dict[str, Any]:
    levels = dataset.spec.levels
    if "levels" not in inspect.signature(fn).parameters or levels is None:
        return {}
    return {"levels": levels, "dequantized": False}


def _as_estimate(value: Any) -> Estimate:
    if isinstance(value, Estimate):
        return value
    if isinstance(value, Tensor):
        value = value.detach().double().item()
    return Estimate(value=float(value), stderr=math.nan, kind="estimate")


def _kl_is_meaningful(model: GenerativeModel, dataset: Dataset) -> bool:
    # an unnormalized log-density is off by log Z, and so would the KL be
    return dataset.truth is not None and model.likelihood is not Likelihood.UNNORMALIZED


def _kl_to_data(model: GenerativeModel, truth: GenerativeModel, x: Tensor) -> Estimate:
    gap = log_probs(truth, x).cpu().double() - log_probs(model, x).cpu().double()
    return Estimate.from_samples(gap, kind=model.likelihood.value)


def _sample_pair(model: GenerativeModel, x: Tensor, n: int, seed: int) -> tuple[Tensor, Tensor]:
    """n model samples and n examples of ``x``, both (n, D) floating point on the CPU."""
    n = min(n, len(x))
    cpu = torch.Generator().manual_seed(seed)
    reference = x[torch.randperm(len(x), generator=cpu)[:n]]
    generator = torch.Generator(device=model.device).manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            samples = model.sample(n, generator=generator)
    finally:
        model.train(was_training)
    dtype = samples.dtype if samples.is_floating_point() else torch.get_default_dtype()
    return (
        flatten_events(samples.detach().cpu()).to(dtype),
        flatten_events(reference.cpu()).to(dtype),
    )
