"""The report's summary figure: what each model's quality cost, at a glance.

Up to three panels, one point per model (labelled), with ± one standard
error where the metric has one:

    sample quality  against training time       (which model learned most per second)
    sample quality  against sampling time       (s per 1,000 samples, log scale)
    NLL             against training time       (open markers: upper bounds, from an ELBO)

A y axis whose positive values span more than a factor 10 is logarithmic.
The sample-quality metric is the first of ``quality_order`` that most rows
have (Fréchet distance on features for images, MMD² for 2-D points).
A panel is drawn when at least one model has both of its numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from probgen.compare.leaderboard import METRICS, Board, Metric, quality_order
from probgen.compare.run import ModelResult
from probgen.core import Estimate

__all__ = ["plot_summary", "quality_metric"]

_BY_KEY = {m.key: m for m in METRICS}
_Axis = tuple[str, Callable[[ModelResult], tuple[float, float] | None]]


def quality_metric(rows: Sequence[ModelResult]) -> Metric | None:
    """The sample-quality metric of the summary: of ``quality_order(rows)``, the one most rows
    have (the first among equal counts); None when no row has any."""
    counts = {k: sum(_BY_KEY[k].value(r) is not None for r in rows) for k in quality_order(rows)}
    key = max(counts, key=lambda k: counts[k])
    return _BY_KEY[key] if counts[key] else None


def plot_summary(board: Board, path: Path) -> Path | None:
    """Save the summary figure of ``board`` to ``path``; None when no panel has a point."""
    rows = [r for r in board.rows if not r.error]
    train: _Axis = ("training time (s)", _BY_KEY["train_seconds"].value)
    sampling: _Axis = ("sampling time (s / 1,000 samples)", _BY_KEY["sampling"].value)
    nll = _BY_KEY["nll"]
    panels: list[tuple[_Axis, Metric]] = []
    quality = quality_metric(rows)
    if quality is not None:
        panels += [(train, quality), (sampling, quality)]
    panels.append((train, nll))
    panels = [(x, y) for x, y in panels if any(_point(r, x[1], y) for r in rows)]
    if not panels:
        return None
    fig = Figure(figsize=(4.2 * len(panels), 3.6))
    for i, ((x_label, x_value), metric) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        _panel(ax, rows, x_value, metric)
        ax.set_xlabel(x_label)
        if x_label.startswith("sampling"):
            ax.set_xscale("log")
        ys = [p[1] for r in rows if (p := _point(r, x_value, metric)) is not None]
        if min(ys) > 0 and max(ys) > 10 * min(ys):  # values over decades: a log axis
            ax.set_yscale("log")
        better = "lower" if metric.lower_is_better else "higher"
        ax.set_ylabel(f"{metric.header} ({better} is better)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return path


def _point(
    row: ModelResult, x: Callable[[ModelResult], tuple[float, float] | None], metric: Metric
) -> tuple[float, float, float] | None:
    """(x, y, stderr of y) of ``row``, or None when it lacks either number."""
    xv, yv = x(row), metric.value(row)
    if xv is None or yv is None:
        return None
    return xv[0], yv[0], yv[1]


def _panel(
    ax: Axes,
    rows: Sequence[ModelResult],
    x: Callable[[ModelResult], tuple[float, float] | None],
    metric: Metric,
) -> None:
    for row in rows:
        point = _point(row, x, metric)
        if point is None:
            continue
        xv, yv, se = point
        value = row.metrics.get(metric.key)
        bound = isinstance(value, Estimate) and value.kind == "bound"
        ax.errorbar(
            [xv],
            [yv],
            yerr=[se] if math.isfinite(se) and se > 0 else None,
            fmt="o",
            mfc="none" if bound else "tab:blue",
            mec="tab:blue",
            ecolor="tab:blue",
            ms=6,
        )
        ax.annotate(row.label, (xv, yv), xytext=(4, 3), textcoords="offset points", fontsize=7)
