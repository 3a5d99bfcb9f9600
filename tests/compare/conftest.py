"""Tiny comparisons for the tests: small splits, one-second budgets, a fast evaluator."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from probgen.compare import CompareConfig, load_compare_config
from probgen.compare.run import Evaluation, Evaluator
from probgen.core import Estimate, GenerativeModel, Likelihood
from probgen.data.base import Dataset
from probgen.divergences import energy_distance
from probgen.evaluate.likelihood import nll
from probgen.evaluate.modes import mode_metrics_for

TINY_DATA = {"name": "8gaussians", "options": {"n_validation": 200, "n_test": 400}}
TINY_TRAIN = {"batch_size": 64, "eval_every": 20, "eval_examples": 100, "log_every": 5}
TINY_EVALUATION = {"n_samples": 300, "heatmap_resolution": 16}


def tiny_settings(models: list[Any], budget: float = 0.5) -> dict[str, Any]:
    """The default comparison's YAML mapping shrunk to ``models``, each trained ``budget`` s."""
    default = load_compare_config().source
    return {
        **default,
        "data": TINY_DATA,
        "models": models,
        "workers": 1,
        "total_time_budget": None,
        "time_budget": budget,
        "train": {**default["train"], **TINY_TRAIN},
        "evaluation": TINY_EVALUATION,
    }


def tiny_config(models: list[Any], budget: float = 0.5) -> CompareConfig:
    """``tiny_settings`` loaded as a validated config."""
    return load_compare_config(None, tiny_settings(models, budget))


def fast_evaluator(
    model: GenerativeModel, dataset: Dataset, *, split: str, n_samples: int, seed: int
) -> Evaluation:
    """NLL where the model has a likelihood, the energy distance of samples and data, modes."""
    x = dataset.split(split)
    out: dict[str, Estimate | float] = {}
    if model.likelihood is not Likelihood.NONE:
        out["nll"] = nll(model, x)
    start = time.perf_counter()
    with torch.no_grad():
        samples = model.sample(n_samples, generator=torch.Generator().manual_seed(seed))
    out["sampling_seconds"] = time.perf_counter() - start
    out["energy_distance"] = Estimate(
        energy_distance(samples, x[:n_samples]).item(), kind="estimate"
    )
    out["modes"] = float(mode_metrics_for(dataset.truth, samples).modes_covered)
    return Evaluation(out, samples)


@pytest.fixture
def evaluator() -> Evaluator:
    """The fast evaluator (see ``fast_evaluator``)."""
    return fast_evaluator


@pytest.fixture
def tiny() -> Callable[..., CompareConfig]:
    """``tiny(models, budget)``: see ``tiny_config``."""
    return tiny_config


@pytest.fixture
def tiny_yaml(tmp_path: Path) -> Callable[..., Path]:
    """``tiny_yaml(models, budget)`` writes ``tiny_settings`` to a YAML file and returns it."""

    def write(models: list[Any], budget: float = 0.5) -> Path:
        path = tmp_path / "compare.yaml"
        path.write_text(yaml.safe_dump(tiny_settings(models, budget), sort_keys=False))
        return path

    return write
