"""Checkpoint files: exact round trip without pickle, atomic replacement, clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from probgen.train import CheckpointError
from probgen.train import checkpoint as ckpt
from probgen.train.checkpoint import read_checkpoint, write_checkpoint


def _trained(seed: int) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    opt = torch.optim.Adam(net.parameters(), lr=0.01, betas=(0.8, 0.95))
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(5, 3)).pow(2).mean().backward()
        opt.step()
    return net, opt


def _write(path, seed: int) -> tuple[nn.Module, torch.optim.Optimizer, torch.Tensor]:
    net, opt = _trained(seed)
    rng = torch.get_rng_state()
    write_checkpoint(
        path,
        modules={"model": net},
        optimizers={"model": opt},
        tensors={"rng/torch": rng},
        meta={"step": seed},
    )
    return net, opt, rng


def test_round_trip_is_exact_and_pickle_free(tmp_path) -> None:
    net, opt, rng = _write(tmp_path / "checkpoint", seed=1)
    assert sorted(p.name for p in (tmp_path / "checkpoint").iterdir()) == [
        "model.safetensors",
        "state.json",
        "state.safetensors",
    ]
    loaded = read_checkpoint(tmp_path / "checkpoint")
    net2, opt2 = _trained(seed=2)
    loaded.load_module("model", net2)
    loaded.load_optimizer("model", opt2)
    for (k, v), v2 in zip(net.state_dict().items(), net2.state_dict().values(), strict=True):
        assert torch.equal(v, v2), k
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for pid, state in s1["state"].items():
        for key, value in state.items():
            assert torch.equal(value, s2["state"][pid][key])
    assert torch.equal(loaded.tensors["rng/torch"], rng)
    assert loaded.meta["step"] == 1
    json.loads((tmp_path / "checkpoint" / "state.json").read_text())  # plain JSON


def test_failed_write_leaves_previous_checkpoint_and_no_debris(tmp_path, monkeypatch) -> None:
    net, _, _ = _write(tmp_path / "checkpoint", seed=1)

    def disk_full(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", disk_full)
    with pytest.raises(OSError, match="disk full"):
        _write(tmp_path / "checkpoint", seed=2)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint"]
    loaded = read_checkpoint(tmp_path / "checkpoint")
    assert loaded.meta["step"] == 1
    fresh, _ = _trained(seed=3)
    loaded.load_module("model", fresh)
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), fresh.parameters(), strict=True))


def test_crash_between_renames_falls_back_to_old_and_recovers(tmp_path) -> None:
    _write(tmp_path / "checkpoint", seed=1)
    (tmp_path / "checkpoint").rename(tmp_path / "checkpoint.old")  # as if killed mid-swap
    assert read_checkpoint(tmp_path / "checkpoint").meta["step"] == 1
    _write(tmp_path / "checkpoint", seed=2)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint"]
    assert read_checkpoint(tmp_path / "checkpoint").meta["step"] == 2


def test_errors_name_the_problem(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        read_checkpoint(tmp_path / "checkpoint")
    _write(tmp_path / "checkpoint", seed=1)
    loaded = read_checkpoint(tmp_path / "checkpoint")
    with pytest.raises(CheckpointError, match="does not fit Linear"):
        loaded.load_module("model", nn.Linear(3, 4))
    with pytest.raises(CheckpointError, match="no optimizer state for player 'critic'"):
        loaded.load_optimizer("critic", _trained(1)[1])
    (tmp_path / "checkpoint" / "state.safetensors").write_bytes(b"\x00" * 7)
    with pytest.raises(CheckpointError, match="unreadable"):
        read_checkpoint(tmp_path / "checkpoint")
