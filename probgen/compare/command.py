"""``probgen compare``: load the comparison config, run it, write the reports, print the table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from probgen.compare.config import data_title, load_compare_config
from probgen.compare.evaluation import default_evaluator
from probgen.compare.leaderboard import leaderboard
from probgen.compare.report import write_reports
from probgen.compare.run import Comparison, run_comparison
from probgen.compare.table import rich_table
from probgen.data.userfiles import data_config

__all__ = ["compare", "overrides_from_flags"]


def overrides_from_flags(
    models: str | None = None,
    data: str | None = None,
    time_budget: float | None = None,
) -> dict[str, Any]:
    """Top-level config overrides from the command's flags (None = keep the config's value).

    ``models`` is a comma-separated list of registered names; ``data`` a
    registered data set or a data file or folder (``data_config``); ``time_budget``
    sets the seconds per model and drops the config's ``total_time_budget``.
    """
    overrides: dict[str, Any] = {}
    if models is not None:
        overrides["models"] = [m.strip() for m in models.split(",") if m.strip()]
    if data is not None:
        overrides["data"] = data_config(data)
    if time_budget is not None:
        overrides.update(time_budget=time_budget, total_time_budget=None)
    return overrides


def compare(
    config_path: Path | None,
    out: Path,
    *,
    overrides: dict[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    console: Console | None = None,
) -> Comparison:
    """Run the comparison of ``config_path`` (the embedded default if None) into ``out/NAME``.

    Prints the table (rows in the leaderboard's order) and where the reports went;
    returns the ``Comparison``.
    """
    console = console or Console()
    if not console.is_terminal:  # a log file: no wrapping at rich's 80-column fallback
        console.width = max(console.width, 240)
    config = load_compare_config(config_path, overrides)
    comparison = run_comparison(
        config,
        out / config.name,
        evaluator=default_evaluator,
        overwrite=overwrite,
        progress=progress,
        console=console,
    )
    files = write_reports(comparison)
    ranked = leaderboard(comparison.results).rows  # in the report's order
    console.print(rich_table(ranked, _title(comparison)))
    console.print(
        f"reports: {files['html']} (self-contained), {files['markdown']}, {files['results']}"
    )
    return comparison


def _title(comparison: Comparison) -> str:
    c = comparison.config
    return (
        f"{data_title(c)}: {len(c.models)} models, {c.evaluation.split} split, "
        f"{comparison.wall_time:.0f} s"
    )
