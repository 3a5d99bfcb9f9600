"""The probgen commands on a tiny run: list, train, sample, evaluate, and their outputs."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import Result

from probgen.cli import listing
from probgen.evaluate.likelihood import nll
from probgen.registry import DATASETS, METRICS, MODELS, SAMPLERS, Registry
from probgen.train import load_config, load_run

Cli = Callable[..., Result]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_list_shows_every_registry(cli: Cli) -> None:
    result = cli("list")
    assert result.exit_code == 0, result.output
    for title, registry in [("models", MODELS), ("data", DATASETS), ("metrics", METRICS)]:
        assert title in result.stdout
        for name in registry.names():
            assert name in result.stdout, name
    assert "samplers" in result.stdout
    for name in SAMPLERS.names():
        assert name in result.stdout


def test_list_one_kind_shows_docstrings(cli: Cli) -> None:
    result = cli("list", "metrics")
    assert result.exit_code == 0, result.output
    assert "Mean negative log-likelihood" in result.stdout  # nll's first docstring line
    assert "realnvp" not in result.stdout and "8gaussians" not in result.stdout


def test_list_shows_a_module_that_fails_to_import(cli: Cli, monkeypatch) -> None:
    broken = Registry(
        "model",
        {"broken": "probgen.no_such_module:Thing", "gaussian": MODELS.target("gaussian")},
    )
    monkeypatch.setitem(listing.KINDS, "models", broken)
    result = cli("list", "models")
    assert result.exit_code == 0, result.output
    assert "broken" in result.stdout and "unavailable" in result.stdout
    assert "ModuleNotFoundError" in result.stdout
    assert "gaussian" in result.stdout


def test_train_writes_every_output(trained_run: Path) -> None:
    """config.yaml, checkpoint/, history.json (from fit), metrics.json and samples.png."""
    config = load_config(trained_run / "config.yaml")
    assert (config.model.name, config.data.name, config.train.steps) == (
        "gaussian",
        "8gaussians",
        300,
    )
    assert config.train.lr == 0.05 and config.data.options == {"n_test": 4000}
    assert (trained_run / "checkpoint" / "model.safetensors").is_file()
    history = json.loads((trained_run / "history.json").read_text())
    assert history[-1]["step"] == 300
    test = _metrics(trained_run)["test"]
    assert set(test) == {
        "nll", "kl_data_model", "kl_model_data", "kl_model_data_smoothed", "mmd",
        "energy_distance", "sliced_wasserstein", "fid", "kid", "precision", "recall", "density",
        "coverage", "modes", "high_quality", "reverse_kl", "sampling_seconds",
        "network_evaluations", "held_out_examples",
    }  # fmt: skip
    # a Gaussian has no latent variables: the IWAE bound is left out, and the file says why
    assert set(_metrics(trained_run)["skipped"]["test"]) == {"nll_iwae"}
    assert test["nll"]["kind"] == "exact" and test["nll"]["unit"] == "nats"
    assert test["sampling_seconds"]["unit"] == "s"
    assert test["mmd"]["stderr"] is None
    assert (trained_run / "samples.png").read_bytes()[:8] == PNG_MAGIC
    # the data map, fitted on the training draws, is listed in the config and the metrics
    model, _, _ = load_run(trained_run)
    data_map = _metrics(trained_run)["data_map"]
    assert data_map == config.train.standardize and data_map["method"] == "mean_std"
    assert data_map["scale"] == model.scale.tolist() and data_map["shift"] == model.shift.tolist()


def test_reported_nll_is_the_gaussian_fit_cross_entropy(trained_run: Path) -> None:
    """metrics.json's NLL vs the closed form, E_p[-log N(x; μ_θ, Σ_θ)] for the trained Gaussian.

    For any p with mean μ* and covariance Σ*, E_p[-log N(x; μ, Σ)] =
    ½ log det 2πΣ + ½ tr(Σ⁻¹Σ*) + ½ (μ* - μ)ᵀΣ⁻¹(μ* - μ), minimised by the MLE
    (μ*, Σ*) at ½ log det 2πeΣ*. Here p is the exact 8-Gaussians mixture
    (Σ* = (r²/2 + σ²) I, computed from its components).
    """
    model, _, dataset = load_run(trained_run)
    truth = dataset.truth
    w, mu_k, cov_k = truth.weights.double(), truth.means.double(), truth.covariances.double()
    mean = w @ mu_k
    second = torch.einsum("k,kij->ij", w, cov_k + mu_k[:, :, None] * mu_k[:, None, :])
    cov = second - torch.outer(mean, mean)
    # the Gaussian of z = (x - m)/s seen in x: N(m + s ⊙ μ_z, diag(s) Σ_z diag(s))
    s = model.scale.double()
    mu = model.from_inner(model.model.loc.detach()).double()
    sigma = s[:, None] * model.model.covariance.detach().double() * s[None, :]
    diff = mean - mu
    cross_entropy = (
        0.5 * torch.logdet(2 * math.pi * sigma)
        + 0.5 * torch.trace(torch.linalg.solve(sigma, cov))
        + 0.5 * diff @ torch.linalg.solve(sigma, diff)
    ).item()
    fit_entropy = 0.5 * torch.logdet(2 * math.pi * math.e * cov).item()
    test = _metrics(trained_run)["test"]
    reported = test["nll"]
    assert abs(reported["value"] - cross_entropy) < 4 * reported["stderr"]
    assert 0 <= cross_entropy - fit_entropy < 1e-3  # 300 Adam steps, cosine lr: at the MLE
    # KL(p_data || p_θ) = E_p[-log p_θ] - H[p]
    entropy = truth.entropy(n=200_000, generator=torch.Generator().manual_seed(1))
    kl = test["kl_data_model"]
    tolerance = 4.5 * math.hypot(kl["stderr"], entropy.stderr)
    assert abs(kl["value"] - (cross_entropy - entropy.value)) < tolerance


def test_train_from_yaml_with_flags_and_set_overriding(cli: Cli, tmp_path: Path) -> None:
    config = {
        "name": "from_yaml",
        "model": {"name": "gaussian"},
        "data": {"name": "8gaussians", "options": {"n_test": 500}},
        "train": {"steps": 1000, "lr": 0.01, "log_every": 100},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    result = cli(
        "train", path, "--steps", "20", "--set", "train.log_every=5", "--out", tmp_path / "runs",
        "--no-progress", "--n-samples", "200",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "from_yaml"
    written = load_config(run / "config.yaml")
    assert (written.train.steps, written.train.lr, written.train.log_every) == (20, 0.01, 5)
    assert [h["step"] for h in json.loads((run / "history.json").read_text())] == [5, 10, 15, 20]
    assert str(run) in result.stdout.replace("\n", "")


def test_resume_continues_and_overwrite_replaces(cli: Cli, run_copy: Path) -> None:
    out = run_copy.parent
    result = cli("train", "--name", "tiny", "--out", out, "--resume", "--steps", "320",
                 "--no-progress", "--n-samples", "200")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((run_copy / "history.json").read_text())[-1]["step"] == 320
    assert load_config(run_copy / "config.yaml").train.lr == 0.05  # the run's own config
    result = cli("train", "--model", "gaussian", "--data", "8gaussians", "--steps", "10",
                 "--name", "tiny", "--out", out, "--overwrite", "--no-progress",
                 "--set", "data.options.n_test=300", "--n-samples", "200")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((run_copy / "history.json").read_text())[-1]["step"] == 10


@pytest.mark.parametrize("suffix", [".npy", ".safetensors", ".png"])
def test_sample_writes_arrays_and_pictures(cli: Cli, trained_run: Path, tmp_path: Path,
                                           suffix: str) -> None:  # fmt: skip
    out = tmp_path / f"draws{suffix}"
    result = cli("sample", trained_run, "-n", "7", "--out", out, "--seed", "3")
    assert result.exit_code == 0, result.output
    if suffix == ".npy":
        assert np.load(out).shape == (7, 2)
    elif suffix == ".safetensors":
        assert load_file(out)["samples"].shape == (7, 2)
    else:
        assert out.read_bytes()[:8] == PNG_MAGIC


def test_sample_is_seeded_and_defaults_to_npy_in_the_run(cli: Cli, run_copy: Path) -> None:
    first = cli("sample", run_copy, "-n", "5", "--seed", "1")
    assert first.exit_code == 0, first.output
    a = np.load(run_copy / "samples.npy")
    cli("sample", run_copy, "-n", "5", "--seed", "1")
    np.testing.assert_array_equal(np.load(run_copy / "samples.npy"), a)
    cli("sample", run_copy, "-n", "5", "--seed", "2")
    assert not np.array_equal(np.load(run_copy / "samples.npy"), a)


def test_evaluate_reproduces_the_training_metrics(cli: Cli, run_copy: Path) -> None:
    before = _metrics(run_copy)["test"]
    result = cli("evaluate", run_copy, "--n-samples", "500", "--seed", "0")
    assert result.exit_code == 0, result.output
    assert "nll" in result.stdout and "energy_distance" in result.stdout
    after = _metrics(run_copy)["test"]
    for name in before.keys() - {"sampling_seconds"}:  # a wall time
        assert after[name]["value"] == pytest.approx(before[name]["value"], rel=1e-9), name


def test_evaluate_scores_only_the_first_max_examples(cli: Cli, run_copy: Path) -> None:
    result = cli("evaluate", run_copy, "--metrics", "nll", "--max-examples", "50")
    assert result.exit_code == 0, result.output
    assert "test split (50 examples)" in result.stdout
    scored = _metrics(run_copy)["test"]
    model, _, dataset = load_run(run_copy)
    assert scored["held_out_examples"]["value"] == 50
    assert scored["nll"]["value"] == pytest.approx(
        nll(model, dataset.split("test")[:50]).value, rel=1e-12
    )
    assert cli("evaluate", run_copy, "--max-examples", "0").exit_code == 2


def test_evaluate_other_split_and_chosen_metrics(cli: Cli, run_copy: Path) -> None:
    result = cli(
        "evaluate", run_copy, "--split", "validation", "--metrics", "nll,mmd", "--n-samples", "300"
    )
    assert result.exit_code == 0, result.output
    assert "validation" in result.stdout
    metrics = _metrics(run_copy)
    assert set(metrics) == {"test", "validation", "skipped", "notes", "data_map"}
    assert set(metrics["skipped"]) == {"test"}  # chosen metrics: nothing left out
    assert set(metrics["notes"]) == {"test"}  # the features of the test split's fid and kid
    assert set(metrics["validation"]) == {
        "nll", "kl_data_model", "mmd", "sampling_seconds", "network_evaluations",
        "held_out_examples",
    }  # fmt: skip
    model, _, dataset = load_run(run_copy)
    direct = nll(model, dataset.split("validation"))
    assert metrics["validation"]["nll"]["value"] == pytest.approx(direct.value, rel=1e-12)
    assert metrics["validation"]["nll"]["stderr"] == pytest.approx(direct.stderr, rel=1e-9)
