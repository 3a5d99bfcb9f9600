"""Shared pieces of the engine tests: a small in-memory data set and config builder."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from probgen.core import DataSpec
from probgen.data.base import ArrayDataset
from probgen.train import ComponentConfig, RunConfig, TrainConfig


@pytest.fixture
def gaussian_data() -> ArrayDataset:
    """400 correlated 2-D points (train) and 100 each for validation and test."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(600, 2, generator=g) @ torch.tensor([[1.5, 0.0], [0.8, 0.4]])
    return ArrayDataset(x[:400], x[400:500], x[500:], DataSpec((2,)))


def _make_config(**train: Any) -> RunConfig:
    settings: dict[str, Any] = {"steps": 20, "batch_size": 32, "log_every": 1, "device": "cpu"}
    settings["refit"] = False  # the loop itself; the refit has tests/train/test_refit.py
    return RunConfig(
        model=ComponentConfig("gaussian"),
        data=ComponentConfig("8gaussians", {"n_train": 256, "n_validation": 128, "n_test": 128}),
        train=TrainConfig(**{**settings, **train}),
    )


@pytest.fixture
def make_config() -> Callable[..., RunConfig]:
    """Builds a CPU run of the registered Gaussian model; keywords override TrainConfig fields."""
    return _make_config
