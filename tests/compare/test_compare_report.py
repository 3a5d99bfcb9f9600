"""Reports of a comparison: the same table in JSON, Markdown, HTML and the terminal."""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from rich.console import Console
from typer.testing import CliRunner

from probgen.cli import app
from probgen.compare import CompareConfig
from probgen.compare.report import write_reports
from probgen.compare.run import Comparison, ModelResult
from probgen.compare.table import MISSING, columns, extra_columns, format_value, rich_table
from probgen.core import Estimate


def _png(path: Path, seed: int) -> Path:
    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot(np.random.default_rng(seed).normal(size=10))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=50)
    return path


@pytest.fixture
def comparison(tmp_path: Path, tiny: Callable[..., CompareConfig]) -> Comparison:
    """Three rows by hand: an exact flow, a VAE with a bound, a GAN whose evaluation failed."""
    figures = tmp_path / "figures"
    flow = ModelResult(
        "maf",
        "maf",
        "exact",
        train_seconds=2.0,
        steps=100,
        stop_reason="time_budget",
        metrics={
            "nll": Estimate(2.9, 0.01, "exact"),
            "mmd": Estimate(0.002, math.nan, "estimate"),
            "sampling_seconds": 0.5,
            "network_evaluations": 10.0,
            "modes": 8.0,
            "high_quality": Estimate(0.95, math.nan, "estimate"),
            "reverse_kl": Estimate(math.inf, math.nan, "estimate"),
        },
        n_samples=2000,
        n_modes=8,
        figures={"samples": _png(figures / "maf_samples.png", 0)},
    )
    vae = ModelResult(
        "vae-small",
        "vae",
        "bound",
        train_seconds=2.0,
        steps=80,
        metrics={"nll": Estimate(3.1, 0.02, "bound"), "brand_new_metric": 0.5},
        n_samples=2000,
        figures={"samples": _png(figures / "vae_samples.png", 1)},
    )
    gan = ModelResult("gan", "gan", "none", error="CriticDiverged: critic output 1e5")
    data = {"samples": _png(figures / "data_samples.png", 2)}
    return Comparison(tiny(["maf", "gan"]), tmp_path, [flow, vae, gan], data, 12.0)


def test_cells_say_what_each_number_is() -> None:
    assert format_value(Estimate(3.14159, 0.012, "exact")) == "3.142 ± 0.012"
    assert format_value(Estimate(3.14159, 0.012, "bound")) == "≤ 3.142 ± 0.012"
    assert format_value(Estimate(0.5, math.nan, "estimate")) == "0.5"
    assert format_value(7.0) == "7"


def test_columns_follow_the_results(comparison: Comparison) -> None:
    rows = comparison.results
    main = {c.key: c for c in columns(rows)}
    assert list(main)[:3] == ["model", "likelihood", "nll"]
    assert "fid" not in main  # no row has it
    assert main["nll"].cell(rows[1]) == "≤ 3.1 ± 0.02"
    assert main["nll"].cell(rows[2]) == MISSING
    assert main["modes"].cell(rows[0]) == "8/8 (95%)"
    assert main["sampling"].cell(rows[0]) == "0.25"  # 0.5 s for 2000 samples
    assert main["nfe"].cell(rows[0]) == "10"
    assert main["model"].cell(rows[1]) == "vae-small (vae)"
    assert main["error"].cell(rows[2]).startswith("CriticDiverged")
    extra = [c.key for c in extra_columns(rows)]
    assert extra == ["model", "reverse_kl", "brand_new_metric"]


def test_results_json_holds_every_number_and_no_nan(comparison: Comparison) -> None:
    files = write_reports(comparison)
    text = files["results"].read_text()
    assert "NaN" not in text and "Infinity" not in text
    results = json.loads(text)
    maf, vae, gan = results["models"]
    assert maf["metrics"]["nll"] == {"value": 2.9, "stderr": 0.01, "kind": "exact"}
    assert maf["metrics"]["reverse_kl"]["value"] is None  # inf is not JSON
    assert maf["metrics"]["network_evaluations"] == 10.0
    assert maf["figures"] == {"samples": "figures/maf_samples.png"}
    assert vae["metrics"]["brand_new_metric"] == 0.5
    assert gan["error"] == "CriticDiverged: critic output 1e5"
    assert results["wall_time"] == 12.0
    assert [c["key"] for c in results["columns"]] == [c.key for c in columns(comparison.results)]


