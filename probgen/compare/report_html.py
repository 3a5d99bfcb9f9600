"""report.html: the comparison's report as one self-contained page that fits any screen.

The page needs no network and runs no script: every picture is a base64
``data:`` URI, the style is inline. Its layout holds from a phone (390 px)
to a laptop (1280 px) without horizontal scrolling of the page:

- text wraps anywhere a long word (a path, a reason) would overflow;
- every table sits in a ``<div class="scroll">`` that scrolls on its own when
  the table is wider than the screen; the leaderboard's cells hold one number
  each, so at 1280 px it fits without scrolling;
- pictures shrink to the width of the page (``max-width: 100%``);
- the sample grid is a CSS grid of equal tiles, as many per line as fit.

The sections and their order are those of ``probgen.compare.report``.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from probgen.compare.config import data_title
from probgen.compare.leaderboard import GROUPS, Board, leaderboard
from probgen.compare.run import Comparison, ModelResult
from probgen.compare.sections import (
    FIGURE_NAMES,
    ranking_sentence,
    summary_sentence,
    tile_caption,
    warnings,
)
from probgen.compare.table import TEXT_COLUMNS, Column, columns, extra_columns
from probgen.data.userfiles import data_file
from probgen.train.config import atomic_write_text

__all__ = ["write_html"]

_STYLE = """
*, *::before, *::after { box-sizing: border-box; }
body { font-family: system-ui, sans-serif; margin: 0 auto; padding: 12px 16px; max-width: 1240px;
  color: #222; line-height: 1.4; overflow-wrap: anywhere; }
h1 { font-size: 1.5em; } h2 { font-size: 1.25em; margin-top: 1.6em; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 7px; text-align: right; }
td { white-space: nowrap; }
td.text { white-space: normal; min-width: 6em; }
td.model { white-space: nowrap; }
th { background: #f4f4f4; font-weight: 600; vertical-align: bottom; overflow-wrap: normal; }
th[title] { cursor: help; }
td.text, th.text { text-align: left; }
tr.groups th { text-align: center; border-bottom: 2px solid #bbb; background: #e9eef5; }
tr.groups th.blank { background: none; border-bottom: none; }
td.best { font-weight: 700; background: #cfeccf; }
td.tied { background: #eef8ee; }
td.model { font-weight: 600; position: sticky; left: 0; background: #fff; }
.legend { font-size: 13px; color: #444; }
img { max-width: 100%; height: auto; }
.summary { overflow-x: auto; }
.summary img { border: 1px solid #eee; min-width: 640px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 8px; }
.tiles figure { margin: 0; }
.tiles img { width: 100%; border: 1px solid #eee; image-rendering: pixelated; }
.tiles figcaption { font-size: 12px; text-align: center; }
.figures { display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-start; }
.figures img { max-height: 360px; border: 1px solid #eee; }
details { margin: 1em 0; } summary { cursor: pointer; font-weight: 600; }
dl { font-size: 13px; } dt { font-weight: bold; } dd { margin: 0 0 6px 1.5em; }
.error { color: #b00; }
.flag { color: #a60; }
"""


def write_html(comparison: Comparison, path: Path, summary: Path | None = None) -> Path:
    """Write the self-contained HTML report (every image embedded as base64 PNG); ``summary``:
    the summary figure's PNG, when drawn."""
    board = leaderboard(comparison.results)
    cols = columns(board.rows)
    e = html.escape
    title = f"probgen compare: {e(comparison.config.name)}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{title}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{title}</h1>",
        f"<p>{_summary(comparison)}</p>",
        '<h2 id="ranking">Leaderboard</h2>',
        f'<p class="legend">{e(ranking_sentence(board))}</p>',
        _board_table(board),
    ]
    if summary is not None:
        alt = "summary: quality against training and sampling cost, NLL against training time"
        parts.append(f'<div class="summary"><img alt="{alt}" src="{_data_uri(summary)}"></div>')
    parts += _tiles(comparison, board)
    parts += _warnings(board)
    parts += [
        "<details><summary>Details: every number with its standard error, every column "
        "defined</summary>",
        _table(cols, board.rows),
        "<dl>",
        *(f"<dt>{e(c.header)}</dt><dd>{e(c.definition)}</dd>" for c in cols),
        "</dl>",
        *_extra(board.rows),
        *_data_source(comparison),
        "</details>",
        "<h2>Data</h2>",
        _figures({k: p for k, p in comparison.data_figures.items() if k != "tile"}, "data"),
        "<h2>Models</h2>",
    ]
    for r in board.rows:
        parts.append(f'<section id="model-{e(r.label)}"><h3>{e(r.label)}</h3>')
        if r.error:
            parts.append(f'<p class="error">Failed: {e(r.error)}</p>')
        parts += [f'<p class="flag">Training fell short of plan: {e(f)}</p>' for f in r.flags]
        figures = {k: p for k, p in r.figures.items() if k != "tile"}
        parts += [_figures(figures, r.label), "</section>"]
    parts.append("</body></html>")
    atomic_write_text(path, "\n".join(parts) + "\n")
    return path


def _board_table(board: Board) -> str:
    """The leaderboard with its row of column groups; best cells get ``class="best"``, cells
    tied with the best ``class="tied"``."""
    e = html.escape
    groups = [(g, [m for m in board.metrics if m.group == g]) for g in GROUPS]
    group_row = '<tr class="groups"><th class="blank" colspan="3"></th>' + "".join(
        f'<th colspan="{len(ms)}">{e(g)}</th>' for g, ms in groups if ms
    )
    head = '<tr><th>#</th><th class="text">model</th><th class="text">kind</th>' + "".join(
        f'<th title="{e(m.definition)}">{_breakable(m.header)}</th>' for _, ms in groups for m in ms
    )
    body = []
    for r in board.rows:
        mark = ' <a href="#warnings" title="see Warnings">⚠</a>' if r.flags or r.error else ""
        name = r.label if r.label == r.family else f"{r.label} ({r.family})"
        cells = [
            f"<td>{board.rank.get(r.label, '')}</td>",
            f'<td class="text model">{e(name)}{mark}</td>',
            f'<td class="text">{e(r.likelihood or "—")}</td>',
        ]
        for _, ms in groups:
            for m in ms:
                mark = (
                    ' class="best"'
                    if r.label in board.best[m.key]
                    else ' class="tied"'
                    if r.label in board.tied[m.key]
                    else ""
                )
                cells.append(f"<td{mark}>{e(m.text(r))}</td>")
        body.append(f'<tr data-model="{e(r.label)}">{"".join(cells)}</tr>')
    return (
        f'<div class="scroll"><table id="leaderboard"><thead>{group_row}</tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _breakable(header: str) -> str:
    """``header`` escaped, with line-break opportunities before "(" and after "‖" and "/"."""
    text = html.escape(header)
    return text.replace("(", "<wbr>(").replace("‖", "‖<wbr>").replace("/", "/<wbr>")


def _tiles(comparison: Comparison, board: Board) -> list[str]:
    tiles = [(tile_caption(r, board), r.figures["tile"]) for r in board.rows if "tile" in r.figures]
    if not tiles:
        return []
    data = comparison.data_figures.get("tile")
    tiles = [("data", data), *tiles] if data else tiles
    e = html.escape
    figures = "".join(
        f'<figure><img alt="{e(caption)}: sample grid" src="{_data_uri(p)}">'
        f"<figcaption>{e(caption)}</figcaption></figure>"
        for caption, p in tiles
    )
    return ['<h2 id="samples">Samples</h2>', f'<div class="tiles">{figures}</div>']


def _warnings(board: Board) -> list[str]:
    notes = warnings(board)
    if not notes:
        return []
    e = html.escape
    parts = ['<h2 id="warnings">Warnings</h2>']
    ids = {"Metrics left out, and why": ' id="not-computed"'}
    for heading, items in notes.sections():
        lis = "".join(f"<li>{e(label)}: {e(text)}</li>" for label, text in items)
        parts.append(f"<h3>{e(heading)}</h3><ul{ids.get(heading, '')}>{lis}</ul>")
    return parts


def _summary(comparison: Comparison) -> str:
    """The summary sentence, the data file's name carrying its full path as a tooltip."""
    sentence = summary_sentence(comparison)
    path = _data_path(comparison)
    if path is None:
        return html.escape(sentence)
    name = data_title(comparison.config)
    rest = sentence.removeprefix(f"Data: {name}")
    e = html.escape
    return f'Data: <span class="file" title="{e(str(path))}">{e(name)}</span>{e(rest)}'


def _data_source(comparison: Comparison) -> list[str]:
    path = _data_path(comparison)
    return [] if path is None else [f"<p>Data file: <code>{html.escape(str(path))}</code></p>"]


def _data_path(comparison: Comparison) -> Path | None:
    data = comparison.config.data
    return data_file(data.name, data.options)


def _extra(rows: list[ModelResult]) -> list[str]:
    extra = extra_columns(rows)
    if len(extra) < 2:
        return []
    return ["<h3>All other results of the evaluator</h3>", _table(extra, rows, "more")]


def _table(cols: list[Column], rows: list[ModelResult], table_id: str = "results") -> str:
    e = html.escape
    head = "".join(f'<th title="{e(c.definition)}"{_align(c)}>{e(c.header)}</th>' for c in cols)
    body = "".join(
        f'<tr data-model="{e(r.label)}">'
        + "".join(f"<td{_align(c)}>{e(c.cell(r))}</td>" for c in cols)
        + "</tr>"
        for r in rows
    )
    return (
        f'<div class="scroll"><table id="{table_id}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _align(column: Column) -> str:
    return ' class="text"' if column.key in TEXT_COLUMNS else ""


def _figures(figures: dict[str, Path], label: str) -> str:
    images = "".join(
        f'<img alt="{html.escape(f"{label}: {FIGURE_NAMES[k]}")}" src="{_data_uri(p)}">'
        for k, p in figures.items()
    )
    return f'<div class="figures">{images}</div>'


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
