"""The leaderboard: the rows ranked by the data set's headline metric, the best of each column.

The **headline** is the NLL when every row that ran has a comparable one
(exact, estimated or a bound), else the first sample-quality metric of
``quality_order`` that every such row has (Fréchet distance on a feature
network's features, then MMD², sliced Wasserstein, the smoothed KL), else the
one most rows have. A Fréchet distance on the raw values (2-D points, any data
without a shipped feature network) goes last: it compares the means and
covariances of the points only, so a single Gaussian fitted to eight modes
scores as well as a model that has them all, while MMD² with its
characteristic kernel, sliced Wasserstein and the KL see the whole law.
Rows are sorted by it (best first, config order among equal values); rows
without it follow, failed rows come last.

A cell is marked **best** when its value is the column's best, and **tied**
when it is within two standard errors of it: with the best value b ± s_b and
the cell's v ± s_v,

    |v − b| ≤ 2 √(s_b² + s_v²)

(a difference within two standard errors is not a ranking). Values without a
standard error are never tied. An NLL that is a bound counts at its value: a
bound that wins is a true win (the NLL is at most that), a bound that loses
may not be a true loss.

Columns come in three groups: likelihood, sample quality, cost. The
leaderboard holds one number per cell and nothing else, so it fits a laptop
screen; the full table (``probgen.compare.table``), with standard errors and
every other result, is the report's detail.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from probgen.compare.run import ModelResult
from probgen.compare.table import MISSING
from probgen.core import Estimate
from probgen.evaluate.display import DIVERGENCES, divergence_text
from probgen.evaluate.features import RAW_VALUES

__all__ = [
    "GROUPS",
    "METRICS",
    "QUALITY_HEADLINES",
    "Board",
    "Headline",
    "Metric",
    "best_rows",
    "headline",
    "leaderboard",
    "quality_order",
]

GROUPS = ("likelihood", "sample quality", "cost")
"""The column groups, in the order the table shows them."""

QUALITY_HEADLINES = ("fid", "mmd", "sliced_wasserstein", "kl_model_data_smoothed")
"""Sample-quality metrics that can rank the rows when not all have an NLL, in preference."""

_COMPARABLE = ("exact", "estimate", "bound")


@dataclass(frozen=True)
class Metric:
    """A leaderboard column: one number per row, lower or higher being better.

    ``value(row)`` returns (value, standard error) or None when the row has
    no such number; ``text(row)`` is the cell (``MISSING`` when None).
    """

    key: str
    header: str
    group: str
    lower_is_better: bool
    value: Callable[[ModelResult], tuple[float, float] | None]
    text: Callable[[ModelResult], str]
    definition: str


def _estimate(row: ModelResult, key: str) -> Estimate | None:
    value = row.metrics.get(key)
    if value is None:
        return None
    estimate = value if isinstance(value, Estimate) else Estimate(float(value), math.nan, "")
    if key in ("nll", "bpd", "kl_data_model") and estimate.kind not in _COMPARABLE:
        return None  # an energy off by log Z is no NLL
    return estimate if math.isfinite(estimate.value) else None


def _metric_value(key: str) -> Callable[[ModelResult], tuple[float, float] | None]:
    def value(row: ModelResult) -> tuple[float, float] | None:
        e = _estimate(row, key)
        return None if e is None else (e.value, e.stderr)

    return value


def _metric_text(key: str, digits: int) -> Callable[[ModelResult], str]:
    def text(row: ModelResult) -> str:
        e = _estimate(row, key)
        if e is None:
            return MISSING
        if key in DIVERGENCES and e.value < 0:
            return divergence_text(e, digits)
        return ("≤ " if e.kind == "bound" else "") + f"{e.value:.{digits}g}"

    return text


def _result(
    key: str, header: str, group: str, lower: bool, definition: str, digits: int = 3
) -> Metric:
    text = _metric_text(key, digits)
    return Metric(key, header, group, lower, _metric_value(key), text, definition)


def _seconds(row: ModelResult) -> tuple[float, float] | None:
    return (row.train_seconds, math.nan) if math.isfinite(row.train_seconds) else None


def _per_thousand(row: ModelResult) -> tuple[float, float] | None:
    e = _estimate(row, "sampling_seconds")
    if e is None or not row.n_samples:
        return None
    return (1000 * e.value / row.n_samples, math.nan)


def _number_text(
    value: Callable[[ModelResult], tuple[float, float] | None], fmt: str
) -> Callable[[ModelResult], str]:
    def text(row: ModelResult) -> str:
        v = value(row)
        return MISSING if v is None else format(v[0], fmt)

    return text


def _modes_text(row: ModelResult) -> str:
    e = _estimate(row, "modes")
    if e is None:
        return MISSING
    return f"{e.value:.0f}" + (f"/{row.n_modes}" if row.n_modes else "")


_accuracy = _metric_value("classifier_accuracy")


METRICS: tuple[Metric, ...] = (
    _result(
        "nll", "NLL", "likelihood", True, "nats per example, −1/N Σ log p_θ(x_n); ≤: a bound", 4
    ),
    _result("bpd", "bits/dim", "likelihood", True, "NLL / (D ln 2), dequantized data", 4),
    _result(
        "kl_data_model", "KL(data‖model)", "likelihood", True, "nats, from the exact data density"
    ),
    Metric(
        "classifier_accuracy",
        "p(c|x) acc.",
        "likelihood",
        False,
        _accuracy,
        _number_text(_accuracy, ".1%"),
        "accuracy of the Bayes-rule classifier p(c | x) ∝ p_θ(x | c) p(c)",
    ),
    _result("fid", "FD", "sample quality", True, "Fréchet distance of feature Gaussians"),
    _result("mmd", "MMD²", "sample quality", True, "squared MMD, samples vs data"),
    _result("sliced_wasserstein", "sliced W", "sample quality", True, "sliced Wasserstein"),
    _result(
        "kl_model_data_smoothed",
        "KL_h(model‖data)",
        "sample quality",
        True,
        "KL of the Gaussian-smoothed laws, ≤ KL(model‖data)",
    ),
    _result("precision", "precision", "sample quality", False, "k-NN precision (k = 5)"),
    _result("recall", "recall", "sample quality", False, "k-NN recall (k = 5)"),
    Metric(
        "modes",
        "modes",
        "sample quality",
        False,
        _metric_value("modes"),
        _modes_text,
        "mixture modes with a sample within 3σ",
    ),
    Metric(
        "train_seconds",
        "train (s)",
        "cost",
        True,
        _seconds,
        _number_text(_seconds, ".3g"),
        "training seconds by the run's budget clock",
    ),
    Metric(
        "sampling",
        "s/1k samples",
        "cost",
        True,
        _per_thousand,
        _number_text(_per_thousand, ".3g"),
        "wall-clock seconds to draw 1,000 samples",
    ),
    Metric(
        "network_evaluations",
        "NFE",
        "cost",
        True,
        _metric_value("network_evaluations"),
        _number_text(_metric_value("network_evaluations"), ".0f"),
        "network evaluations per sample",
    ),
)
"""Every leaderboard column; a column shows when some row has a value."""


@dataclass(frozen=True)
class Headline:
    """The metric the rows are ranked by, and why it was chosen (one sentence)."""

    metric: Metric
    reason: str


def _on_raw_values(rows: Sequence[ModelResult]) -> bool:
    """Whether some row's Fréchet distance was computed on the raw values (its evaluator's note)."""
    return any(RAW_VALUES in r.notes.get("fid", "") for r in rows)


def quality_order(rows: Sequence[ModelResult]) -> tuple[str, ...]:
    """``QUALITY_HEADLINES`` in the order that can rank ``rows``: the FD last when it is on
    the raw values (see the module docstring)."""
    if not _on_raw_values(rows):
        return QUALITY_HEADLINES
    return (*(k for k in QUALITY_HEADLINES if k != "fid"), "fid")


def headline(rows: Sequence[ModelResult]) -> Headline | None:
    """The ranking metric of these rows (see the module docstring); None if no row has one."""
    ran = [r for r in rows if not r.error]
    by_key = {m.key: m for m in METRICS}
    nll = by_key["nll"]
    missing = [r.label for r in ran if nll.value(r) is None]
    if ran and not missing:
        return Headline(nll, "NLL: every model has a comparable likelihood")
    without = f"{', '.join(missing)} {'has' if len(missing) == 1 else 'have'} no NLL"
    if _on_raw_values(ran):
        without += ", and FD on the raw values compares only means and covariances"
    order = quality_order(ran)
    for key in order:
        if ran and all(by_key[key].value(r) is not None for r in ran):
            return Headline(by_key[key], f"{by_key[key].header}: {without}")
    counts = {key: sum(by_key[key].value(r) is not None for r in ran) for key in order}
    counts["nll"] = len(ran) - len(missing)
    key = max(counts, key=lambda k: counts[k])  # the first among equal counts
    if counts[key] == 0:
        return None
    return Headline(by_key[key], f"{by_key[key].header}: the metric most models have")


def best_rows(metric: Metric, rows: Sequence[ModelResult]) -> tuple[set[str], set[str]]:
    """Labels of the rows marked best, and of those tied with the best, in ``metric``'s column
    (see the module docstring); the two sets are disjoint."""
    values = {r.label: v for r in rows if (v := metric.value(r)) is not None}
    if not values:
        return set(), set()
    sign = 1.0 if metric.lower_is_better else -1.0
    best, best_se = min(values.values(), key=lambda v: sign * v[0])

    def tied(v: tuple[float, float]) -> bool:
        value, se = v
        if not (math.isfinite(se) and math.isfinite(best_se)) or (se <= 0 and best_se <= 0):
            return False
        return abs(value - best) <= 2 * math.sqrt(se**2 + best_se**2)

    top = {label for label, v in values.items() if v[0] == best}
    return top, {label for label, v in values.items() if label not in top and tied(v)}


@dataclass(frozen=True)
class Board:
    """The leaderboard: ranked rows, the columns shown, each column's best rows.

    Attributes:
        rows: the rows, ranked (see ``leaderboard``).
        rank: label -> 1, 2, … for rows with the headline value (absent otherwise).
        metrics: the columns some row has, in group order.
        best: metric key -> labels of the rows with the column's best value.
        tied: metric key -> labels of the other rows within two standard errors of it.
        headline: the ranking metric, or None when no row has one (config order).
    """

    rows: list[ModelResult]
    rank: dict[str, int]
    metrics: list[Metric]
    best: dict[str, set[str]]
    tied: dict[str, set[str]]
    headline: Headline | None


def leaderboard(rows: Sequence[ModelResult]) -> Board:
    """Rank ``rows`` by their headline metric and mark the best value of every column."""
    top = headline(rows)
    ranked = list(rows)
    rank: dict[str, int] = {}
    if top is not None:
        sign = 1.0 if top.metric.lower_is_better else -1.0

        def key(row: ModelResult) -> tuple[int, float]:
            v = top.metric.value(row)
            if row.error:
                return (2, 0.0)
            return (1, 0.0) if v is None else (0, sign * v[0])

        ranked.sort(key=key)  # stable: config order among equal keys
        scored = [r for r in ranked if not r.error and top.metric.value(r) is not None]
        rank = {r.label: i + 1 for i, r in enumerate(scored)}
    shown = [m for m in METRICS if any(m.value(r) is not None for r in rows)]
    marks = {m.key: best_rows(m, rows) for m in shown}
    best = {key: top for key, (top, _) in marks.items()}
    tied = {key: close for key, (_, close) in marks.items()}
    return Board(ranked, rank, shown, best, tied, top)