def test_markdown_has_one_table_row_per_model_and_links_existing_figures(
    comparison: Comparison,
) -> None:
    text = write_reports(comparison)["markdown"].read_text()
    board, details = text.split("## Details")
    leaderboard = [line for line in board.splitlines() if line.startswith("| ")]
    assert leaderboard[0].startswith("| # | model | kind | NLL |")
    # ranked by NLL: the flow's 2.9 before the VAE's bound 3.1; the failed GAN last, unranked
    assert [line.split(" | ")[:2] for line in leaderboard[1:]] == [
        ["| 1", "maf"],
        ["| 2", "vae-small (vae)"],
        ["| ", "gan ⚠"],
    ]
    assert "| **2.9** |" in leaderboard[1] and "| ≤ 3.1 |" in leaderboard[2]
    table = [line for line in details.splitlines() if line.startswith("| ")]
    n_columns = len(columns(comparison.results))
    assert table[0].count(" | ") == n_columns - 1
    assert [line.split(" | ")[0] for line in table[1:4]] == ["| maf", "| vae-small (vae)", "| gan"]
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (comparison.out_dir / link).is_file()
    assert "**NLL (nats)**" in text and "brand_new_metric" in text
    assert "![summary: quality against cost](figures/summary.png)" in text


def test_html_embeds_every_figure_byte_for_byte(comparison: Comparison) -> None:
    text = write_reports(comparison)["html"].read_text()
    sources = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([^"]+)"', text)
    summary = comparison.out_dir / "figures" / "summary.png"  # drawn by write_reports
    expected = [summary, *comparison.data_figures.values()] + [
        p for r in comparison.results for p in r.figures.values()
    ]
    assert [base64.b64decode(s) for s in sources] == [p.read_bytes() for p in expected]
    results_table = text[text.index('<table id="results">') :]
    results_table = results_table[: results_table.index("</table>")]
    assert re.findall(r'<tr data-model="([^"]+)"', results_table) == ["maf", "vae-small", "gan"]
    assert "Failed: CriticDiverged" in text
    board = text[text.index('<table id="leaderboard">') :]
    board = board[: board.index("</table>")]
    assert re.findall(r'<tr data-model="([^"]+)"', board) == ["maf", "vae-small", "gan"]
    assert '<td class="best">2.9</td>' in board and "<td>≤ 3.1</td>" in board


def test_terminal_table_has_a_row_per_model(comparison: Comparison) -> None:
    rows = comparison.results
    console = Console(width=250, record=True)
    console.print(rich_table(rows, "compare"))
    lines = console.export_text().splitlines()
    assert sum(line.startswith("│ ") for line in lines) == 3
    assert any("≤ 3.1 ± 0.02" in line for line in lines)


def test_command_errors_are_one_line_with_exit_code_2(tmp_path: Path) -> None:
    runner = CliRunner()
    unknown = runner.invoke(app, ["compare", "--models", "gaussian,nope", "--out", str(tmp_path)])
    assert unknown.exit_code == 2
    assert unknown.output.strip().count("\n") == 0 and "unknown value 'nope'" in unknown.output
    (tmp_path / "compare" / "runs" / "gaussian").mkdir(parents=True)
    again = runner.invoke(app, ["compare", "--models", "gaussian", "--out", str(tmp_path)])
    assert again.exit_code == 2
    assert again.output.startswith("error: ") and "--overwrite" in again.output


def test_reports_footnote_what_was_left_out_and_never_print_a_negative_kl(
    comparison: Comparison,
) -> None:
    gan = ModelResult(
        "gan-ok",
        "gan",
        "none",
        metrics={"kl_model_data_smoothed": Estimate(-0.002, 0.003, "estimate")},
        skipped={
            "nll": "GAN has no density (likelihood none)",
            "kl_data_model": "GAN has no density (likelihood none)",
        },
    )
    comparison.results.append(gan)
    main = {c.key: c for c in columns(comparison.results)}
    assert main["kl_model_data_smoothed"].cell(gan) == "≤ 0.004"
    files = write_reports(comparison)
    note = "gan-ok: nll, kl_data_model: GAN has no density (likelihood none)"
    markdown = files["markdown"].read_text()
    assert "Metrics left out, and why:" in markdown and f"- {note}" in markdown
    assert "-0.002" not in markdown
    html_text = files["html"].read_text()
    assert '<ul id="not-computed">' in html_text and note in html_text
    row = json.loads(files["results"].read_text())["models"][-1]
    assert row["skipped"] == gan.skipped
    assert row["metrics"]["kl_model_data_smoothed"]["value"] == -0.002  # raw data kept
