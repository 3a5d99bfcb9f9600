"""The leaderboard: its headline metric, its order, its best marks, its warnings and figures."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from probgen.compare.leaderboard import METRICS, best_rows, headline, leaderboard
from probgen.compare.report import write_reports
from probgen.compare.run import Comparison, ModelResult
from probgen.compare.sections import warnings
from probgen.compare.summary import plot_summary, quality_metric
from probgen.core import Estimate

NLL = next(m for m in METRICS if m.key == "nll")
PRECISION = next(m for m in METRICS if m.key == "precision")


def _row(label: str, error: str | None = None, **metrics: Estimate | float) -> ModelResult:
    return ModelResult(label, label, "exact", train_seconds=1.0, metrics=metrics, error=error)


def test_nll_ranks_when_every_row_has_one_and_failed_rows_go_last() -> None:
    rows = [
        _row("b", nll=Estimate(3.0, 0.01, "exact"), fid=Estimate(1.0, 0.1, "estimate")),
        _row("failed", error="boom"),
        _row("a", nll=Estimate(2.5, 0.01, "bound"), fid=Estimate(2.0, 0.1, "estimate")),
    ]
    board = leaderboard(rows)
    assert board.headline is not None and board.headline.metric.key == "nll"
    assert [r.label for r in board.rows] == ["a", "b", "failed"]
    assert board.rank == {"a": 1, "b": 2}
    assert board.best["nll"] == {"a"} and board.best["fid"] == {"b"}


def test_without_an_nll_for_every_row_the_sample_quality_metric_ranks_and_says_why() -> None:
    rows = [
        _row("flow", nll=Estimate(3.0, 0.01, "exact"), mmd=Estimate(0.02, 0.001, "estimate")),
        _row("gan", mmd=Estimate(0.01, 0.001, "estimate")),
        _row("ebm", nll=Estimate(-4.0, 0.0, "unnormalized"), mmd=Estimate(0.03, 0.001, "estimate")),
    ]
    top = headline(rows)
    assert top is not None and top.metric.key == "mmd"
    assert top.reason == "MMD²: gan, ebm have no NLL"  # an energy off by log Z is no NLL
    assert [r.label for r in leaderboard(rows).rows] == ["gan", "flow", "ebm"]


def test_rows_without_the_headline_follow_the_ranked_ones_and_are_warned_about() -> None:
    rows = [
        _row("gan", fid=Estimate(5.0, 0.1, "estimate")),
        _row("odd"),
        _row("vae", nll=Estimate(3.0, 0.01, "bound"), fid=Estimate(4.0, 0.1, "estimate")),
    ]
    board = leaderboard(rows)
    assert board.headline is not None and board.headline.metric.key == "fid"  # odd has none
    assert board.headline.reason == "FD: the metric most models have"
    assert [r.label for r in board.rows] == ["vae", "gan", "odd"]
    assert warnings(board).unranked == [("odd", "no FD, so it is listed after the ranked models")]


def _points_row(label: str, fd: float, mmd: float, note: str) -> ModelResult:
    row = _row(label, fid=Estimate(fd, math.nan, "estimate"), mmd=Estimate(mmd, 1e-4, "estimate"))
    row.notes = {"fid": note, "mmd": note}
    return row


@pytest.mark.parametrize(
    "note, key",
    [
        ("features: the raw values, standardised by the reference's means and sds", "mmd"),
        ("features: the digits classifier's 64 features (trained on 17 levels, reading 17)", "fid"),
    ],
)
def test_a_frechet_distance_on_raw_values_does_not_rank(note: str, key: str) -> None:
    # one Gaussian fitted to a mixture matches its mean and covariance (FD ≈ 0) and
    # misses its shape (large MMD²); a model of the mixture has both right
    rows = [_points_row("gaussian", 0.003, 0.02, note), _points_row("mixture", 0.005, 0.0003, note)]
    board = leaderboard(rows)
    assert board.headline is not None and board.headline.metric.key == key
    assert quality_metric(rows) is not None and quality_metric(rows).key == key
    order = ["mixture", "gaussian"] if key == "mmd" else ["gaussian", "mixture"]
    assert [r.label for r in board.rows] == order
    raw = "FD on the raw values compares only means and covariances" in board.headline.reason
    assert raw == (key == "mmd")


@pytest.mark.parametrize("offset, tied", [(-1e-9, True), (1e-9, False)])
def test_a_value_within_two_standard_errors_of_the_best_is_marked_tied(
    offset: float, tied: bool
) -> None:
    # best 1.0 ± 0.1, other v ± 0.2: tied when v − 1 ≤ 2·√(0.1² + 0.2²)
    edge = 1.0 + 2 * math.sqrt(0.1**2 + 0.2**2)
    rows = [
        _row("best", nll=Estimate(1.0, 0.1, "exact")),
        _row("other", nll=Estimate(edge + offset, 0.2, "exact")),
    ]
    assert best_rows(NLL, rows) == ({"best"}, {"other"} if tied else set())


def test_higher_is_better_columns_and_numbers_without_a_standard_error() -> None:
    rows = [
        _row("a", precision=Estimate(0.9, math.nan, "estimate")),
        _row("b", precision=Estimate(0.9, math.nan, "estimate")),
        _row("c", precision=Estimate(0.8999, math.nan, "estimate")),
    ]
    # equal values are both best; without a standard error nothing is tied
    assert best_rows(PRECISION, rows) == ({"a", "b"}, set())


def test_summary_figure_is_drawn_from_the_numbers_and_skipped_without_any(tmp_path: Path) -> None:
    rows = [
        _row("a", nll=Estimate(3.0, 0.01, "exact"), fid=Estimate(2.0, 0.1, "estimate")),
        _row("b", fid=Estimate(1.0, 0.1, "estimate"), sampling_seconds=0.2),
    ]
    rows[1].n_samples = 1000
    assert quality_metric(rows) is not None and quality_metric(rows).key == "fid"
    path = plot_summary(leaderboard(rows), tmp_path / "summary.png")
    assert path is not None and path.read_bytes()[:4] == b"\x89PNG"
    assert plot_summary(leaderboard([_row("empty")]), tmp_path / "none.png") is None


def test_reports_rank_mark_best_and_warn_for_the_default_comparisons_shape(
    wide_comparison: Comparison,
) -> None:
    files = write_reports(wide_comparison)
    board = leaderboard(wide_comparison.results)
    assert board.headline is not None and board.headline.metric.key == "mmd"  # GANs have no NLL
    mmd = [r.metrics["mmd"].value for r in board.rows if not r.error]
    assert mmd == sorted(mmd) and board.rows[-1].label == "broken"
    html = files["html"].read_text()
    table = html[html.index('<table id="leaderboard">') :]
    table = table[: table.index("</table>")]
    assert re.findall(r'<tr data-model="([^"]+)"', table) == [r.label for r in board.rows]
    assert '<tr class="groups">' in table
    for group in ("likelihood", "sample quality", "cost"):
        assert f">{group}</th>" in table
    assert table.count('class="best"') == sum(len(labels) for labels in board.best.values())
    assert table.count('class="tied"') == sum(len(labels) for labels in board.tied.values()) > 0
    notes = warnings(board)
    assert [label for label, _ in notes.short] == ["ebm", "score_sde"]
    assert [label for label, _ in notes.failed] == ["broken"]
    assert {label for label, _ in notes.left_out} == {"fgan", "gan", "wgan", "wgan_gp"}
    markdown = files["markdown"].read_text()
    for heading in ("## Leaderboard", "## Samples", "## Warnings", "## Details"):
        assert heading in markdown and heading.removeprefix("## ") in html
    assert "Training fell short of plan:" in markdown and "- ebm: unconverged" in markdown
