"""The engine's intra-op threads: the FLOP count, the rule, the override, the restore."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from probgen.compare.config import applicable_models
from probgen.core import DataSpec, GenerativeModel, Likelihood
from probgen.data.base import ArrayDataset
from probgen.models import build_model
from probgen.registry import DATASETS
from probgen.train import ConfigError, TrainingDiverged, fit, load_config
from probgen.train.threads import (
    FLOP_THRESHOLD,
    available_cores,
    choose_threads,
    intra_op_threads,
    round_flops,
    training_threads,
)


class _Linear(GenerativeModel):
    """loss = Σ (x W): one (B, D) × (D, H) product forward, one (D, B) × (B, H) backward."""

    likelihood = Likelihood.NONE

    def __init__(self, d: int, h: int) -> None:
        super().__init__((d,))
        self.weight = nn.Parameter(torch.randn(d, h))
        self.calls = 0

    def loss(self, x: Tensor, player: str = "model") -> Tensor:
        self.calls += 1
        return (x @ self.weight).sum()

    def sample(self, n: int, **options: object) -> Tensor:
        return torch.zeros(n, *self.event_shape)


def _data(d: int) -> ArrayDataset:
    x = torch.randn(50, d)
    return ArrayDataset(x, x, x, DataSpec((d,)))


def test_round_flops_counts_forward_and_backward_products_exactly() -> None:
    b, d, h = 32, 5, 7
    model = _Linear(d, h)
    # forward x W: 2 B D H; backward dL/dW = xᵀ g: 2 D B H (x needs no gradient)
    assert round_flops(model, _data(d), b, {}) == 4 * b * d * h
    assert round_flops(model, _data(d), b, {"model": 3}) == 3 * 4 * b * d * h


def test_round_flops_leaves_the_model_and_the_random_streams_alone() -> None:
    model, data = _Linear(4, 3), _data(4)
    before = model.weight.detach().clone()
    state = torch.get_rng_state()
    round_flops(model, data, 16, {})
    assert model.calls == 0 and model.weight.grad is None
    assert torch.equal(model.weight.detach(), before)
    assert torch.equal(torch.get_rng_state(), state)


def test_rule_is_one_thread_below_the_threshold_and_every_core_from_it() -> None:
    assert choose_threads(FLOP_THRESHOLD * 0.999, cores=8) == 1
    assert choose_threads(FLOP_THRESHOLD, cores=8) == 8
    assert choose_threads(0.0) == 1
    assert choose_threads(FLOP_THRESHOLD) == available_cores()


@pytest.mark.parametrize("family", applicable_models(DataSpec((2,))))
def test_every_toy_family_gets_one_thread(family: str) -> None:
    # includes wgan_gp, whose gradient penalty differentiates twice
    data = DATASETS.get("8gaussians")(n_train=512)
    model = build_model(family, data.spec)
    assert training_threads("auto", "cpu", model, data, 256, {"critic": 5}) == 1


def test_convolutional_model_gets_every_core() -> None:
    data = DATASETS.get("digits")()
    model = build_model("pixelcnn", data.spec)
    assert round_flops(model, data, 64, {}) >= FLOP_THRESHOLD
    assert training_threads("auto", "cpu", model, data, 64, {}) == available_cores()


def test_an_integer_wins_and_auto_leaves_other_devices_alone() -> None:
    data = DATASETS.get("8gaussians")(n_train=512)
    model = build_model("nsf", data.spec)
    assert training_threads(3, "cpu", model, data, 256, {}) == 3
    assert training_threads("auto", "cuda", model, data, 256, {}) is None


def _threads_seen(make_config, tmp_path, gaussian_data, **train) -> tuple[int | None, set[int]]:
    seen: set[int] = set()

    def record(state) -> None:
        seen.add(torch.get_num_threads())

    config = make_config(eval_every=5, **train)
    result = fit(config, tmp_path, progress=False, callbacks=[record], dataset=gaussian_data)
    return result.threads, seen


@pytest.mark.parametrize("outside", [1, 2])
def test_fit_runs_with_its_threads_and_restores_the_count(
    make_config, tmp_path, gaussian_data, outside
) -> None:
    torch.set_num_threads(outside)
    try:
        threads, seen = _threads_seen(make_config, tmp_path / "auto", gaussian_data)
        assert threads == 1 and seen == {1}
        assert torch.get_num_threads() == outside
        threads, seen = _threads_seen(make_config, tmp_path / "two", gaussian_data, threads=2)
        assert threads == 2 and seen == {2}
        assert torch.get_num_threads() == outside
    finally:
        torch.set_num_threads(1)


def test_threads_are_restored_when_training_fails(make_config, tmp_path) -> None:
    x = torch.full((64, 2), 1e200)  # finite, but its square overflows: the loss is inf
    data = ArrayDataset(x, x, x, DataSpec((2,)))
    torch.set_num_threads(2)
    try:
        with pytest.raises(TrainingDiverged):
            # without the data map, which would standardise the constant data to 0
            fit(make_config(threads=1, standardize="none"), tmp_path, progress=False, dataset=data)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_intra_op_threads_none_keeps_the_count() -> None:
    torch.set_num_threads(2)
    try:
        with intra_op_threads(None):
            assert torch.get_num_threads() == 2
        with intra_op_threads(1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


@pytest.mark.parametrize("value", ["auto", 1, 4])
def test_config_accepts_auto_or_a_positive_integer(value) -> None:
    config = load_config(None, {"model.name": "gaussian", "data.name": "8gaussians",
                                "train.threads": value})  # fmt: skip
    assert config.train.threads == value


@pytest.mark.parametrize("value", ["many", 0, -1, 1.5, True])
def test_config_rejects_other_thread_counts(value) -> None:
    with pytest.raises(ConfigError, match=r"train\.threads"):
        load_config(None, {"model.name": "gaussian", "data.name": "8gaussians",
                           "train.threads": value})  # fmt: skip
