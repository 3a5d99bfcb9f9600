"""Tiny comparisons for the tests: small splits, one-second budgets, a fast evaluator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from probgen.compare import CompareConfig, load_compare_config
from probgen.compare.run import Evaluator
from probgen.core import Estimate, GenerativeModel, Likelihood
from probgen.data.base import Dataset
from probgen.divergences import energy_distance
from probgen.evaluate.likelihood import nll

TINY_DATA = {"name": "8gaussians", "options": {"n_validation": 200, "n_test": 400}}
TINY_TRAIN = {"batch_size": 64, "eval_every": 20, "eval_examples": 100, "log_every": 5}
TINY_EVALUATION = {"n_samples": 300, "heatmap_resolution": 16}


def tiny_config(models: list[Any], budget: float = 0.5, **overrides: Any) -> CompareConfig:
    """The default comparison shrunk to ``models``, each trained ``budget`` seconds."""
    settings = {
        "data": TINY_DATA,
        "models": models,
        "total_time_budget": None,
        "time_budget": budget,
        "train": {**load_compare_config().source["train"], **TINY_TRAIN},
        "evaluation": TINY_EVALUATION,
        **overrides,
    }
    return load_compare_config(None, settings)


def fast_evaluator(
    model: GenerativeModel, dataset: Dataset, *, split: str, n_samples: int, seed: int
) -> dict[str, Estimate]:
    """NLL where the model has a likelihood, and the energy distance of its samples to the data."""
    x = dataset.split(split)
    out = {} if model.likelihood is Likelihood.NONE else {"nll": nll(model, x)}
    with torch.no_grad():
        samples = model.sample(n_samples, generator=torch.Generator().manual_seed(seed))
    out["energy_distance"] = Estimate(
        energy_distance(samples, x[:n_samples]).item(), kind="estimate"
    )
    return out


@pytest.fixture
def evaluator() -> Evaluator:
    """The fast evaluator (see ``fast_evaluator``)."""
    return fast_evaluator


@pytest.fixture
def tiny() -> Callable[..., CompareConfig]:
    """``tiny(models, budget, **overrides)``: see ``tiny_config``."""
    return tiny_config
