"""Running a comparison: equal budgets, one row per model, pictures, failures kept per row."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from probgen.compare import CompareConfig, load_compare_config
from probgen.compare.figures import Box, density_grid
from probgen.compare.run import ComparisonExists, Evaluation, Evaluator, run_comparison
from probgen.core import DataSpec, GenerativeModel, ProbgenError
from probgen.data.base import Dataset
from probgen.data.toy import ToyDataset
from probgen.evaluate.likelihood import nll
from probgen.models.ebm import EBM
from probgen.train import fit, load_config, load_run


def test_density_grid_of_an_exact_model_is_its_density_and_integrates_to_one() -> None:
    truth = ToyDataset("8gaussians").truth
    box = Box(truth.sample(5000, generator=torch.Generator().manual_seed(0)))
    values = density_grid(truth, box, 96)
    points, area = box.grid(96)
    torch.testing.assert_close(
        torch.from_numpy(values).reshape(-1), truth.log_prob(points).exp(), rtol=1e-12, atol=0
    )
    # midpoint rule over a box holding all but ~1e-3 of the mass (cell = 0.25 σ)
    assert abs(values.sum() * area - 1) < 5e-3


def test_density_grid_of_an_energy_model_is_normalised_on_the_grid() -> None:
    ebm = EBM.for_data(DataSpec((2,)))
    box = Box(torch.tensor([[-2.0, -1.0], [2.0, 3.0]]))
    values = torch.from_numpy(density_grid(ebm, box, 20)).reshape(-1)
    points, area = box.grid(20)
    assert math.isclose(values.sum().item() * area, 1.0, rel_tol=1e-12)
    with torch.no_grad():
        energy = ebm.energy(points)
    # ratios of the picture are ratios of exp(−E): exp(−E_i) / exp(−E_0)
    torch.testing.assert_close(values / values[0], (energy[0] - energy).exp(), rtol=1e-10, atol=0)


def test_every_model_is_trained_for_the_same_budget_and_scored_alike(
    tmp_path: Path, tiny: Callable[..., CompareConfig], evaluator: Evaluator
) -> None:
    config = tiny(["gaussian", "gan"], budget=0.5)
    out = tmp_path / "cmp"
    comparison = run_comparison(config, out, evaluator=evaluator, progress=False)
    gaussian, gan = comparison.results
    assert [r.label for r in comparison.results] == ["gaussian", "gan"]
    assert (gaussian.likelihood, gan.likelihood) == ("exact", "none")
    for row in comparison.results:
        assert row.error is None
        assert row.stop_reason == "time_budget" and row.steps > 0
        assert 0.5 <= row.train_seconds < 5.0  # stopped at the first round past the budget
        assert row.n_modes == 8 and 0 <= row.metrics["modes"] <= 8
        assert row.n_samples == 300 and row.metrics["sampling_seconds"] > 0
        assert "energy_distance" in row.metrics
        assert set(row.figures) >= {"samples", "tile", "training"}
        assert all(p.is_file() and p.read_bytes()[:4] == b"\x89PNG" for p in row.figures.values())
        history = json.loads((out / "runs" / row.label / "history.json").read_text())
        assert history == row.history
    assert "density" in gaussian.figures and "density" not in gan.figures
    assert set(comparison.data_figures) == {"samples", "tile", "density"}
    # the row's NLL is the evaluator's on the saved weights
    model, _, dataset = load_run(out / "runs" / "gaussian")
    assert gaussian.metrics["nll"] == nll(model, dataset.split("test"))


@pytest.mark.parametrize("error", [ProbgenError, TypeError])
def test_a_failing_model_keeps_its_row_with_the_error(
    tmp_path: Path, tiny: Callable[..., CompareConfig], evaluator: Evaluator, error: type
) -> None:
    def failing(model: GenerativeModel, dataset: Dataset, **options: Any) -> Evaluation:
        if model.likelihood.value == "none":
            raise error("no way to score this\nmodel")
        return evaluator(model, dataset, **options)

    config = tiny(["gaussian", "gan"], budget=0.2)
    rows = run_comparison(config, tmp_path, evaluator=failing, progress=False).results
    assert rows[0].error is None and rows[0].metrics
    assert rows[1].error == f"{error.__name__}: no way to score this model"
    assert rows[1].traceback is not None and "in failing" in rows[1].traceback


def test_an_existing_comparison_is_replaced_only_when_asked(
    tmp_path: Path, tiny: Callable[..., CompareConfig], evaluator: Evaluator
) -> None:
    config = tiny(["gaussian"], budget=0.1)
    run_comparison(config, tmp_path, evaluator=evaluator, progress=False)
    with pytest.raises(ComparisonExists, match="--overwrite"):
        run_comparison(config, tmp_path, evaluator=evaluator, progress=False)
    again = run_comparison(config, tmp_path, evaluator=evaluator, overwrite=True, progress=False)
    assert again.results[0].error is None


def test_a_loaded_run_is_scored_without_training(
    tmp_path: Path, tiny: Callable[..., CompareConfig], evaluator: Evaluator
) -> None:
    data = tiny(["gaussian"]).data  # the comparison's data, so the run can join it
    run = load_config(
        None,
        {
            "model": {"name": "gaussian"},
            "data": {"name": data.name, "options": data.options},
            "train": {"steps": 30, "batch_size": 64, "log_every": 10, "device": "cpu"},
        },
    )
    fit(run, tmp_path / "mine", progress=False)
    before = (tmp_path / "mine" / "checkpoint").stat().st_mtime_ns
    config = tiny([{"run": str(tmp_path / "mine")}])
    (row,) = run_comparison(config, tmp_path / "cmp", evaluator=evaluator, progress=False).results
    history = json.loads((tmp_path / "mine" / "history.json").read_text())
    assert (row.label, row.family, row.source) == ("mine", "gaussian", "loaded")
    assert (row.steps, row.stop_reason) == (30, "loaded")
    assert row.train_seconds == history[-1]["elapsed"]
    assert (tmp_path / "mine" / "checkpoint").stat().st_mtime_ns == before
    model, _, dataset = load_run(tmp_path / "mine")
    assert row.metrics["nll"] == nll(model, dataset.split("test"))


def test_the_default_evaluator_gives_each_row_the_reasons_for_what_it_left_out(
    tmp_path: Path, tiny: Callable[..., CompareConfig]
) -> None:
    from probgen.compare.evaluation import default_evaluator

    config = tiny(["gan"], budget=0.2)
    (gan,) = run_comparison(config, tmp_path, evaluator=default_evaluator, progress=False).results
    assert gan.error is None
    assert gan.skipped["nll"] == "GAN has no density (likelihood none)"
    assert "kl_model_data" in gan.skipped and "kl_model_data_smoothed" in gan.metrics
    assert not set(gan.skipped) & set(gan.metrics)
    assert gan.notes["fid"].startswith("features: the raw values")  # 2-D points: no feature net


def _fixed_steps(tiny: Callable[..., CompareConfig], models: list[Any], workers: int):
    settings = tiny(models).source | {"time_budget": None, "workers": workers}
    settings["train"] = {**settings["train"], "steps": 40}
    for family in settings["families"].values():  # the shared 40 steps for every family
        family.get("train", {}).pop("steps", None)
    return load_compare_config(None, settings)


def test_workers_give_the_same_rows_as_one_process_and_keep_failures_in_their_row(
    tmp_path: Path, tiny: Callable[..., CompareConfig], evaluator: Evaluator
) -> None:
    models = ["gaussian", "maf", "gan"]
    broken = {"name": "maf", "label": "broken", "options": {"hidden": [-3]}}
    serial = run_comparison(
        _fixed_steps(tiny, models, 1), tmp_path / "one", evaluator=evaluator, progress=False
    ).results
    parallel = run_comparison(
        _fixed_steps(tiny, [*models, broken], 2), tmp_path / "two", evaluator=evaluator,
        progress=False,
    ).results  # fmt: skip
    assert [r.label for r in parallel] == [*models, "broken"]
    for a, b in zip(serial, parallel, strict=False):
        assert a.error is None and b.error is None
        assert (a.steps, b.steps) == (40, 40) and a.threads == b.threads == 1
        # fixed steps, seeds and one thread: the same numbers, bit for bit
        assert {k: v for k, v in a.metrics.items() if k != "sampling_seconds"} == {
            k: v for k, v in b.metrics.items() if k != "sampling_seconds"
        }
        assert set(b.figures) == set(a.figures)
        assert all(p.is_file() and tmp_path / "two" in p.parents for p in b.figures.values())
    failed = parallel[-1]
    assert failed.error is not None and not failed.metrics
    assert "Traceback" in (failed.traceback or "")


def test_a_run_cut_short_by_a_tiny_budget_is_flagged_as_unconverged(
    tmp_path: Path, tiny: Callable[..., CompareConfig], evaluator: Evaluator
) -> None:
    # a Gaussian at lr 1e-3 moves its parameters ~1e-3 per step: on the raw shape (no data
    # map, which would start it at the answer) still falling at 300 steps, level by 1000
    models = [{"name": "gaussian", "label": label, "train": {"steps": steps}}
              for label, steps in (("short", 300), ("long", 1000))]  # fmt: skip
    settings = tiny(models).source | {"time_budget": None}
    settings["train"] = {
        **settings["train"],
        "log_every": 1,
        "batch_size": 256,
        "standardize": "none",
    }
    short, long = run_comparison(
        load_compare_config(None, settings), tmp_path, evaluator=evaluator, progress=False
    ).results
    assert (short.steps, long.steps) == (300, 1000)
    (flag,) = short.flags
    assert flag.startswith("unconverged: the loss fell 8% of its whole drop")
    assert long.flags == []
    assert 0 < short.cpu_share <= 1.05 and short.threads == 1
