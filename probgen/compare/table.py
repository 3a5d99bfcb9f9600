"""The comparison tables: one row per model, the same cells in the terminal, Markdown and HTML.

A ``Column`` has a header, a one-line definition (listed under the Markdown
table, the HTML header's tooltip) and a function from a ``ModelResult`` to
its cell. ``columns(results)`` is the main table: likelihood, divergences to
the data, sample metrics, modes, training and sampling cost; a column shows
only when some row has its value. ``extra_columns(results)`` has one column
per other result the evaluator returned, so a new metric is reported
without changes here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.table import Table

from probgen.compare.run import ModelResult
from probgen.core import Estimate
from probgen.evaluate.display import DIVERGENCES, divergence_text

__all__ = [
    "MISSING",
    "TEXT_COLUMNS",
    "Column",
    "columns",
    "extra_columns",
    "format_value",
    "rich_table",
]

MISSING = "—"
"""Text of a cell with no value (the metric does not apply, or the row failed)."""

TEXT_COLUMNS = ("model", "likelihood", "error", "flags")
"""Columns of words, aligned left (numbers align right)."""

_COMPARABLE = ("exact", "estimate", "bound")
"""Likelihood kinds whose NLL compares across models (an energy off by log Z does not)."""


@dataclass(frozen=True)
class Column:
    """A table column: its key, header, definition and the cell text of a row.

    ``uses`` names the results the cell reads; the column is shown only when
    a row has one of them (always when empty).
    """

    key: str
    header: str
    definition: str
    cell: Callable[[ModelResult], str]
    uses: tuple[str, ...] = ()


def format_value(value: Estimate | float) -> str:
    """``value ± stderr`` of an ``Estimate`` (``≤ value`` for an upper bound), or a number."""
    if not isinstance(value, Estimate):
        return f"{value:.4g}"
    prefix = "≤ " if value.kind == "bound" else ""
    text = f"{prefix}{value.value:.4g}"
    if math.isfinite(value.value) and math.isfinite(value.stderr) and value.stderr > 0:
        text += f" ± {value.stderr:.2g}"
    return text


def _number(row: ModelResult, key: str) -> float:
    value = row.metrics.get(key, math.nan)
    return value.value if isinstance(value, Estimate) else float(value)


def _metric(key: str) -> Callable[[ModelResult], str]:
    def cell(row: ModelResult) -> str:
        value = row.metrics.get(key)
        if value is None:
            return MISSING
        if isinstance(value, Estimate) and key in _LIKELIHOODS and value.kind not in _COMPARABLE:
            return MISSING
        if isinstance(value, Estimate) and key in DIVERGENCES and value.value < 0:
            return divergence_text(value)  # never a negative KL (see probgen.evaluate.display)
        return format_value(value)

    return cell


def _model(row: ModelResult) -> str:
    return row.label if row.label == row.family else f"{row.label} ({row.family})"


def _precision_recall(row: ModelResult) -> str:
    p, r = _number(row, "precision"), _number(row, "recall")
    return MISSING if math.isnan(p) or math.isnan(r) else f"{p:.2f} / {r:.2f}"


def _modes(row: ModelResult) -> str:
    modes, quality = _number(row, "modes"), _number(row, "high_quality")
    if math.isnan(modes):
        return MISSING
    of = f"/{row.n_modes}" if row.n_modes else ""
    return f"{modes:.0f}{of}" + ("" if math.isnan(quality) else f" ({quality:.0%})")


def _classifier(row: ModelResult) -> str:
    accuracy, ece = _number(row, "classifier_accuracy"), _number(row, "classifier_ece")
    if math.isnan(accuracy):
        return MISSING
    return f"{accuracy:.1%}" + ("" if math.isnan(ece) else f" / {ece:.3f}")


def _training(row: ModelResult) -> str:
    if not math.isfinite(row.train_seconds):
        return MISSING
    return f"{row.train_seconds:.1f} s / {row.steps} steps" + (" (!)" if row.flags else "")


def _sampling(row: ModelResult) -> str:
    seconds = _number(row, "sampling_seconds")
    if math.isnan(seconds) or not row.n_samples:
        return MISSING
    return f"{1000 * seconds / row.n_samples:.3g}"


def _network_evaluations(row: ModelResult) -> str:
    calls = _number(row, "network_evaluations")
    return MISSING if math.isnan(calls) else f"{calls:.0f}"


_LIKELIHOODS = ("nll", "bpd", "kl_data_model")

_MAIN = (
    Column("model", "model", "the row's label (its registered family when different)", _model),
    Column(
        "likelihood",
        "likelihood",
        "what the model's log p_θ(x) is: exact, estimate, bound (an ELBO), unnormalized "
        "(−E_θ(x), off by log Z_θ) or none (no density: GANs)",
        lambda row: row.likelihood or MISSING,
    ),
    Column(
        "nll",
        "NLL (nats)",
        "−1/N Σ_n log p_θ(x_n) on the evaluation split, ± its standard error; ≤ marks an upper "
        "bound (from an ELBO); an EBM's energy is normalised by an AIS estimate of log Z_θ",
        _metric("nll"),
        ("nll",),
    ),
    Column(
        "bpd",
        "bits/dim",
        "NLL / (D ln 2) for discrete data with the documented dequantization convention",
        _metric("bpd"),
        ("bpd",),
    ),
    Column(
        "kl_data_model",
        "KL(data‖model)",
        "KL(p_data ‖ p_θ) = E_data[log p_data(x) − log p_θ(x)] in nats (exact data density)",
        _metric("kl_data_model"),
        ("kl_data_model",),
    ),
    Column(
        "kl_model_data",
        "KL(model‖data)",
        "KL(p_θ ‖ p_data) = E_θ[log p_θ(y) − log p_data(y)] in nats over model samples, for "
        "exact densities only; an estimate below zero shows as '≤ v + 2·stderr'",
        _metric("kl_model_data"),
        ("kl_model_data",),
    ),
    Column(
        "kl_model_data_smoothed",
        "KL_h(model‖data)",
        "KL(p_θ∗N_h ‖ p_data∗N_h) in nats, both laws smoothed by the same Gaussian N(0, diag h²) "
        "(h by Scott's rule on the data): 0 ≤ KL_h ≤ KL(p_θ ‖ p_data), for every model that "
        "samples; kernel density estimates, bias O((M h^D)^-2)",
        _metric("kl_model_data_smoothed"),
        ("kl_model_data_smoothed",),
    ),
    Column(
        "mmd",
        "MMD²",
        "unbiased squared maximum mean discrepancy, multi-scale Gaussian kernel, samples vs data",
        _metric("mmd"),
        ("mmd",),
    ),
    Column(
        "sliced_wasserstein",
        "sliced W",
        "sliced Wasserstein distance between samples and data (random projections)",
        _metric("sliced_wasserstein"),
        ("sliced_wasserstein",),
    ),
    Column(
        "fid",
        "FD",
        "Fréchet distance between Gaussian fits of the features of samples and data",
        _metric("fid"),
        ("fid",),
    ),
    Column(
        "precision_recall",
        "precision / recall",
        "k-NN precision (samples inside the data manifold) and recall (data inside the samples' "
        "manifold), k = 5 (Kynkäänniemi et al. 2019)",
        _precision_recall,
        ("precision", "recall"),
    ),
    Column(
        "modes",
        "modes",
        "modes of the data's mixture with at least one sample within 3σ (of K), and the "
        "fraction of such high-quality samples",
        _modes,
        ("modes",),
    ),
    Column(
        "classifier",
        "p(c | x) accuracy / ECE",
        "the model's generative classifier by Bayes' rule, p(c | x) ∝ p_θ(x | c) p(c), on the "
        "held-out split: accuracy and expected calibration error (a bound-based classifier is "
        "not the Bayes classifier; see docs/evaluation.md)",
        _classifier,
        ("classifier_accuracy", "classifier_ece"),
    ),
    Column(
        "training",
        "training",
        "training time by the run's budget clock (CPU seconds in the default) and rounds "
        "taken; (!) marks a row flagged as short of plan",
        _training,
    ),
    Column(
        "sampling",
        "s / 1k samples",
        "wall-clock seconds to draw 1,000 samples (measured on the scored draw)",
        _sampling,
        ("sampling_seconds",),
    ),
    Column(
        "nfe",
        "NFE",
        "network evaluations per sample: batched forward calls of the model's networks while "
        "sampling (1 for a GAN or VAE, the steps of an MCMC or diffusion sampler, D for an "
        "autoregressive model)",
        _network_evaluations,
        ("network_evaluations",),
    ),
)

_FLAGS = Column(
    "flags",
    "training fell short",
    "why the row's training fell far short of plan: starved of CPU in a wall-clock budget, "
    "its loss still falling steeply at the end, or a loss frozen to the last bit (stalled: "
    "zero gradients) (see docs/compare.md)",
    lambda row: "; ".join(row.flags) or MISSING,
)

_SHOWN = {key for column in _MAIN for key in column.uses} | {"high_quality"}


def _present(column: Column, results: Sequence[ModelResult]) -> bool:
    return not column.uses or any(k in r.metrics for r in results for k in column.uses)


def columns(results: Sequence[ModelResult]) -> list[Column]:
    """The main table's columns for these rows.

    Adds a ``flags`` column when a row's training fell far short of plan
    (``probgen.compare.shortfall``) and an ``error`` column when a row failed.
    """
    out = [c for c in _MAIN if _present(c, results)]
    if any(r.flags for r in results):
        out.append(_FLAGS)
    if any(r.error for r in results):
        out.append(Column("error", "error", "why the row has no numbers", lambda r: r.error or ""))
    return out


def extra_columns(results: Sequence[ModelResult]) -> list[Column]:
    """The model column, then one column per other result the evaluator returned."""
    keys = dict.fromkeys(k for r in results for k in r.metrics if k not in _SHOWN)
    definition = "as returned by the evaluator (see docs/evaluation.md)"
    return [_MAIN[0], *(Column(k, k, definition, _metric(k), (k,)) for k in keys)]


def rich_table(results: Sequence[ModelResult], title: str) -> Table:
    """The main table as a rich ``Table`` for the terminal."""
    table = Table(title=title, title_justify="left")
    cols = columns(results)
    for c in cols:
        text = c.key in TEXT_COLUMNS
        table.add_column(
            c.header,
            style="bold cyan" if c.key == "model" else None,
            justify="left" if text else "right",
            overflow="fold",
        )
    for row in results:
        table.add_row(*(c.cell(row) for c in cols))
    return table
