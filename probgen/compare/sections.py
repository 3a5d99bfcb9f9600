"""What report.md and report.html both say, as plain text: the summary line, the ranking
sentence, the warnings and the captions. Each writer only lays them out."""

from __future__ import annotations

from dataclasses import dataclass

from probgen.compare.config import data_title
from probgen.compare.leaderboard import Board
from probgen.compare.run import Comparison, ModelResult

__all__ = [
    "FIGURE_NAMES",
    "Warnings",
    "ranking_sentence",
    "summary_sentence",
    "tile_caption",
    "warnings",
]

FIGURE_NAMES = {
    "samples": "samples",
    "tile": "sample grid",
    "classes": "samples by class",
    "density": "density",
    "training": "training curves",
}
"""Alt text of each kind of picture."""

BEST_RULE = (
    "bold: the column's best value; shaded (italics in report.md): within two standard errors of it"
)


def _budget(comparison: Comparison) -> str:
    trained = [e.config.train for e in comparison.config.models if e.source == "trained"]
    budgets = {(t.time_budget, t.budget_clock) for t in trained}
    if not trained:
        return "all loaded from runs"
    if all(t.time_budget is None for t in trained):
        return "each trained for its family's fixed number of steps"
    if len(budgets) == 1:
        ((seconds, clock),) = budgets
        kind = "CPU" if clock == "cpu" else "wall-clock"
        return f"each trained for {seconds:.1f} s of {kind} time"
    return "trained with their own budgets"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def summary_sentence(comparison: Comparison) -> str:
    """Data, models, budget, workers, evaluation settings and the total wall time.

    It begins ``Data: {data_title};``, which the HTML report marks up with the file's path.
    """
    c = comparison.config
    budget = _budget(comparison)
    workers = f", {c.workers} worker processes" if c.workers > 1 else ""
    e = c.evaluation
    return (
        f"Data: {data_title(c)}; {_count(len(c.models), 'model')}, {budget}{workers}; metrics on "
        f"the {e.split} "
        f"split with {e.n_samples} samples per model (seed {e.seed}); total wall time "
        f"{comparison.wall_time:.0f} s."
    )


def ranking_sentence(board: Board) -> str:
    """How the leaderboard is ordered and what the marks mean."""
    if board.headline is None:
        return f"No metric is shared by the models: rows in config order; {BEST_RULE}."
    metric = board.headline.metric
    better = "lower" if metric.lower_is_better else "higher"
    return f"Ranked by {board.headline.reason} ({better} is better); {BEST_RULE}."


def tile_caption(row: ModelResult, board: Board) -> str:
    """A small multiple's caption: rank, label and the headline value."""
    if board.headline is None:
        return row.label
    rank = board.rank.get(row.label)
    head = board.headline.metric
    prefix = f"{rank}. " if rank else ""
    return f"{prefix}{row.label} · {head.header} {head.text(row)}"


@dataclass(frozen=True)
class Warnings:
    """Why a row's numbers may mislead, each item as (label, sentence).

    Attributes:
        failed: rows whose training or evaluation failed (their error).
        short: rows whose training fell far short of plan (``probgen.compare.shortfall``).
        unranked: rows that ran but lack the headline metric.
        left_out: results the evaluator left out, grouped by reason ("name, name: why").
    """

    failed: list[tuple[str, str]]
    short: list[tuple[str, str]]
    unranked: list[tuple[str, str]]
    left_out: list[tuple[str, str]]

    def __bool__(self) -> bool:
        return bool(self.failed or self.short or self.unranked or self.left_out)

    def sections(self) -> list[tuple[str, list[tuple[str, str]]]]:
        """(heading, items) of the non-empty groups, most serious first."""
        groups = [
            ("Failed", self.failed),
            ("Training fell short of plan", self.short),
            ("Not ranked", self.unranked),
            ("Metrics left out, and why", self.left_out),
        ]
        return [(heading, items) for heading, items in groups if items]


def warnings(board: Board) -> Warnings:
    """The warnings of ``board``'s rows (in its order)."""
    rows = board.rows
    left_out = []
    for r in rows:
        by_reason: dict[str, list[str]] = {}
        for name, reason in r.skipped.items():
            by_reason.setdefault(reason, []).append(name)
        left_out += [(r.label, f"{', '.join(names)}: {why}") for why, names in by_reason.items()]
    unranked = []
    if board.headline is not None:
        header = board.headline.metric.header
        unranked = [
            (r.label, f"no {header}, so it is listed after the ranked models")
            for r in rows
            if not r.error and r.label not in board.rank
        ]
    return Warnings(
        failed=[(r.label, r.error) for r in rows if r.error],
        short=[(r.label, flag) for r in rows for flag in r.flags],
        unranked=unranked,
        left_out=left_out,
    )
