"""Per-player optimizers and learning-rate schedules."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from probgen.train import ConfigError, TrainConfig
from probgen.train.optim import (
    ConstantSchedule,
    CosineSchedule,
    WarmupSchedule,
    clip_grad_norm,
    make_optimizers,
    make_schedule,
)


def test_cosine_schedule_closed_form() -> None:
    s = CosineSchedule(total=110, warmup=10)
    assert [s(t) for t in range(3)] == pytest.approx([0.1, 0.2, 0.3], abs=1e-15)
    assert s(10) == 1.0
    assert s(60) == pytest.approx(0.5, abs=1e-15)  # halfway through the decay: cos(π/2) = 0
    assert s(35) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)), abs=1e-15)
    assert s(110) == pytest.approx(0.0, abs=1e-15)


@settings(max_examples=20, deadline=None)
@given(total=st.integers(2, 500), warmup=st.integers(0, 50), t=st.integers(0, 600))
def test_schedules_stay_in_unit_interval(total: int, warmup: int, t: int) -> None:
    for schedule in (CosineSchedule(total, warmup), WarmupSchedule(max(1, warmup))):
        assert 0.0 <= schedule(t) <= 1.0
    assert ConstantSchedule()(t) == 1.0
    assert WarmupSchedule(max(1, warmup))(t) == min(1.0, (t + 1) / max(1, warmup))


def test_make_schedule_maps_names_and_rejects_meaningless_warmup() -> None:
    assert make_schedule(TrainConfig(steps=50, lr_schedule="cosine", warmup_steps=5)) == (
        CosineSchedule(total=50, warmup=5)
    )
    assert make_schedule(TrainConfig(lr_schedule="warmup", warmup_steps=7)) == WarmupSchedule(7)
    assert make_schedule(TrainConfig()) == ConstantSchedule()
    with pytest.raises(ConfigError, match="constant has no warm-up"):
        make_schedule(TrainConfig(warmup_steps=3))
    with pytest.raises(ConfigError, match="warmup_steps ≥ 1"):
        make_schedule(TrainConfig(lr_schedule="warmup"))


def test_one_optimizer_per_player_with_its_own_lr() -> None:
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(3))
    train = TrainConfig(optimizer="adamw", lr=1e-3, player_lr={"critic": 4e-3}, betas=(0.5, 0.9))
    opts = make_optimizers({"generator": [a], "critic": [b]}, train)
    assert isinstance(opts["critic"], torch.optim.AdamW)
    assert opts["critic"].param_groups[0]["params"] == [b]
    assert opts["critic"].param_groups[0]["lr"] == 4e-3
    assert opts["generator"].param_groups[0]["lr"] == 1e-3
    assert opts["generator"].param_groups[0]["betas"] == (0.5, 0.9)
    sgd = make_optimizers({"model": [a]}, TrainConfig(optimizer="sgd", betas=(0.7, 0.9)))
    assert sgd["model"].param_groups[0]["momentum"] == 0.7


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_fused_adam_takes_the_same_steps_as_the_loop(optimizer: str) -> None:
    """On CPU the engine's Adam is torch's fused kernel, and it matches the per-tensor loop."""
    torch.manual_seed(0)
    target = torch.randn(5)
    start = torch.randn(5)
    train = TrainConfig(optimizer=optimizer, lr=0.1, weight_decay=0.01)
    fused_param, loop_param = nn.Parameter(start.clone()), nn.Parameter(start.clone())
    fused = make_optimizers({"model": [fused_param]}, train)["model"]
    assert fused.param_groups[0]["fused"] is True
    cls = type(fused)
    loop = cls([loop_param], lr=0.1, weight_decay=0.01, betas=train.betas, fused=False)
    for _ in range(20):
        for param, opt in ((fused_param, fused), (loop_param, loop)):
            opt.zero_grad()
            (param - target).square().sum().backward()
            opt.step()
    torch.testing.assert_close(fused_param.detach(), loop_param.detach())
    assert (fused_param - target).norm() < (start - target).norm()


def test_unknown_player_in_config_names_the_model_players() -> None:
    p = nn.Parameter(torch.zeros(1))
    with pytest.raises(ConfigError, match=r"unknown player 'critic'.*players are model"):
        make_optimizers({"model": [p]}, TrainConfig(steps_per_round={"critic": 5}))


@pytest.mark.parametrize("sync_free", [False, True])  # the CPU and the accelerator paths
@pytest.mark.parametrize("max_norm", [0.05, 1.0, 1e3])  # clipped hard, mildly, not at all
def test_clip_grad_norm_follows_torch(max_norm: float, sync_free: bool) -> None:
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    x = torch.randn(16, 3)
    for net in nets:
        net(x).square().sum().backward()
    nets[0][2].bias.grad = None  # a weight without a gradient is skipped
    nets[1][2].bias.grad = None
    ours = float(clip_grad_norm(list(nets[0].parameters()), max_norm, sync_free=sync_free))
    theirs = torch.nn.utils.clip_grad_norm_(
        [p for p in nets[1].parameters() if p.grad is not None], max_norm
    )
    assert math.isclose(ours, float(theirs), rel_tol=1e-12)
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert (a.grad is None) == (b.grad is None)
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, rtol=4 * torch.finfo(a.dtype).eps, atol=0)
    after = [float(p.grad.square().sum()) for p in nets[0].parameters() if p.grad is not None]
    expected = ours * min(1.0, max_norm / (ours + 1e-6))  # the norm after: two-sided
    assert math.isclose(math.sqrt(sum(after)), expected, rel_tol=1e-12)
    assert float(clip_grad_norm([nn.Parameter(torch.zeros(2))], 1.0)) == 0.0  # no gradients
