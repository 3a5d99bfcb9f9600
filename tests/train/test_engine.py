"""The training loop: players, resume, divergence, clipping, EMA, budgets, load_run."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch
from torch import Tensor, nn

from probgen.core import DataSpec, GenerativeModel, Likelihood
from probgen.data.base import ArrayDataset
from probgen.models.gaussian import GaussianModel
from probgen.train import (
    CheckpointError,
    TrainingDiverged,
    TrainState,
    fit,
    load_config,
    load_run,
)
from probgen.train import checkpoint as checkpoint_module
from probgen.train.checkpoint import read_checkpoint


def _params(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_resume_reproduces_an_uninterrupted_run_exactly(
    make_config, tmp_path, gaussian_data
) -> None:
    config = make_config(
        steps=40,
        lr=0.05,
        lr_schedule="cosine",
        warmup_steps=3,
        ema_decay=0.9,
        eval_every=5,
        checkpoint_every=10,
        grad_clip=5.0,
    )
    straight = fit(
        config, tmp_path / "a", model=GaussianModel((2,)), dataset=gaussian_data, progress=False
    )

    def crash_at_25(state: TrainState) -> None:
        if state.step == 25:
            raise KeyboardInterrupt

    torch.manual_seed(0)  # the second model starts from the same init as the first
    with pytest.raises(KeyboardInterrupt):
        fit(
            config,
            tmp_path / "b",
            model=GaussianModel((2,)),
            dataset=gaussian_data,
            progress=False,
            callbacks=[crash_at_25],
        )
    assert read_checkpoint(tmp_path / "b" / "checkpoint").meta["step"] == 20
    resumed_model = GaussianModel((2,))
    resumed = fit(
        config,
        tmp_path / "b",
        model=resumed_model,
        dataset=gaussian_data,
        progress=False,
        resume=True,
    )

    def losses(history: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "elapsed"} for r in history]

    assert len(straight.history) == 41  # round 0's validation (early stopping is on), 40 rounds
    assert straight.history[0]["step"] == 0
    assert losses(resumed.history) == losses(straight.history)
    for k, v in _params(straight.model).items():  # EMA weights
        assert torch.equal(v, _params(resumed.model)[k])
    assert resumed.steps == 40


class _DiesAt(GaussianModel):
    """A Gaussian whose loss is NaN at its k-th call."""

    def __init__(self, k: int) -> None:
        super().__init__((2,))
        self.k, self.calls = k, 0

    def loss(self, x: Tensor, player: str = "model") -> Tensor:
        self.calls += 1
        loss = super().loss(x, player)
        return loss * math.nan if self.calls == self.k else loss


def test_nonfinite_loss_raises_and_keeps_last_good_checkpoint(
    make_config, tmp_path, gaussian_data
) -> None:
    config = make_config(steps=30, checkpoint_every=5)
    model = _DiesAt(13)
    with pytest.raises(TrainingDiverged, match=r"player 'model' is nan at step 13.*step 10"):
        fit(config, tmp_path, model=model, dataset=gaussian_data, progress=False)
    checkpoint = read_checkpoint(tmp_path / "checkpoint")
    assert checkpoint.meta["step"] == 10
    restored = GaussianModel((2,))
    checkpoint.load_module("model", restored)
    assert all(torch.isfinite(p).all() for p in restored.parameters())
    history = json.loads((tmp_path / "history.json").read_text())
    assert [r["step"] for r in history] == list(range(13))  # round 0: early stopping's start


def test_crash_while_writing_a_checkpoint_keeps_the_previous_one(
    make_config, tmp_path, gaussian_data, monkeypatch
) -> None:
    config = make_config(steps=10, checkpoint_every=5, eval_every=5)
    real_save, calls = checkpoint_module.save_file, []

    def failing_save(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second checkpoint (step 10) dies mid-write
            raise OSError("disk full")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(checkpoint_module, "save_file", failing_save)
    seen = {}
    with pytest.raises(OSError, match="disk full"):
        fit(
            config,
            tmp_path,
            model=GaussianModel((2,)),
            dataset=gaussian_data,
            progress=False,
            callbacks=[lambda s: seen.update({s.step: _params(s.model)}) if s.step == 5 else None],
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint",
        "config.yaml",
        "history.json",
    ]
    model, _, _ = load_run(tmp_path)
    for k, v in _params(model).items():
        assert torch.equal(v, seen[5][k])


class _Duel(GenerativeModel):
    """Two players on a bilinear game: generator loss a·b, critic loss -a·b.

    With plain SGD the exact iterates are b ← b + lr_c·a (per critic step) and
    a ← a - lr_g·b (per generator step).
    """

    def __init__(self) -> None:
        super().__init__((1,))
        self.a = nn.Parameter(torch.tensor(1.0))
        self.b = nn.Parameter(torch.tensor(0.5))
        self.calls = {"generator": 0, "critic": 0}

    def players(self) -> dict[str, list[nn.Parameter]]:
        return {"critic": [self.b], "generator": [self.a]}

    def loss(self, x: Tensor, player: str = "model") -> Tensor:
        self._check_player(player)
        self.calls[player] += 1
        sign = 1.0 if player == "generator" else -1.0
        return sign * self.a * self.b + 0.0 * x.sum()

    def sample(self, n: int, **options) -> Tensor:
        return self.a.detach().expand(n, 1).clone()


def test_players_take_their_own_steps_with_their_own_optimizer(make_config, tmp_path) -> None:
    x = torch.zeros(8, 1)
    data = ArrayDataset(x, x, x, DataSpec((1,)))
    config = make_config(
        steps=4,
        optimizer="sgd",
        betas=(0.0, 0.999),
        lr=0.1,
        player_lr={"critic": 0.05},
        steps_per_round={"critic": 3},
    )
    model = _Duel()
    result = fit(config, tmp_path, model=model, dataset=data, progress=False)
    a, b = 1.0, 0.5
    for _ in range(4):
        for _ in range(3):
            b += 0.05 * a
        a -= 0.1 * b
    assert model.calls == {"critic": 12, "generator": 4}
    assert model.a.item() == pytest.approx(a, abs=1e-14)
    assert model.b.item() == pytest.approx(b, abs=1e-14)
    assert set(result.history[-1]) == {"step", "loss/critic", "loss/generator", "elapsed"}
    assert model.likelihood is Likelihood.NONE  # no val_nll attempted even with eval on


def test_gradient_clipping_rescales_the_gradient(make_config, tmp_path, gaussian_data) -> None:
    def sgd_update(clip: float | None, run: str) -> Tensor:
        torch.manual_seed(0)
        model = GaussianModel((2,))
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        config = make_config(steps=1, optimizer="sgd", betas=(0.0, 0.999), lr=1.0, grad_clip=clip)
        fit(config, tmp_path / run, model=model, dataset=gaussian_data, progress=False)
        return torch.cat([p.detach().flatten() for p in model.parameters()]) - before

    gradient = -sgd_update(None, "free")  # lr 1: the update is minus the gradient
    clipped = -sgd_update(1e-3, "clipped")
    assert gradient.norm() > 1e-2  # so clipping is active
    # torch's clip_grad_norm_ scales by max_norm / (‖g‖ + 1e-6)
    torch.testing.assert_close(
        clipped, gradient * 1e-3 / (gradient.norm() + 1e-6), rtol=1e-12, atol=0
    )


class _Recording(GaussianModel):
    """Records its weights each time ``loss`` is called, i.e. the weights before each step."""

    def __init__(self) -> None:
        super().__init__((2,))
        self.seen: list[Tensor] = []

    def loss(self, x: Tensor, player: str = "model") -> Tensor:
        self.seen.append(torch.cat([p.detach().flatten().clone() for p in self.parameters()]))
        return super().loss(x, player)


def test_ema_is_the_exponential_average_of_the_weights(
    make_config, tmp_path, gaussian_data
) -> None:
    decay = 0.8
    model = _Recording()
    result = fit(
        make_config(steps=6, lr=0.1, ema_decay=decay),
        tmp_path,
        model=model,
        dataset=gaussian_data,
        progress=False,
    )
    final = torch.cat([p.detach().flatten() for p in model.parameters()])
    weights = [*model.seen[1:], final]  # weights after rounds 1..6
    ema = weights[0]
    for w in weights[1:]:
        ema = decay * ema + (1 - decay) * w
    got = torch.cat([p.detach().flatten() for p in result.model.parameters()])
    torch.testing.assert_close(got, ema, rtol=0, atol=1e-12)
    loaded, _, _ = load_run(tmp_path)  # sampling uses the EMA weights
    torch.testing.assert_close(
        torch.cat([p.flatten() for p in loaded.parameters()]), ema, rtol=0, atol=1e-12
    )


def test_evaluation_records_exact_validation_nll_and_callback_metrics(
    make_config, tmp_path, gaussian_data
) -> None:
    config = make_config(steps=6, eval_every=3, log_every=2)
    result = fit(
        config,
        tmp_path,
        model=GaussianModel((2,)),
        dataset=gaussian_data,
        progress=False,
        callbacks=[lambda s: {"mean_x": s.model.loc.sum().item()}],
    )
    assert [r["step"] for r in result.history] == [0, 2, 3, 4, 6]
    evals = [r for r in result.history if "val_nll" in r]
    assert [r["step"] for r in evals] == [0, 3, 6]  # round 0 too: early stopping is on
    expected = -result.model.log_prob(gaussian_data.split("validation")).mean().item()
    assert evals[-1]["val_nll"] == pytest.approx(expected, rel=1e-12)
    assert "loss/model" not in result.history[2] and "mean_x" in result.history[2]


def test_time_budget_stops_and_checkpoints(make_config, tmp_path, gaussian_data) -> None:
    config = make_config(steps=1000, time_budget=1e-9)
    result = fit(config, tmp_path, model=GaussianModel((2,)), dataset=gaussian_data, progress=False)
    assert (result.stop_reason, result.steps) == ("time_budget", 1)
    assert read_checkpoint(tmp_path / "checkpoint").meta["step"] == 1


class _SleepyGaussian(GaussianModel):
    """A Gaussian whose loss waits 0.1 s of wall time without using CPU time."""

    def loss(self, x: Tensor, player: str = "model") -> Tensor:
        time.sleep(0.1)
        return super().loss(x, player)


@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_time_budget_counts_the_chosen_clock(
    make_config, tmp_path, gaussian_data, clock: str
) -> None:
    # 0.1 s of sleep per step: the wall clock passes 0.25 s by step 3 at the latest (sooner
    # on a slow machine); the CPU clock, a few ms per step, stays far below it for all 5 steps
    config = make_config(steps=5, time_budget=0.25, budget_clock=clock)
    model = _SleepyGaussian((2,))
    result = fit(config, tmp_path, model=model, dataset=gaussian_data, progress=False)
    if clock == "wall":
        assert (result.stop_reason, result.steps <= 3) == ("time_budget", True)
    else:
        assert (result.stop_reason, result.steps) == ("steps", 5)


def test_registered_run_round_trips_through_config_and_load_run(make_config, tmp_path) -> None:
    config = make_config(steps=5, lr=0.05)
    result = fit(config, tmp_path, progress=False)
    assert load_config(tmp_path / "config.yaml") == config
    model, loaded_config, dataset = load_run(tmp_path)
    assert loaded_config == config and dataset.spec == result.dataset.spec
    for k, v in _params(result.model).items():
        assert torch.equal(v, _params(model)[k])
    with pytest.raises(CheckpointError, match="already holds a checkpoint"):
        fit(config, tmp_path, progress=False)


def test_load_run_errors_name_the_missing_or_broken_file(
    make_config, tmp_path, gaussian_data
) -> None:
    with pytest.raises(CheckpointError, match=r"config\.yaml is missing"):
        load_run(tmp_path)
    fit(make_config(steps=2), tmp_path, progress=False)
    (tmp_path / "checkpoint" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_run(tmp_path)
    (tmp_path / "checkpoint" / "state.json").unlink()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_run(tmp_path)


def test_progress_bar_shows_losses_and_speed(make_config, tmp_path, gaussian_data, capsys) -> None:
    fit(make_config(steps=3), tmp_path, model=GaussianModel((2,)), dataset=gaussian_data)
    out = capsys.readouterr().out
    assert "3/3" in out and "model " in out and "steps/s" in out
