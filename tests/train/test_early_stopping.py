"""Early stopping on the validation split, and the data map a run records and reloads."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from probgen.conditions import ConditionSpec
from probgen.core import DataSpec
from probgen.data.base import ArrayDataset
from probgen.models import Standardized, build_model
from probgen.models.gaussian import GaussianModel
from probgen.train import ComponentConfig, RunConfig, TrainConfig, fit, load_run
from probgen.train.early_stopping import EVAL_EXAMPLES, validation_examples
from probgen.train.engine import EVAL_ROWS, evaluation_batch, validation_nll


def _config(data: dict, **train) -> RunConfig:
    settings = {"steps": 300, "batch_size": 64, "lr": 5e-3, "log_every": 10, "device": "cpu"}
    settings["refit"] = False  # early stopping itself (the refit: tests/train/test_refit.py)
    return RunConfig(
        model=ComponentConfig("maf", {"hidden": [32, 32]}),
        data=ComponentConfig("two_moons", data),
        train=TrainConfig(**{**settings, **train}),
    )


SMALL = {"n_train": 64, "n_validation": 256, "n_test": 64}


def _val_records(history: list[dict]) -> list[tuple[int, float]]:
    return [(r["step"], r["val_nll"]) for r in history if "val_nll" in r]


def test_small_data_stop_early_and_keep_the_best_validation_weights(tmp_path) -> None:
    result = fit(_config(SMALL, patience=5), tmp_path, progress=False)
    records = _val_records(result.history)
    best_step, best = min(records, key=lambda r: r[1])
    assert result.stop_reason == "early_stopping" and result.steps < 300
    assert result.best_step == best_step
    # the last validations are `patience` non-improvements after the best
    assert [s for s, _ in records][-1] == best_step + 5 * 10
    state = type("S", (), {"model": result.model, "dataset": result.dataset})
    again = validation_nll(state, 2048, 64)["val_nll"]  # the returned weights are the best
    assert math.isclose(again, best, rel_tol=1e-12)
    reloaded, _, _ = load_run(tmp_path)  # and so is the checkpoint
    x = result.dataset.split("validation")[:16]
    torch.testing.assert_close(reloaded.log_prob(x), result.model.log_prob(x), rtol=0, atol=0)


def test_early_stopping_is_off_for_fresh_data_and_when_asked(tmp_path) -> None:
    fresh = {"n_train": None, "n_validation": 64, "n_test": 64}
    assert fit(_config(fresh, steps=20), tmp_path / "a", progress=False).best_step is None
    off = fit(_config(SMALL, steps=20, early_stopping=False), tmp_path / "b", progress=False)
    assert off.best_step is None and off.stop_reason == "steps"


def test_resumed_early_stopping_equals_an_uninterrupted_run(tmp_path) -> None:
    straight = fit(_config(SMALL, patience=5), tmp_path / "a", progress=False)
    stop = straight.steps
    first = _config(SMALL, patience=5, steps=stop - 20)
    fit(first, tmp_path / "b", progress=False)
    resumed = fit(_config(SMALL, patience=5), tmp_path / "b", progress=False, resume=True)
    assert resumed.steps == stop and resumed.best_step == straight.best_step
    drop = {"elapsed"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in resumed.history] == [
        {k: v for k, v in r.items() if k not in drop} for r in straight.history
    ]


def test_a_run_records_its_fitted_data_map_and_reloads_it(tmp_path) -> None:
    config = _config({**SMALL, "scale": 1}, steps=5)
    result = fit(config, tmp_path, progress=False)
    assert isinstance(result.model, Standardized)
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())["train"]["standardize"]
    train = result.dataset.split("train").double()
    assert saved["method"] == "mean_std"
    torch.testing.assert_close(torch.tensor(saved["shift"]), train.mean(0))
    torch.testing.assert_close(torch.tensor(saved["scale"]), train.std(0))
    model, reloaded, _ = load_run(tmp_path)
    torch.testing.assert_close(model.shift, result.model.shift, rtol=0, atol=0)
    torch.testing.assert_close(model.high, result.model.high, rtol=0, atol=0)
    assert reloaded.train.standardize == saved


def test_the_model_before_training_is_a_candidate(tmp_path) -> None:
    """Round 0 is validated; a model already at its best there is kept (best_step 0)."""
    config = _config(SMALL, patience=3, lr=1e-30)  # below rounding: no round changes it
    result = fit(config, tmp_path, progress=False)
    records = _val_records(result.history)
    assert records[0][0] == 0 and result.best_step == 0
    assert result.steps == 3 * 10 and result.stop_reason == "early_stopping"


def test_validation_nll_of_the_first_rows_keeps_their_conditions() -> None:
    spec = DataSpec((2,), condition=ConditionSpec(shape=(1,)))
    g = torch.Generator().manual_seed(0)
    x, c = torch.randn(5000, 2, generator=g), torch.randn(5000, 1, generator=g)
    data = ArrayDataset(x[:10], x, x[:10], spec, conditions=(c[:10], c, c[:10]))
    model = build_model("maf", spec, hidden=[4]).eval()
    state = type("S", (), {"model": model, "dataset": data})
    # 3000 of the 5000 rows; 2-D points validate in batches of 2048 (not the training
    # batch of 32): the last batch has 952 rows and their 952 conditions
    assert evaluation_batch(32, (2,)) == EVAL_ROWS == 2048
    value = validation_nll(state, 3000, 32)["val_nll"]
    with torch.no_grad():
        expected = -model.log_prob(x[:3000], condition=c[:3000]).mean().item()
    assert math.isclose(value, expected, rel_tol=64 * torch.finfo(x.dtype).eps)


def test_small_examples_validate_in_larger_batches_images_in_the_training_batch() -> None:
    assert evaluation_batch(200, (10,)) == 2048  # 2^16 values would be 6553 rows: capped
    assert evaluation_batch(64, (8, 8)) == 2**16 // 64 == 1024  # digits 8×8
    assert evaluation_batch(128, (1, 28, 28)) == 128  # MNIST: more than EVAL_SMALL values
    assert evaluation_batch(64, (256,)) == 64  # a 256-token sequence
    assert evaluation_batch(4096, (2,)) == 4096  # never below the training batch


def _gaussian_pairs(n_train: int, n_validation: int) -> ArrayDataset:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(n_train + n_validation + 8, 2, generator=g, dtype=torch.float64)
    x = x @ torch.tensor([[1.5, 0.0], [0.8, 0.4]], dtype=torch.float64)
    splits = x[:n_train], x[n_train : n_train + n_validation], x[n_train + n_validation :]
    return ArrayDataset(*splits, DataSpec((2,)))


def test_auto_validation_examples_follow_the_rule() -> None:
    data = _gaussian_pairs(64, 3000)
    assert validation_examples(TrainConfig(batch_size=32), data, 125) == 3000  # once per epoch
    assert validation_examples(TrainConfig(batch_size=32), data, 80) == 2560  # 80 · 32 rows
    assert validation_examples(TrainConfig(batch_size=32), data, 10) == EVAL_EXAMPLES
    assert validation_examples(TrainConfig(eval_examples=100), data, 125) == 100
    assert validation_examples(TrainConfig(), _gaussian_pairs(64, 500), 1) == 500


def test_once_per_epoch_validation_averages_the_whole_split(tmp_path) -> None:
    data = _gaussian_pairs(4000, 3000)
    config = RunConfig(
        model=ComponentConfig("gaussian"),
        data=ComponentConfig("8gaussians"),
        train=TrainConfig(steps=130, batch_size=32, device="cpu", refit=False,
                          early_stopping=True),
    )  # fmt: skip
    result = fit(config, tmp_path, model=GaussianModel((2,)).double(), dataset=data, progress=False)
    records = _val_records(result.history)
    assert [s for s, _ in records] == [0, 125, 130]  # once per ⌈4000 / 32⌉ rounds, and the last
    best = min(v for _, v in records)  # the weights the result holds
    nll = -result.model.log_prob(data.split("validation"))
    # float64 sums of 3000 terms in another order: ~1e-16 relative; the first 2048 rows
    # (the old default) give a different mean, by ~1/√2048 of the NLL's spread
    assert best == pytest.approx(nll.mean().item(), rel=1e-12)
    assert abs(nll[:2048].mean().item() - best) > 1e-3
