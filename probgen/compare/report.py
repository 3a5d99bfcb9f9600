"""The comparison's outputs: results.json, report.md and a self-contained report.html.

``report.md`` links the PNGs in ``figures/``; ``report.html`` embeds them as
base64 ``data:`` URIs, so the one file can be mailed or archived. Both show
the same table (``probgen.compare.table``), the definition of every column,
the data beside its true density, and per model its samples, density heatmap
and training curves, and under the table a footnote per model naming the results
the evaluator left out and why. In the HTML, the table is ``<table id="results">`` with
one ``<tr data-model="LABEL">`` per model in its ``<tbody>``.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

from probgen.compare.run import Comparison, ModelResult
from probgen.compare.table import TEXT_COLUMNS, Column, columns, extra_columns
from probgen.core import Estimate
from probgen.train.config import atomic_write_text

__all__ = ["results_dict", "write_html", "write_markdown", "write_reports", "write_results"]

_FIGURE_NAMES = {
    "samples": "samples",
    "classes": "samples by class",
    "density": "density",
    "training": "training curves",
}


def write_reports(comparison: Comparison) -> dict[str, Path]:
    """Write results.json, report.md and report.html into ``comparison.out_dir``."""
    out = comparison.out_dir
    return {
        "results": write_results(comparison, out / "results.json"),
        "markdown": write_markdown(comparison, out / "report.md"),
        "html": write_html(comparison, out / "report.html"),
    }


# ----------------------------------------------------------------------------- JSON


def results_dict(comparison: Comparison) -> dict[str, Any]:
    """Everything the reports show, as plain JSON data (non-finite numbers become null)."""
    c = comparison.config
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


# ----------------------------------------------------------------------------- shared text


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


def _summary(comparison: Comparison) -> str:
    c = comparison.config
    budget = _budget(comparison)
    workers = f", {c.workers} worker processes" if c.workers > 1 else ""
    e = c.evaluation
    return (
        f"Data: {c.data.name}; {len(c.models)} models, {budget}{workers}; metrics on the {e.split} "
        f"split with {e.n_samples} samples per model (seed {e.seed}); total wall time "
        f"{comparison.wall_time:.0f} s."
    )


def _not_computed(results: list[ModelResult]) -> list[tuple[str, str]]:
    """(label, "name, name: reason") per model and reason for the results left out."""
    out = []
    for r in results:
        by_reason: dict[str, list[str]] = {}
        for name, reason in r.skipped.items():
            by_reason.setdefault(reason, []).append(name)
        out += [(r.label, f"{', '.join(names)}: {why}") for why, names in by_reason.items()]
    return out


# ----------------------------------------------------------------------------- Markdown


def write_markdown(comparison: Comparison, path: Path) -> Path:
    """Write the Markdown report (figures linked relative to ``path``)."""
    cols = columns(comparison.results)
    out = path.parent
    lines = [f"# probgen compare: {comparison.config.name}", "", _summary(comparison), ""]
    lines += _markdown_table(cols, comparison.results)
    lines += ["", "Columns:", ""]
    lines += [f"- **{col.header}**: {col.definition}" for col in cols]
    notes = _not_computed(comparison.results)
    if notes:
        lines += ["", "Not computed, and why:", ""]
        lines += [f"- {label}: {text}" for label, text in notes]
    extra = extra_columns(comparison.results)
    if len(extra) > 1:
        lines += ["", "All other results of the evaluator:", ""]
        lines += _markdown_table(extra, comparison.results)
    lines += ["", "## Data", ""]
    lines += [_md_image(p, f"data: {k}", out) for k, p in comparison.data_figures.items()]
    lines += ["", "## Models"]
    for r in comparison.results:
        lines += ["", f"### {r.label}", ""]
        if r.error:
            lines += [f"Failed: {r.error}", ""]
        for flag in r.flags:
            lines += [f"**Training fell short of plan**: {flag}", ""]
        lines += [_md_image(p, f"{r.label}: {_FIGURE_NAMES[k]}", out) for k, p in r.figures.items()]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _markdown_table(cols: list[Column], rows: list[ModelResult]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return [
        line([c.header for c in cols]),
        "|" + "|".join("---" for _ in cols) + "|",
        *(line([c.cell(r) for c in cols]) for r in rows),
    ]


def _md_image(path: Path, alt: str, out: Path) -> str:
    return f"![{alt}]({path.relative_to(out).as_posix()})"


# ----------------------------------------------------------------------------- HTML

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222; }
table { border-collapse: collapse; font-size: 14px; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; cursor: help; }
td:first-child, th:first-child, .text { text-align: left; }
dl { font-size: 13px; } dt { font-weight: bold; } dd { margin: 0 0 6px 1.5em; }
.figures { display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-start; }
.figures img { max-height: 360px; border: 1px solid #eee; }
.error { color: #b00; }
.flag { color: #a60; }
"""


def write_html(comparison: Comparison, path: Path) -> Path:
    """Write the self-contained HTML report (every image embedded as base64 PNG)."""
    cols = columns(comparison.results)
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>probgen compare: {e(comparison.config.name)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>probgen compare: {e(comparison.config.name)}</h1>",
        f"<p>{e(_summary(comparison))}</p>",
        _html_table(cols, comparison.results),
        "<h3>Columns</h3><dl>",
        *(f"<dt>{e(c.header)}</dt><dd>{e(c.definition)}</dd>" for c in cols),
        "</dl>",
        *_html_not_computed(comparison.results),
        *_html_extra(comparison.results),
        "<h2>Data</h2>",
        _html_figures(comparison.data_figures, "data"),
        "<h2>Models</h2>",
    ]
    for r in comparison.results:
        parts.append(f'<section id="model-{e(r.label)}"><h3>{e(r.label)}</h3>')
        if r.error:
            parts.append(f'<p class="error">Failed: {e(r.error)}</p>')
        parts += [f'<p class="flag">Training fell short of plan: {e(f)}</p>' for f in r.flags]
        parts += [_html_figures(r.figures, r.label), "</section>"]
    parts.append("</body></html>")
    atomic_write_text(path, "\n".join(parts) + "\n")
    return path


def _html_not_computed(rows: list[ModelResult]) -> list[str]:
    notes = _not_computed(rows)
    if not notes:
        return []
    items = "".join(f"<li>{html.escape(label)}: {html.escape(text)}</li>" for label, text in notes)
    return [f'<h3>Not computed</h3><ul id="not-computed">{items}</ul>']


def _html_extra(rows: list[ModelResult]) -> list[str]:
    extra = extra_columns(rows)
    if len(extra) < 2:
        return []
    return ["<h3>All other results of the evaluator</h3>", _html_table(extra, rows, "more")]


def _html_table(cols: list[Column], rows: list[ModelResult], table_id: str = "results") -> str:
    e = html.escape
    head = "".join(f'<th title="{e(c.definition)}"{_align(c)}>{e(c.header)}</th>' for c in cols)
    body = "".join(
        f'<tr data-model="{e(r.label)}">'
        + "".join(f"<td{_align(c)}>{e(c.cell(r))}</td>" for c in cols)
        + "</tr>"
        for r in rows
    )
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _align(column: Column) -> str:
    return ' class="text"' if column.key in TEXT_COLUMNS else ""


def _html_figures(figures: dict[str, Path], label: str) -> str:
    images = "".join(
        f'<img alt="{html.escape(f"{label}: {_FIGURE_NAMES[k]}")}" src="{_data_uri(p)}">'
        for k, p in figures.items()
    )
    return f'<div class="figures">{images}</div>'


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
