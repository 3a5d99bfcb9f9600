"""The comparison table: one row per model, the same columns in the terminal, Markdown and HTML.

A ``Column`` has a header, a one-line definition (shown under the Markdown
table and as the HTML header's tooltip) and a function from a
``ModelResult`` to the cell's text. ``columns(results)`` returns the fixed
columns around one column per metric the evaluator returned, so a new metric
shows up without changes here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.table import Table

from probgen.compare.run import ModelResult
from probgen.core import Estimate

__all__ = ["TEXT_COLUMNS", "Column", "columns", "format_estimate", "rich_table"]

MISSING = "—"
"""Text of a cell with no value (the metric does not apply, or the row failed)."""


@dataclass(frozen=True)
class Column:
    """A table column: header, definition, and the cell text of a row."""

    key: str
    header: str
    definition: str
    cell: Callable[[ModelResult], str]


# Metrics with a column of their own, in display order: key -> (header, definition).
# Any other metric the evaluator returns gets a column headed by its key.
_KNOWN_METRICS: dict[str, tuple[str, str]] = {
    "nll": (
        "NLL (nats)",
        "−1/N Σ log p_θ(x_n) on the evaluation split, ± its standard error; "
        "≤ marks an upper bound (from an ELBO)",
    ),
    "bpd": ("bits/dim", "NLL / (D ln 2), D scalars per example (same kind as the NLL)"),
    "kl_data_model": (
        "KL(data‖model)",
        "E_data[log p_data(x) − log p_θ(x)] in nats, from the exact data density",
    ),
}

TEXT_COLUMNS = ("model", "likelihood", "error")
"""Columns of words, aligned left (numbers align right)."""

_NORMALIZED = ("exact", "estimate", "bound")
"""Likelihood kinds whose NLL compares across models (unnormalized energies do not)."""


def format_estimate(est: Estimate) -> str:
    """``value ± stderr`` with 4 significant digits; ``≤ value`` for an upper bound."""
    prefix = "≤ " if est.kind == "bound" else ""
    if not math.isfinite(est.value):
        return f"{prefix}{est.value}"
    text = f"{prefix}{est.value:.4g}"
    if math.isfinite(est.stderr) and est.stderr > 0:
        text += f" ± {est.stderr:.2g}"
    return text


def _metric_cell(key: str) -> Callable[[ModelResult], str]:
    def cell(row: ModelResult) -> str:
        est = row.metrics.get(key)
        if est is None or (key in _KNOWN_METRICS and est.kind not in _NORMALIZED):
            return MISSING
        return format_estimate(est)

    return cell


def _model(row: ModelResult) -> str:
    return row.label if row.label == row.family else f"{row.label} ({row.family})"


def _likelihood(row: ModelResult) -> str:
    return row.likelihood or MISSING


def _modes(row: ModelResult) -> str:
    if not row.modes:
        return MISSING
    return f"{row.modes['modes']:.0f}/{row.modes['n_modes']:.0f} ({row.modes['high_quality']:.0%})"


def _train(row: ModelResult) -> str:
    if not math.isfinite(row.train_seconds):
        return MISSING
    return f"{row.train_seconds:.1f} s / {row.steps} steps"


def _sampling(row: ModelResult) -> str:
    if not math.isfinite(row.sample_seconds) or not row.n_samples:
        return MISSING
    return f"{1000 * row.sample_seconds / row.n_samples:.3g} s"


def _status(row: ModelResult) -> str:
    return row.error or ""


_FIRST = (
    Column("model", "model", "label (registered family when different)", _model),
    Column(
        "likelihood",
        "likelihood",
        "what log p_θ means: exact, estimate, bound (ELBO), unnormalized (−E_θ), none (GAN)",
        _likelihood,
    ),
)
_LAST = (
    Column(
        "modes",
        "modes",
        "modes with ≥ 1 sample within 3σ (of K), and the fraction of such high-quality samples",
        _modes,
    ),
    Column("train", "training", "wall-clock training time and rounds taken", _train),
    Column("sampling", "s / 1k samples", "wall-clock seconds to draw 1,000 samples", _sampling),
)


def columns(results: Sequence[ModelResult]) -> list[Column]:
    """The table's columns for these rows: fixed ones, then one per metric present."""
    present = [k for r in results for k in r.metrics]
    keys = [k for k in _KNOWN_METRICS if k in present]
    keys += [k for k in dict.fromkeys(present) if k not in _KNOWN_METRICS]
    metric_columns = [
        Column(
            k, *_KNOWN_METRICS.get(k, (k, f"{k}, as returned by the evaluator")), _metric_cell(k)
        )
        for k in keys
    ]
    out = [*_FIRST, *metric_columns, *_LAST]
    if not any(r.modes for r in results):
        out = [c for c in out if c.key != "modes"]
    if any(r.error for r in results):
        out.append(Column("error", "error", "why the row has no numbers", _status))
    return out


def rich_table(results: Sequence[ModelResult], title: str) -> Table:
    """The comparison as a rich ``Table`` for the terminal."""
    table = Table(title=title, title_justify="left")
    cols = columns(results)
    for c in cols:
        text = c.key in TEXT_COLUMNS
        table.add_column(
            c.header,
            style="bold cyan" if c.key == "model" else None,
            justify="left" if text else "right",
        )
    for row in results:
        table.add_row(*(c.cell(row) for c in cols))
    return table
