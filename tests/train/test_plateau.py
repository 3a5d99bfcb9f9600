"""Reduce-on-plateau and step-decay schedules: the rates a run applies, against the closed form."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from probgen.models.gaussian import GaussianModel
from probgen.train import ConfigError, TrainConfig, fit, load_config
from probgen.train.checkpoint import read_checkpoint
from probgen.train.optim import MultiStepSchedule, PlateauSchedule, make_schedule

LR, GAMMA, EVERY, LR_PATIENCE, PATIENCE = 0.1, 0.5, 2, 5, 20


class _Drift(GaussianModel):
    """A Gaussian whose loss is a scalar ``a`` it never scores: ∂loss/∂a = 1 every round.

    Its validation NLL never changes, so no validation beats round 0's, and with
    plain SGD each round moves ``a`` by exactly −lr_t: a_T = −Σ_t lr_t (in the
    checkpoint's last weights; the result holds the best, round 0's).
    """

    def __init__(self) -> None:
        super().__init__((2,))
        self.a = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def loss(self, x: Tensor, player: str = "model", condition: Tensor | None = None) -> Tensor:
        return self.a


def _last_a(run_dir) -> float:
    """``a`` after the last round, from the checkpoint (early stopping returns round 0's)."""
    model = _Drift()
    read_checkpoint(run_dir / "checkpoint").load_module("model", model)
    return model.a.item()


def _plateau(make_config, **train):
    settings = {"optimizer": "sgd", "betas": (0.0, 0.999), "lr": LR, "steps": 1000}
    settings |= {"eval_every": EVERY, "early_stopping": True, "patience": PATIENCE}
    settings |= {"lr_schedule": "plateau", "lr_factor": GAMMA, "lr_patience": LR_PATIENCE}
    return make_config(**{**settings, **train})


def test_multistep_schedule_closed_form() -> None:
    s = MultiStepSchedule((3, 7, 7), factor=0.1)
    expected = [1.0] * 3 + [0.1] * 4 + [1e-3] * 3  # a repeated milestone cuts twice
    assert [s(t) for t in range(10)] == pytest.approx(expected, rel=1e-15)
    assert make_schedule(TrainConfig(lr_schedule="multistep", lr_milestones=(3,))) == (
        MultiStepSchedule((3,), 0.5)
    )
    with pytest.raises(ConfigError, match="needs lr_schedule multistep"):
        make_schedule(TrainConfig(lr_milestones=(3,)))


def test_plateau_cuts_after_every_lr_patience_validations_without_improvement() -> None:
    s = PlateauSchedule(factor=0.5, patience=2)
    for step, since_best in [(10, 1), (20, 2), (30, 0), (40, 1), (50, 2), (60, 3), (70, 4)]:
        s.observe(step, since_best)
    assert s.milestones == [20, 50, 70]
    assert [s(t) for t in (19, 20, 49, 50, 70)] == [1.0, 0.5, 0.5, 0.25, 0.125]
    again = PlateauSchedule(0.5, 2)
    again.load(s.state())
    assert again == s


def test_a_run_applies_the_plateau_rates_and_stops_after_patience(
    make_config, tmp_path, gaussian_data
) -> None:
    result = fit(
        _plateau(make_config), tmp_path, model=_Drift(), dataset=gaussian_data, progress=False
    )
    # validations every 2 rounds, none better than round 0's: cuts at the 5th, 10th and
    # 15th (rounds 10, 20, 30), the stop at the 20th (round 40)
    cuts = [k * LR_PATIENCE * EVERY for k in (1, 2, 3)]
    assert (result.stop_reason, result.steps, result.best_step) == ("early_stopping", 40, 0)
    assert result.lr_milestones == tuple(cuts)
    rates = [LR * GAMMA ** sum(m <= t for m in cuts) for t in range(40)]
    a = _last_a(tmp_path)
    assert a == pytest.approx(-sum(rates), rel=0, abs=40 * 4e-16)  # 40 float64 roundings
    assert a == pytest.approx(-LR * 10 * (1 + GAMMA + GAMMA**2 + GAMMA**3), rel=0, abs=1e-14)
    assert result.model.a.item() == 0.0  # the best weights, round 0's
    saved = read_checkpoint(tmp_path / "checkpoint").meta
    assert saved["optimizers"]["model"]["param_groups"][0]["lr"] == LR * GAMMA**3
    assert saved["schedule"] == {"milestones": cuts}


def test_a_resumed_plateau_run_equals_an_uninterrupted_one(
    make_config, tmp_path, gaussian_data
) -> None:
    data = {"dataset": gaussian_data, "progress": False}
    fit(_plateau(make_config), tmp_path / "a", model=_Drift(), **data)
    fit(_plateau(make_config, steps=24), tmp_path / "b", model=_Drift(), **data)
    assert read_checkpoint(tmp_path / "b" / "checkpoint").meta["schedule"] == {
        "milestones": [10, 20]
    }
    resumed = fit(_plateau(make_config), tmp_path / "b", model=_Drift(), resume=True, **data)
    assert resumed.lr_milestones == (10, 20, 30) and resumed.steps == 40
    assert _last_a(tmp_path / "b") == _last_a(tmp_path / "a")


def test_plateau_needs_early_stopping_and_sane_settings(make_config, tmp_path, gaussian_data):
    with pytest.raises(ConfigError, match="plateau needs early stopping"):
        fit(_plateau(make_config, early_stopping=False), tmp_path, model=_Drift(),
            dataset=gaussian_data, progress=False)  # fmt: skip
    for key, value, message in [
        ("lr_factor", 1.0, "must be in \\(0, 1\\)"),
        ("lr_milestones", [5, 3], "increasing order"),
        ("lr_patience", 0, "must be > 0"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(None, {"model": {"name": "gaussian"}, "data": {"name": "8gaussians"},
                               f"train.{key}": value})  # fmt: skip


def test_a_refit_replays_the_cuts_of_its_selection_before_the_best_step(tmp_path) -> None:
    config = load_config(None, {
        "model": {"name": "maf", "options": {"hidden": [16, 16]}},
        "data": {"name": "two_moons", "options": {"n_train": 256, "n_validation": 256}},
        "train": {"steps": 3000, "batch_size": 64, "lr": 5e-3, "device": "cpu", "patience": 6,
                  "lr_schedule": "plateau", "lr_patience": 2, "refit": True},
    })  # fmt: skip
    result = fit(config, tmp_path, progress=False)
    chosen = read_checkpoint(tmp_path / "selection" / "checkpoint").meta["schedule"]["milestones"]
    before = [m for m in chosen if m < result.best_step]
    assert before and len(before) < len(chosen)  # cuts on both sides of S*: the test can fail
    refit = load_config(tmp_path / "config.yaml").train
    assert (refit.lr_schedule, list(refit.lr_milestones)) == ("multistep", before)
    assert refit.steps == result.best_step and refit.lr_factor == 0.5
