"""Tiny comparisons for the tests: small splits, one-second budgets, a fast evaluator."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from matplotlib.figure import Figure

from probgen.compare import CompareConfig, load_compare_config
from probgen.compare.run import Comparison, Evaluation, Evaluator, ModelResult
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


def _png(path: Path, seed: int, inches: float = 2.0) -> Path:
    """A small line plot saved as PNG at ``path`` (a stand-in for a report's figure)."""
    fig = Figure(figsize=(inches, inches))
    fig.add_subplot().plot(np.random.default_rng(seed).normal(size=10))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=50)
    return path


_FAMILIES = ("ddpm", "ebm", "fgan", "gan", "gaussian", "made", "maf", "nsf", "realnvp",
             "score_sde", "vae", "wgan", "wgan_gp")  # fmt: skip


def _wide_comparison(out: Path) -> Comparison:
    """The default comparison's shape, by hand: 13 rows with every column of the main table,
    a failed row, flagged rows, long reasons; figures are small stand-in PNGs."""
    rng = np.random.default_rng(0)
    figures = out / "figures"
    drawn = {
        size: _png(figures / f"stand-in-{size}.png", 0, size).read_bytes() for size in (2.2, 4.4, 5)
    }

    def copy(name: str, size: float) -> Path:
        (figures / name).write_bytes(drawn[size])
        return figures / name

    rows = []
    for family in _FAMILIES:
        gan = "gan" in family
        kind = "none" if gan else ("bound" if family in ("vae", "ddpm") else "exact")
        metrics: dict[str, Estimate | float] = {
            "kl_model_data_smoothed": Estimate(float(rng.uniform(0, 0.3)), 0.004, "estimate"),
            "mmd": Estimate(float(rng.uniform(0, 0.01)), 0.0004, "estimate"),
            "sliced_wasserstein": Estimate(float(rng.uniform(0, 0.2)), 0.003, "estimate"),
            "precision": Estimate(float(rng.uniform(0.5, 1)), 0.01, "estimate"),
            "recall": Estimate(float(rng.uniform(0.5, 1)), 0.01, "estimate"),
            "modes": float(rng.integers(4, 9)),
            "high_quality": Estimate(float(rng.uniform(0.5, 1)), math.nan, "estimate"),
            "sampling_seconds": float(rng.uniform(0.001, 3)),
            "network_evaluations": float(rng.choice([1, 2, 200, 1000])),
            "kid": Estimate(float(rng.uniform(0, 0.01)), 0.001, "estimate"),
        }
        skipped = {}
        if gan:
            reason = f"{family} has no density (likelihood none): no NLL, no KL(data‖model)"
            skipped = {"nll": reason, "kl_data_model": reason, "iwae_nll": reason}
        else:
            metrics["nll"] = Estimate(2.9 + float(rng.uniform(0, 0.5)), 0.02, kind)
            metrics["kl_data_model"] = Estimate(float(rng.uniform(0, 0.5)), 0.01, kind)
            metrics["kl_model_data"] = Estimate(float(rng.uniform(0, 0.5)), 0.01, kind)
        label = f"{family}-with-a-long-label" if family == "realnvp" else family
        row = ModelResult(
            label,
            family,
            kind,
            parameters=int(rng.integers(1000, 100_000)),
            train_seconds=float(rng.uniform(15, 30)),
            steps=int(rng.integers(1000, 11_000)),
            stop_reason="steps",
            metrics=metrics,
            n_samples=2000,
            n_modes=8,
            skipped=skipped,
            figures={
                "samples": copy(f"{label}_samples.png", 5),
                "tile": copy(f"{label}_tile.png", 2.2),
                "training": copy(f"{label}_training.png", 4.4),
            },
        )
        if family in ("ebm", "score_sde"):
            row.flags = [
                "unconverged: the loss fell 17% of its whole drop in the last tenth of "
                "training (flagged above 5%); train longer"
            ]
        rows.append(row)
    rows.append(
        ModelResult("broken", "maf", "exact", error="CriticDiverged: critic output 1e5 " * 6)
    )
    data = {
        "samples": copy("data_samples.png", 5),
        "tile": copy("data_tile.png", 2.2),
    }
    config = tiny_config(list(_FAMILIES))
    return Comparison(config, out, rows, data, 187.0)


@pytest.fixture
def wide_comparison(tmp_path: Path) -> Comparison:
    """The default comparison's shape by hand (see ``_wide_comparison``), in ``tmp_path``."""
    return _wide_comparison(tmp_path)
