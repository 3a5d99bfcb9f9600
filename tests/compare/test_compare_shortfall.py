"""Flags for rows whose training fell short of plan, on histories built by hand."""

from __future__ import annotations

import math

import pytest
import torch

from probgen.compare.run import ModelResult
from probgen.compare.shortfall import (
    FALLING_FRACTION,
    MIN_CPU_SHARE,
    MIN_RECORDS,
    STALLED_RECORDS,
    drop_share_at_end,
    stalled_since,
    training_flags,
)
from probgen.compare.table import columns, rich_table
from probgen.train import TrainConfig

EPS = 1e-12  # a few float64 roundings of numbers of order 10


def _history(loss, steps: int = 2000, every: int = 25) -> list[dict]:
    return [{"step": s, "loss/model": loss(s), "elapsed": s / 100}
            for s in range(every, steps + 1, every)]  # fmt: skip


def _row(history, **fields) -> ModelResult:
    defaults = {"likelihood": "exact", "steps": history[-1]["step"], "stop_reason": "steps",
                "cpu_share": 1.0}  # fmt: skip
    return ModelResult("m", "m", history=history, **(defaults | fields))


def test_a_straight_descent_gives_one_ninth() -> None:
    # windows (0, 200], (1600, 1800], (1800, 2000] have mean steps 112.5, 1712.5, 1912.5
    r = drop_share_at_end(_history(lambda s: 10 - s / 1000), "loss/model")
    assert r is not None and abs(r - 1 / 9) <= EPS


def test_a_levelled_off_curve_is_not_judged_falling() -> None:
    r = drop_share_at_end(_history(lambda s: 3 + 2 * math.exp(-s / 100)), "loss/model")
    # the last drop is ~1e-8 of the total (e^{-17}): below any flag, or not significant
    assert r is None or r < 1e-7


def test_minibatch_noise_on_a_plateau_is_not_a_fall_but_a_noisy_descent_is() -> None:
    noise = torch.randn(400, generator=torch.Generator().manual_seed(0)).tolist()
    plateau = _history(lambda s: 3 + 0.1 * noise[s // 5 - 1], every=5)
    assert drop_share_at_end(plateau, "loss/model") is None
    falling = _history(lambda s: 5 - s / 1000 + 0.1 * noise[s // 5 - 1], every=5)
    r = drop_share_at_end(falling, "loss/model")
    # 1/9 up to 4 standard errors of the window means (0.1 / √40 each, total drop 1.8)
    assert r is not None and abs(r - 1 / 9) < 4 * 0.1 * math.sqrt(2 / 40) / 1.8


@pytest.mark.parametrize(
    "history",
    [
        _history(lambda s: 10 - s / 1000, steps=(MIN_RECORDS - 1) * 25),  # too few records
        _history(lambda s: 3.0),  # no drop at all
        _history(lambda s: 1 + s / 1000),  # rising: nothing to judge
    ],
)
def test_curves_that_cannot_be_judged_give_none(history) -> None:
    assert drop_share_at_end(history, "loss/model") is None


def test_unconverged_flag_on_a_falling_loss_only() -> None:
    falling, flat = _history(lambda s: 10 - s / 1000), _history(lambda s: 3 + math.exp(-s / 100))
    (flag,) = training_flags(_row(falling), TrainConfig(), ["model"])
    assert flag.startswith("unconverged: the loss fell 11% of its whole drop")
    assert f"{FALLING_FRACTION:.0%}" in flag
    assert training_flags(_row(flat), TrainConfig(), ["model"]) == []
    # adversarial losses and energies do not measure progress: not judged
    assert training_flags(_row(falling), TrainConfig(), ["critic", "generator"]) == []
    assert training_flags(_row(falling, likelihood="unnormalized"), TrainConfig(), ["model"]) == []


def test_starved_flag_on_a_wall_clock_budget_with_a_small_cpu_share() -> None:
    flat = _history(lambda s: 3 + math.exp(-s / 100), steps=500)
    wall = TrainConfig(time_budget=20.0, budget_clock="wall")
    starved = _row(flat, stop_reason="time_budget", cpu_share=0.2)
    (flag,) = training_flags(starved, wall, ["model"])
    assert flag.startswith("starved: 20% of a core per thread in its 20 s wall-clock budget")
    assert "500 steps where a free core gives about 2500" in flag
    fine = _row(flat, stop_reason="time_budget", cpu_share=MIN_CPU_SHARE)
    assert training_flags(fine, wall, ["model"]) == []
    # a CPU-second budget, or a run that finished its steps, is not shortened by load
    cpu = TrainConfig(time_budget=20.0, budget_clock="cpu")
    assert training_flags(starved, cpu, ["model"]) == []
    assert training_flags(_row(flat, cpu_share=0.2), wall, ["model"]) == []


def test_flags_show_in_the_table_with_their_reason() -> None:
    flagged = _row(_history(lambda s: 10 - s / 1000), train_seconds=20.0)
    flagged.flags = training_flags(flagged, TrainConfig(), ["model"])
    clean = _row(_history(lambda s: 3.0), train_seconds=20.0)
    cols = {c.key: c for c in columns([flagged, clean])}
    assert cols["flags"].cell(flagged).startswith("unconverged")
    assert cols["flags"].cell(clean) == "—"
    assert cols["training"].cell(flagged).endswith("(!)")
    assert "flags" not in {c.key for c in columns([clean])}
    assert rich_table([flagged, clean], "t").columns[-1].header == "training fell short"


def test_a_loss_frozen_to_the_last_bit_is_flagged_stalled_for_its_player_only() -> None:
    """A dead WGAN critic: V ≡ b, so the critic's loss is 0 and the generator's −b from then on."""
    noise = torch.randn(80, generator=torch.Generator().manual_seed(1)).tolist()
    dead_from = 1500  # rounds logged every 25: 20 identical records at the end
    history = [
        {"step": s, "loss/critic": 0.0 if s > dead_from else 0.1 * noise[i],
         "loss/generator": -0.006396 if s > dead_from else noise[i + 1], "elapsed": s / 100}
        for i, s in enumerate(range(25, 2001, 25))
    ]  # fmt: skip
    assert stalled_since(history, "loss/critic") == (dead_from + 25, 20)
    gan = _row(history, likelihood="none")
    (flag,) = training_flags(gan, TrainConfig(), ["generator", "critic"])
    assert flag.startswith(
        "stalled from round 1525: the loss of generator (exactly -0.006396) and critic "
        "(exactly 0) did not change for 20 logged rounds"
    )
    # minibatch noise never repeats; a short frozen tail is not judged
    assert stalled_since(history[:61], "loss/generator") is None
    short = history[: 80 - (20 - STALLED_RECORDS + 1)]  # STALLED_RECORDS − 1 identical records
    assert stalled_since(short, "loss/critic") is None
