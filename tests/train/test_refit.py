"""Refit after early stopping: the selected step count, on training and validation together."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch
import yaml

from probgen.conditions import ConditionSpec
from probgen.core import DataSpec, InvalidInput
from probgen.data.base import ArrayDataset
from probgen.data.merged import MergedTraining
from probgen.models import build_model
from probgen.train import ComponentConfig, RunConfig, TrainConfig, fit, load_run
from probgen.train.build import build
from probgen.train.config import SMALL_DATA, load_config
from probgen.train.refit import refits

SMALL = {"n_train": 64, "n_validation": 128, "n_test": 64}


def _config(data: dict | None = None, **train) -> RunConfig:
    settings = {"steps": 300, "batch_size": 64, "lr": 5e-3, "log_every": 10, "device": "cpu"}
    return RunConfig(
        model=ComponentConfig("maf", {"hidden": [16, 16]}),
        data=ComponentConfig("two_moons", SMALL if data is None else data),
        train=TrainConfig(**{**settings, "patience": 3, **train}),
    )


def test_a_small_data_run_refits_for_the_selected_steps_on_train_and_validation(tmp_path):
    result = fit(_config(), tmp_path, progress=False)
    selection = yaml.safe_load((tmp_path / "selection" / "result.json").read_text())
    assert selection["stop"] == "early_stopping" and selection["steps"] < 300
    assert result.stop_reason == "refit" and result.steps == result.best_step
    assert result.best_step == selection["best_step"]
    saved = load_config(tmp_path / "config.yaml").train
    assert saved.splits == ("train", "validation") and saved.early_stopping is False
    assert saved.steps == selection["best_step"] and saved.refit is False
    assert not isinstance(result.dataset, MergedTraining)  # the run's own data set
    merged = torch.cat([result.dataset.split(s) for s in ("train", "validation")]).double()
    assert len(merged) == SMALL["n_train"] + SMALL["n_validation"]
    torch.testing.assert_close(torch.tensor(saved.standardize["shift"]), merged.mean(0))
    # the saved config reruns the refit exactly, and load_run returns its weights
    again = fit(load_config(tmp_path / "config.yaml"), tmp_path / "again", progress=False)
    reloaded, _, _ = load_run(tmp_path)
    x = result.dataset.split("test")[:16]
    expected = result.model.log_prob(x)
    torch.testing.assert_close(again.model.log_prob(x), expected, rtol=0, atol=0)
    torch.testing.assert_close(reloaded.log_prob(x), expected, rtol=0, atol=0)


def test_a_resumed_run_skips_a_finished_selection(tmp_path):
    straight = fit(_config(), tmp_path / "a", progress=False)
    fit(_config(), tmp_path / "b", progress=False)
    shutil.rmtree(tmp_path / "b" / "checkpoint")  # stopped before the refit had saved
    (tmp_path / "b" / "history.json").unlink()
    shutil.rmtree(tmp_path / "b" / "selection" / "checkpoint")  # not needed once finished
    resumed = fit(_config(), tmp_path / "b", progress=False, resume=True)
    x = straight.dataset.split("test")[:16]
    assert resumed.best_step == straight.best_step
    torch.testing.assert_close(resumed.model.log_prob(x), straight.model.log_prob(x))


def test_no_refit_with_a_time_budget_fresh_data_or_when_asked(tmp_path):
    budget = fit(_config(time_budget=60.0), tmp_path / "a", progress=False)
    assert budget.stop_reason == "early_stopping"
    off = fit(_config(refit=False), tmp_path / "b", progress=False)
    assert off.stop_reason == "early_stopping" and not (tmp_path / "b" / "selection").exists()
    fresh = {"n_train": None, "n_validation": 64, "n_test": 64}
    assert fit(_config(fresh, steps=5), tmp_path / "c", progress=False).stop_reason == "steps"
    with pytest.raises(InvalidInput, match=r"train\.refit: true needs early stopping"):
        fit(_config(fresh, steps=5, refit=True), tmp_path / "d", progress=False)


def test_merged_training_draws_each_split_in_proportion_with_its_conditions():
    spec = DataSpec((1,), condition=None)
    train, validation = torch.zeros(300, 1), torch.ones(100, 1)
    merged = MergedTraining(ArrayDataset(train, validation, torch.ones(5, 1), spec))
    assert merged.train_size == 400 and merged.split("test").shape == (5, 1)
    torch.testing.assert_close(merged.split("train"), torch.cat([train, validation]))
    x, c = merged.draw("train", 20_000, torch.Generator().manual_seed(0))
    share, n = float(x.mean()), 20_000
    assert c is None and abs(share - 0.25) < 4 * (0.25 * 0.75 / n) ** 0.5
    assert x[:100].std() > 0  # rows are shuffled, not train first
    assert merged.truth is None and merged.dataset.spec is spec  # the rest is the data set's
    with pytest.raises(InvalidInput, match="'train' first"):
        MergedTraining(ArrayDataset(train, validation, train, spec), ("validation",))


def test_merged_training_keeps_rows_and_conditions_paired():
    from probgen.conditions import ConditionSpec

    spec = DataSpec((1,), condition=ConditionSpec(classes=3))
    parts = [
        torch.arange(n, dtype=torch.float64)[:, None] + k * 1000 for k, n in enumerate((6, 4, 2))
    ]
    labels = [(p[:, 0] % 3).long() for p in parts]
    merged = MergedTraining(ArrayDataset(*parts, spec, conditions=tuple(labels)))
    x, c = merged.draw("train", 500, torch.Generator().manual_seed(1))
    assert torch.equal(c, (x[:, 0] % 3).long()) and x.max() < 2000
    assert torch.equal(merged.conditions("train"), torch.cat(labels[:2]))


def test_a_selection_that_keeps_the_start_refits_for_zero_rounds(tmp_path):
    """S* = 0 (no round improves on the start): the result is the model as built on
    both splits, here the MAF over a mixture base that EM fitted on the merged data."""
    config = _config(lr=1e-30)  # below float64 rounding: no round changes the model
    config.model.options["base"] = "mixture"
    result = fit(config, tmp_path, progress=False)
    assert result.stop_reason == "refit" and result.best_step == 0 and result.steps == 0
    assert load_config(tmp_path / "config.yaml").train.steps == 0
    torch.manual_seed(config.seed)  # the refit's build: same seed, merged data
    merged = MergedTraining(result.dataset, ("train", "validation"))
    fresh, _ = build(load_config(tmp_path / "config.yaml"), merged)
    reloaded, _, _ = load_run(tmp_path)
    x = result.dataset.split("test")[:16]
    torch.testing.assert_close(result.model.log_prob(x), fresh.log_prob(x), rtol=0, atol=0)
    torch.testing.assert_close(reloaded.log_prob(x), fresh.log_prob(x), rtol=0, atol=0)


def test_auto_refits_only_small_data_and_true_refits_any_finite_data():
    spec = DataSpec((1,), condition=None)
    model = build_model("maf", spec, hidden=[4])
    forced = TrainConfig(early_stopping=True)
    for n, expected in ((SMALL_DATA, True), (SMALL_DATA + 1, False)):
        data = ArrayDataset(torch.zeros(n, 1), torch.zeros(8, 1), torch.zeros(8, 1), spec)
        assert refits(forced, data, model) is expected
        assert refits(dataclasses.replace(forced, refit=True), data, model) is True
        assert refits(dataclasses.replace(forced, refit=False), data, model) is False


def test_auto_does_not_refit_a_conditional_model_and_true_still_does():
    spec = DataSpec((1,), condition=ConditionSpec(shape=(1,)))
    model = build_model("maf", spec, hidden=[4])
    c = (torch.zeros(100, 1), torch.zeros(8, 1), torch.zeros(8, 1))
    data = ArrayDataset(
        torch.zeros(100, 1), torch.zeros(8, 1), torch.zeros(8, 1), spec, conditions=c
    )
    forced = TrainConfig(early_stopping=True)
    assert refits(forced, data, model) is False
    assert refits(dataclasses.replace(forced, refit=True), data, model) is True
