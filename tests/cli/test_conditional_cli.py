"""p(x | class) from the command line: train, sample given a class, evaluate the classifier."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from typer.testing import Result

Cli = Callable[..., Result]


def test_a_class_conditional_run_from_train_to_sample_and_evaluate(
    cli: Cli, tmp_path: Path
) -> None:
    flags = ["--model", "maf", "--data", "digits", "--steps", "20", "--batch-size", "64"]
    flags += ["--set", "data.options.conditional=true", "--set", "model.options.hidden=[32,32]"]
    result = cli("train", *flags, "--name", "c", "--out", tmp_path, "--no-progress")
    assert result.exit_code == 0, result.output
    run = tmp_path / "c"
    test = json.loads((run / "metrics.json").read_text())["test"]
    assert test["classifier_accuracy"]["kind"] == "bound"  # from dequantised bounds
    assert 0 <= test["classifier_accuracy"]["value"] <= 1
    assert test["nll"]["kind"] == "bound"
    result = cli("sample", run, "-n", "5", "--condition", "3", "--out", tmp_path / "three.npy")
    assert result.exit_code == 0, result.output
    x = np.load(tmp_path / "three.npy")
    assert x.shape == (5, 1, 8, 8) and set(np.unique(x)) <= set(range(17))
    result = cli("sample", run, "-n", "5", "--condition", "10")
    assert result.exit_code != 0 and "0..9" in result.output


def test_guided_samples_of_a_conditional_diffusion_run(cli: Cli, tmp_path: Path) -> None:
    flags = ["--model", "ddpm", "--data", "8gaussians", "--steps", "20", "--batch-size", "64"]
    flags += ["--set", "data.options.condition=component", "--set", "data.options.n_test=64"]
    flags += ["--set", "data.options.n_validation=64", "--n-samples", "64"]
    result = cli("train", *flags, "--name", "d", "--out", tmp_path, "--no-progress")
    assert result.exit_code == 0, result.output
    out = tmp_path / "guided.npy"
    result = cli("sample", tmp_path / "d", "-n", "8", "--condition", "2", "--guidance", "1.5",
                 "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "guidance w = 1.5" in result.output and np.load(out).shape == (8, 2)
    result = cli("sample", tmp_path / "d", "-n", "8", "--guidance", "1.5")
    assert result.exit_code != 0 and "--condition" in result.output
