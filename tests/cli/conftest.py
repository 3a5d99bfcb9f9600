"""One tiny trained run shared by the CLI tests, and a helper to invoke the command."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner, Result

from probgen.cli import app

TRAIN_FLAGS = [
    "--model", "gaussian", "--data", "8gaussians", "--steps", "300", "--lr", "0.05",
    "--batch-size", "256", "--set", "data.options.n_test=4000", "--set", "train.lr_schedule=cosine",
    "--no-progress",
    "--n-samples", "500",
]  # fmt: skip
"""A run that reaches the Gaussian MLE of 8gaussians to ~1e-4 nats, in about a second."""


def invoke(*args: str | Path) -> Result:
    """Run ``probgen *args`` in-process and return the result (stdout, stderr, exit code)."""
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def cli() -> Callable[..., Result]:
    """``cli("train", ...)`` runs the command in-process (see ``invoke``)."""
    return invoke


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runs/tiny trained once per session; tests copy it before changing anything.

    Trained under the tests' float64 default dtype (this fixture is set up
    before the per-test one), so rebuilding its data set in a test gives the
    same examples.
    """
    out = tmp_path_factory.mktemp("runs")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        result = invoke("train", *TRAIN_FLAGS, "--name", "tiny", "--out", out)
    finally:
        torch.set_default_dtype(old)
    assert result.exit_code == 0, result.output
    return out / "tiny"


@pytest.fixture
def run_copy(trained_run: Path, tmp_path: Path) -> Path:
    """A private copy of the trained run, free to modify or break."""
    return Path(shutil.copytree(trained_run, tmp_path / "runs" / "tiny"))
