"""The comparison's outputs: results.json, report.md and a self-contained report.html.

``report.md`` links the PNGs in ``figures/``; ``report.html``
(``probgen.compare.report_html``) embeds them as base64 ``data:`` URIs, so the
one file can be mailed or archived. Both say the same, in this order:

1. the summary line (data, models, budgets, wall time);
2. the leaderboard (``probgen.compare.leaderboard``): rows ranked by the data
   set's headline metric, columns grouped as likelihood / sample quality /
   cost, the best value of each column in bold (values within two standard
   errors of it in italics);
3. the summary figure (``probgen.compare.summary``): quality against
   training and sampling cost, NLL against training time;
4. the sample grid: one small multiple per model, same size and scale, data first;
5. warnings: failed rows, training that fell short of plan, rows not
   ranked, and the metrics left out with the evaluator's reason;
6. details: the full table (``probgen.compare.table``) with standard errors,
   the definition of every column and every other result;
7. the data beside its true density, and per model its samples, density
   heatmap and training curves.

In the HTML the leaderboard is ``<table id="leaderboard">`` and the full
table ``<table id="results">``, each with one ``<tr data-model="LABEL">``
per model in its ``<tbody>``, in leaderboard order.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from probgen.compare.leaderboard import GROUPS, Board, leaderboard
from probgen.compare.report_html import write_html
from probgen.compare.run import Comparison, ModelResult
from probgen.compare.sections import (
    FIGURE_NAMES,
    ranking_sentence,
    summary_sentence,
    tile_caption,
    warnings,
)
from probgen.compare.summary import plot_summary
from probgen.compare.table import Column, columns, extra_columns
from probgen.core import Estimate
from probgen.data.userfiles import data_file
from probgen.train.config import atomic_write_text

__all__ = ["results_dict", "write_html", "write_markdown", "write_reports", "write_results"]


def write_reports(comparison: Comparison) -> dict[str, Path]:
    """Write results.json, the summary figure, report.md and report.html into ``out_dir``."""
    out = comparison.out_dir
    summary = plot_summary(leaderboard(comparison.results), out / "figures" / "summary.png")
    return {
        "results": write_results(comparison, out / "results.json"),
        "markdown": write_markdown(comparison, out / "report.md", summary),
        "html": write_html(comparison, out / "report.html", summary),
    }


# ----------------------------------------------------------------------------- JSON


def results_dict(comparison: Comparison) -> dict[str, Any]:
    """Everything the reports show, as plain JSON data (non-finite numbers become null)."""
    c = comparison.config
    board = leaderboard(comparison.results)
    return _finite(
        {
            "name": c.name,
            "data": {"name": c.data.name, "options": c.data.options},
            "evaluation": vars(c.evaluation),
            "wall_time": comparison.wall_time,
            "columns": [
                {"key": col.key, "header": col.header, "definition": col.definition}
                for col in columns(comparison.results)
            ],
            "ranking": {
                "headline": board.headline and board.headline.metric.key,
                "reason": board.headline and board.headline.reason,
                "order": [r.label for r in board.rows],
                "best": {key: sorted(labels) for key, labels in board.best.items()},
                "tied": {key: sorted(labels) for key, labels in board.tied.items() if labels},
            },
            "models": [_row_dict(r, comparison.out_dir) for r in comparison.results],
            "config": c.source,
        }
    )


def write_results(comparison: Comparison, path: Path) -> Path:
    """Write ``results_dict`` as indented JSON to ``path``."""
    atomic_write_text(path, json.dumps(results_dict(comparison), indent=2, allow_nan=False) + "\n")
    return path


def _row_dict(r: ModelResult, out_dir: Path) -> dict[str, Any]:
    return {
        "label": r.label,
        "family": r.family,
        "likelihood": r.likelihood,
        "parameters": r.parameters,
        "source": r.source,
        "training": {
            "seconds": r.train_seconds,
            "steps": r.steps,
            "stop_reason": r.stop_reason,
            "cpu_seconds": r.train_cpu_seconds,
            "cpu_share": r.cpu_share,
            "threads": r.threads,
            "flags": r.flags,
        },
        "metrics": {k: _value_dict(v) for k, v in r.metrics.items()},
        "n_samples": r.n_samples,
        "evaluation_seconds": r.evaluation_seconds,
        "evaluation_cpu_seconds": r.evaluation_cpu_seconds,
        "n_modes": r.n_modes,
        "figures": {k: str(p.relative_to(out_dir)) for k, p in r.figures.items()},
        "skipped": dict(r.skipped),
        "notes": dict(r.notes),
        "error": r.error,
        "traceback": r.traceback,
    }


def _value_dict(value: Estimate | float) -> dict[str, Any] | float:
    if isinstance(value, Estimate):
        return {"value": value.value, "stderr": value.stderr, "kind": value.kind}
    return float(value)


def _finite(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ----------------------------------------------------------------------------- Markdown


def write_markdown(comparison: Comparison, path: Path, summary: Path | None = None) -> Path:
    """Write the Markdown report (figures linked relative to ``path``); ``summary``: the
    summary figure's PNG, when drawn."""
    board = leaderboard(comparison.results)
    out = path.parent
    lines = [f"# probgen compare: {comparison.config.name}", "", summary_sentence(comparison)]
    lines += ["", "## Leaderboard", "", ranking_sentence(board), ""]
    lines += _markdown_board(board)
    if summary is not None:
        lines += ["", _md_image(summary, "summary: quality against cost", out)]
    tiles = [(tile_caption(r, board), r.figures["tile"]) for r in board.rows if "tile" in r.figures]
    if tiles:
        lines += ["", "## Samples", ""]
        data = comparison.data_figures.get("tile")
        tiles = [("data", data), *tiles] if data else tiles
        lines += [" ".join(_md_image(p, caption, out) for caption, p in tiles)]
    notes = warnings(board)
    if notes:
        lines += ["", "## Warnings"]
        for heading, items in notes.sections():
            lines += ["", f"{heading}:", "", *(f"- {label}: {text}" for label, text in items)]
    cols = columns(board.rows)
    lines += ["", "## Details", "", "Every number with its standard error:", ""]
    lines += _markdown_table(cols, board.rows)
    lines += ["", "Columns:", ""]
    lines += [f"- **{col.header}**: {col.definition}" for col in cols]
    extra = extra_columns(board.rows)
    if len(extra) > 1:
        lines += ["", "All other results of the evaluator:", ""]
        lines += _markdown_table(extra, board.rows)
    source = data_file(comparison.config.data.name, comparison.config.data.options)
    if source is not None:
        lines += ["", f"Data file: `{source}`"]
    lines += ["", "## Data", ""]
    lines += [
        _md_image(p, f"data: {k}", out) for k, p in comparison.data_figures.items() if k != "tile"
    ]
    lines += ["", "## Models"]
    for r in board.rows:
        lines += ["", f"### {r.label}", ""]
        if r.error:
            lines += [f"Failed: {r.error}", ""]
        for flag in r.flags:
            lines += [f"**Training fell short of plan**: {flag}", ""]
        lines += [
            _md_image(p, f"{r.label}: {FIGURE_NAMES[k]}", out)
            for k, p in r.figures.items()
            if k != "tile"
        ]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _markdown_board(board: Board) -> list[str]:
    """The column groups in one line, then the leaderboard: best values in bold, tied ones in
    italics."""
    groups = [(g, [m.header for m in board.metrics if m.group == g]) for g in GROUPS]
    line = " · ".join(f"{g}: {', '.join(headers)}" for g, headers in groups if headers)
    header = ["#", "model", "kind", *(m.header for m in board.metrics)]
    rule = "|---:|---|---|" + "---:|" * len(board.metrics)
    lines = [f"Column groups: {line}.", "", _md_row(header), rule]
    for r in board.rows:
        cells = [str(board.rank.get(r.label, "")), _model_cell(r), r.likelihood or "—"]
        for m in board.metrics:
            text = m.text(r)
            if r.label in board.best[m.key]:
                text = f"**{text}**"
            elif r.label in board.tied[m.key]:
                text = f"*{text}*"
            cells.append(text)
        lines.append(_md_row(cells))
    return lines


def _model_cell(row: ModelResult) -> str:
    name = row.label if row.label == row.family else f"{row.label} ({row.family})"
    return name + (" ⚠" if row.flags or row.error else "")


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _markdown_table(cols: list[Column], rows: list[ModelResult]) -> list[str]:
    return [
        _md_row([c.header for c in cols]),
        "|" + "|".join("---" for _ in cols) + "|",
        *(_md_row([c.cell(r) for c in cols]) for r in rows),
    ]


def _md_image(path: Path, alt: str, out: Path) -> str:
    return f"![{alt}]({path.relative_to(out).as_posix()})"
