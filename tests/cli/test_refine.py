"""`probgen sample --refine`: density-ratio-corrected samples of a GAN run, and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from probgen.cli import app
from probgen.cli.refine import refine_samples
from probgen.core import InvalidInput
from probgen.train import load_run


def _invoke(*args: str | Path):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GAN trained for 200 rounds on 8gaussians: its samples lie about the data's ring
    but still miss the modes.

    2 × 64 networks, a 2-D latent, batch 128, Adam (β₁ = 0.5, Radford et al. 2016) at
    3e-3 with cosine decay: about 2.5 CPU-s. Over seeds 0–7 its samples' mean true
    log-density is −9 to −19 nats (data: −2.8) and the corrected ones gain 3 to 16 nats;
    rejection takes 1e5–1.5e5 proposals for 400 samples on 7 of the 8 seeds. The
    defaults' 300 rounds leave the generator off the data (its samples' median distance
    to the origin up to 9, the data's 2.8), so the bound M and rejection's cost, e^M
    proposals per sample, are luck: sup d from −1.4 to 7.4 over seeds 0–3, 6.5e6
    proposals (95 s) for seed 0.
    """
    out = tmp_path_factory.mktemp("runs")
    result = _invoke(
        "train", "--model", "gan", "--data", "8gaussians", "--steps", "200",
        "--batch-size", "128", "--lr", "3e-3", "--set", "train.betas=[0.5,0.999]",
        "--set", "train.lr_schedule=cosine", "--set", "model.options.hidden=[64,64]",
        "--set", "model.options.latent_dim=2",
        "--no-progress", "--n-samples", "200", "--name", "gan", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out / "gan"


@pytest.mark.parametrize("refiner", ["mh", "rejection"])
def test_refined_samples_are_closer_to_the_data(gan_run: Path, refiner: str) -> None:
    """After calibrating the run's own critic, corrected samples have a higher mean log
    density under the true mixture than the generator's own samples."""
    model, _, dataset = load_run(gan_run)
    model.eval()
    refined = refine_samples(model, dataset, refiner, n=400, steps=300, seed=0)
    assert refined.samples.shape == (400, 2)
    assert 0.0 < refined.acceptance_rate <= 1.0
    with torch.no_grad():
        raw = model.sample(4000, generator=torch.Generator().manual_seed(1))
    truth = dataset.truth
    gain = truth.log_prob(refined.samples).mean() - truth.log_prob(raw).mean()
    assert gain > 1.0, gain  # about 3 nats here; a sign error in d would make it negative


def test_sample_refine_from_the_command_line(gan_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "refined.npy"
    result = _invoke(
        "sample", gan_run, "-n", "50", "--out", out, "--refine", "mh", "--calibration-steps", "20"
    )
    assert result.exit_code == 0, result.output
    assert "mh-corrected, acceptance" in result.output
    assert np.load(out).shape == (50, 2)


def test_refine_errors_name_the_problem(gan_run: Path, trained_run: Path) -> None:
    result = _invoke("sample", trained_run, "-n", "5", "--refine", "mh")
    assert result.exit_code != 0
    assert "GaussianModel is not an adversarial game" in result.output
    result = _invoke("sample", gan_run, "-n", "5", "--refine", "gibbs")
    assert result.exit_code != 0 and "unknown --refine 'gibbs'; choose one of: mh, rejection" in (
        result.output
    )
    result = _invoke("sample", gan_run, "-n", "5", "--refine", "mh", "--calibration-steps", "0")
    assert result.exit_code != 0 and "--calibration-steps must be positive" in result.output
    model, _, dataset = load_run(trained_run)
    with pytest.raises(InvalidInput, match="GaussianModel is not an adversarial game"):
        refine_samples(model, dataset, "mh", 5, 1, 0)
