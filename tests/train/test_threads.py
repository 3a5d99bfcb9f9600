"""The engine's intra-op threads: the FLOP count, the rule, the override, the restore."""

from __future__ import annotations

import time

import pytest
import torch
from torch import Tensor, nn

from probgen.compare.config import applicable_models
from probgen.core import DataSpec, GenerativeModel, Likelihood
from probgen.data.base import ArrayDataset
from probgen.models import build_model
from probgen.registry import DATASETS
from probgen.train import ConfigError, TrainingDiverged, fit, load_config, threads
from probgen.train.threads import (
    FLOP_THRESHOLD,
    TUNE_THRESHOLD,
    IdleCores,
    ThreadTuner,
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
def test_every_toy_family_gets_one_thread_or_a_tuner_that_starts_at_one(family: str) -> None:
    # includes wgan_gp, whose gradient penalty differentiates twice
    data = DATASETS.get("8gaussians")(n_train=512)
    model = build_model(family, data.spec)
    plan = training_threads("auto", "cpu", model, data, 256, {"critic": 5})
    if round_flops(model, data, 256, {"critic": 5}) < TUNE_THRESHOLD or available_cores() == 1:
        assert plan == 1
    else:
        assert isinstance(plan, ThreadTuner) and plan.current == 1


@pytest.mark.parametrize("others", ["quiet", "busy"])
def test_convolutional_model_starts_on_every_core_unless_the_others_are_busy(
    others, monkeypatch
) -> None:
    monkeypatch.setattr(threads, "IdleCores", lambda: {"quiet": _quiet, "busy": _busy}[others])
    data = DATASETS.get("digits")()
    model = build_model("pixelcnn", data.spec)
    assert round_flops(model, data, 64, {}) >= FLOP_THRESHOLD
    plan = training_threads("auto", "cpu", model, data, 64, {})
    if available_cores() == 1:
        assert plan == 1
    else:
        start = available_cores() if others == "quiet" else 1
        assert isinstance(plan, ThreadTuner) and plan.current == start


class _Clock:
    """A clock that a simulated round advances by the time its thread count costs."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _run(tuner: ThreadTuner, clock: _Clock, cost, rounds: int) -> list[int]:
    """``rounds`` rounds where a round on n threads takes ``cost(n, round)`` seconds."""
    counts = []
    for i in range(rounds):
        with tuner.round():
            counts.append(torch.get_num_threads())
            clock.now += cost(torch.get_num_threads(), i)
    return counts


def _quiet() -> float:
    return 1.0  # the other core of two was idle


def _busy() -> float:
    return 0.1


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("start", [1, 2])
def test_tuner_keeps_the_faster_count_and_settles_each_change(start, restore_threads) -> None:
    clock = _Clock()
    tuner = ThreadTuner(2, start, probe=4, recheck=1e9, clock=clock, idle=_quiet)
    counts = _run(tuner, clock, lambda n, i: {1: 1.0, 2: 0.6}[n], 40)
    # settle + 4 rounds on the start; then the other count: from 1, settle + 4 rounds of
    # 0.6 s (2.4 s ≤ 4 · 1.0); from 2, settle + rounds of 1.0 s until they exceed
    # 4 · 0.6 = 2.4 s (3)
    tried = [2] * 5 if start == 1 else [1] * 4
    assert counts[: 5 + len(tried)] == [start] * 5 + tried
    assert set(counts[5 + len(tried) :]) == {2} and tuner.threads == 2
    assert tuner.kept_mean == pytest.approx(0.6, rel=1e-12)


def test_tuner_stops_trying_a_count_that_is_already_slower(restore_threads) -> None:
    # one busy process: a two-thread round costs 50 one-thread rounds
    clock = _Clock()
    tuner = ThreadTuner(2, 1, probe=4, recheck=1e9, clock=clock, idle=_quiet)
    counts = _run(tuner, clock, lambda n, i: {1: 1.0, 2: 50.0}[n], 30)
    assert counts.count(2) == 1  # its settling round alone took more than 4 one-thread rounds
    assert counts[-1] == 1 and tuner.threads == 1


def test_a_slow_settling_round_does_not_count_against_a_faster_count(restore_threads) -> None:
    # the first two-thread round starts a thread pool (3 s); the rest take 0.8 s
    clock, first = _Clock(), []

    def cost(n: int, i: int) -> float:
        if n == 2 and not first:
            first.append(i)
            return 3.0
        return {1: 1.0, 2: 0.8}[n]

    tuner = ThreadTuner(2, 1, probe=4, recheck=1e9, clock=clock, idle=_quiet)
    counts = _run(tuner, clock, cost, 30)
    assert counts[:10] == [1] * 5 + [2] * 5 and set(counts[10:]) == {2}
    assert tuner.kept_mean == pytest.approx(0.8, rel=1e-12)


def test_tuner_measures_again_when_load_arrives_and_when_it_leaves(restore_threads) -> None:
    clock = _Clock()
    tuner = ThreadTuner(2, 1, probe=4, recheck=100.0, clock=clock, idle=_quiet)

    def cost(n: int, i: int) -> float:  # quiet, busy from round 30 to 80, quiet again
        busy = 30 <= i < 80
        return {1: 1.0, 2: 30.0 if busy else 0.5}[n]

    counts = _run(tuner, clock, cost, 400)
    # quiet: settle + 4 rounds on 1 (mean 1.0), settle + 4 on 2 (mean 0.5), 2 kept
    assert counts[:10] == [1] * 5 + [2] * 5 and set(counts[10:31]) == {2}
    # round 30 is busy, 60× the kept mean: one thread is tried at once against it
    # (settle + 4 rounds, mean 1.0 < 30) and kept while the machine is busy
    assert set(counts[31:80]) == {1}
    assert counts[-1] == 2  # quiet again: the recheck after 100 s finds two threads faster
    assert tuner.rounds[1] + tuner.rounds[2] == 400


@pytest.mark.parametrize("start", [1, 2])
def test_tuner_does_not_try_every_core_when_the_others_are_busy(start, restore_threads) -> None:
    # the slowest case: a two-thread round would cost 100 one-thread rounds
    clock = _Clock()
    tuner = ThreadTuner(2, start, probe=4, recheck=10.0, clock=clock, idle=_busy)
    counts = _run(tuner, clock, lambda n, i: {1: 1.0, 2: 100.0}[n], 60)
    assert counts == [1] * 60 and tuner.threads == 1


def test_tuner_tries_every_core_once_the_others_are_free(restore_threads) -> None:
    clock, free = _Clock(), iter([0.1] * 3 + [1.0] * 100)
    tuner = ThreadTuner(2, 1, probe=4, recheck=10.0, clock=clock, idle=lambda: next(free))
    counts = _run(tuner, clock, lambda n, i: {1: 1.0, 2: 0.5}[n], 60)
    # busy at the first three decisions (after rounds 4, 19 and 34: settle + 4 baseline
    # rounds, then 1 kept until more than 10 s have passed, 4 more baseline rounds, …):
    # one thread throughout; free at the fourth (after round 49): 2 is tried and kept
    first_two = counts.index(2)
    assert set(counts[:first_two]) == {1} and first_two == 5 + 3 * 15
    assert set(counts[first_two:]) == {2}


def test_idle_cores_reads_proc_stat_within_the_cores() -> None:
    idle = IdleCores(min_seconds=0.0)
    deadline = time.perf_counter() + 0.2
    while time.perf_counter() < deadline:  # keep one core busy for 0.2 s
        pass
    free = idle()
    cores = available_cores()
    if free is None:
        pytest.skip("no /proc/stat and no load average here")
    # this process used about one of the cores for the window
    assert 0.0 <= free <= cores - 0.5


def test_idle_cores_waits_for_a_long_enough_window() -> None:
    idle = IdleCores(min_seconds=3600.0)
    if idle.last is None:
        pytest.skip("no /proc/stat here")
    assert idle() is None and idle() is None  # the window keeps growing


def test_tuner_rejects_a_start_other_than_one_or_every_core() -> None:
    with pytest.raises(ValueError, match="start"):
        ThreadTuner(4, 2)
    with pytest.raises(ValueError, match="start"):
        ThreadTuner(1, 1)


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


@pytest.mark.skipif(available_cores() == 1, reason="one core: nothing to measure")
def test_fit_measures_the_count_above_the_tune_threshold(
    make_config, tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(threads, "IdleCores", lambda: _quiet)  # as if the others were idle
    # x W with B = 32, D = 64, H = 32768: 4 B D H = 2.7e8 FLOPs per round ≥ TUNE_THRESHOLD
    model, data = _Linear(64, 32768), _data(64)
    assert round_flops(model, data, 32, {}) >= TUNE_THRESHOLD
    seen: list[int] = []
    torch.set_num_threads(1)
    config = make_config(steps=30, eval_every=1, standardize="none")
    result = fit(config, tmp_path, progress=False,
                 model=model, dataset=data,
                 callbacks=[lambda state: seen.append(torch.get_num_threads())])  # fmt: skip
    cores = available_cores()
    # settle + 10 rounds on 1 thread, then every core is tried (settling round first)
    assert seen[:11] == [1] * 11 and seen[11] == cores and set(seen) <= {1, cores}
    assert result.threads in (1, cores) and torch.get_num_threads() == 1


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
