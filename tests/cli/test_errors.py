"""Every user error ends with one line ``error: …`` on stderr, exit code 2, no traceback."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

Cli = Callable[..., Result]
TOY = ["--model", "gaussian", "--data", "8gaussians", "--steps", "5", "--no-progress"]


def assert_one_line_error(result: Result, *fragments: str) -> None:
    """Exit code 2; stderr is exactly one line ``error: …`` containing every fragment."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--model", "nope", "--data", "8gaussians"], ["'nope'", "gaussian", "realnvp"]),
        (["--model", "gaussian", "--data", "nope"], ["'nope'", "8gaussians", "digits"]),
        (["--data", "8gaussians"], ["model"]),
        ([*TOY, "--set", "model.options.hidden=64"], ["unknown option 'hidden'"]),
        ([*TOY, "--set", "data.options.sizes=3"], ["8gaussians", "'sizes'"]),
        ([*TOY, "--set", "train.stepz=3"], ["stepz", "steps"]),
        ([*TOY[:4], "--set", "train.steps=many"], ["train.steps", "int"]),
        ([*TOY, "--set", "train.optimizer=lbfgs"], ["lbfgs", "adam"]),
        ([*TOY, "--set", "novalue"], ["key=value"]),
        ([*TOY, "--device", "tpu"], ["tpu", "cpu"]),
        ([*TOY, "--modle", "gaussian"], ["--modle"]),
        ([*TOY, "--steps", "abc"], ["--steps"]),
        ([*TOY, "--steps", "-3"], ["train.steps", "≥ 0"]),
    ],
)
def test_train_rejects_bad_names_options_and_types(
    cli: Cli, tmp_path: Path, args: list[str], fragments: list[str]
) -> None:
    result = cli("train", *args, "--out", tmp_path)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("model: [gaussian\ndata: 8gaussians\n", ["not valid YAML"]),
        ("- gaussian\n- 8gaussians\n", ["mapping"]),
        ("model: {name: gaussian}\ndata: {name: 8gaussians}\ntrain: {steps: [1, 2]}\n",
         ["train.steps", "int"]),
        ("model: {name: gaussian}\ndata: {name: 8gaussians}\nlearning_rate: 3\n",
         ["learning_rate", "train"]),
    ],
)  # fmt: skip
def test_train_rejects_malformed_configs(
    cli: Cli, tmp_path: Path, text: str, fragments: list[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert_one_line_error(cli("train", path, "--out", tmp_path), *fragments)


def test_train_missing_config_file(cli: Cli, tmp_path: Path) -> None:
    assert_one_line_error(cli("train", tmp_path / "absent.yaml"), "absent.yaml")


def test_train_missing_data_files(cli: Cli, tmp_path: Path, monkeypatch) -> None:
    """MNIST not in $PROBGEN_DATA nor ./data: the message says where it looked."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROBGEN_DATA", str(tmp_path / "nowhere"))
    result = cli("train", "--model", "gaussian", "--data", "mnist", "--out", tmp_path / "runs",
                 "--no-progress")  # fmt: skip
    assert_one_line_error(result, "mnist", str(tmp_path / "nowhere"))


def test_train_refuses_to_clobber_or_resume_nothing(
    cli: Cli, run_copy: Path, tmp_path: Path
) -> None:
    out = run_copy.parent
    result = cli("train", *TOY, "--name", "tiny", "--out", out)
    assert_one_line_error(result, "already exists", "--resume", "--overwrite")
    result = cli("train", *TOY, "--name", "fresh", "--out", out, "--resume")
    assert_one_line_error(result, "fresh")
    result = cli("train", *TOY, "--name", "tiny", "--out", out, "--resume", "--overwrite")
    assert_one_line_error(result, "--resume", "--overwrite")
    assert (run_copy / "checkpoint" / "model.safetensors").is_file()


def _garbage(run: Path) -> None:
    (run / "checkpoint" / "model.safetensors").write_bytes(b"\x00garbage, not safetensors" * 9)


def _truncated(run: Path) -> None:
    path = run / "checkpoint" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:40])


def _no_checkpoint(run: Path) -> None:
    shutil.rmtree(run / "checkpoint")


def _bad_config(run: Path) -> None:
    (run / "config.yaml").write_text("model: {name: gaussian\n")


def _no_config(run: Path) -> None:
    (run / "config.yaml").unlink()


@pytest.mark.parametrize("command", ["sample", "evaluate"])
@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (_garbage, "model.safetensors"),
        (_truncated, "model.safetensors"),
        (_no_checkpoint, "checkpoint"),
        (_bad_config, "config.yaml"),
        (_no_config, "config.yaml"),
    ],
)
def test_broken_runs_give_one_line(
    cli: Cli, run_copy: Path, command: str, damage: Callable[[Path], None], fragment: str
) -> None:
    damage(run_copy)
    assert_one_line_error(cli(command, run_copy), fragment)


@pytest.mark.parametrize("command", ["sample", "evaluate"])
def test_missing_run_dir(cli: Cli, tmp_path: Path, command: str) -> None:
    assert_one_line_error(cli(command, tmp_path / "no_run"), "no_run")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["sample", "{run}", "--out", "x.txt"], [".txt", ".png", ".npy", ".safetensors"]),
        (["sample", "{run}", "-n", "0"], ["-n"]),
        (["sample", "{run}", "--condition", "3"], ["--condition", "unconditional"]),
        (["evaluate", "{run}", "--metrics", "nll,nope"], ["'nope'", "mmd", "bpd"]),
        (["evaluate", "{run}", "--split", "dev"], ["'dev'", "validation"]),
        (["list", "widgets"], ["'widgets'", "models", "samplers"]),
        (["frobnicate"], ["frobnicate"]),
    ],
)
def test_bad_arguments(cli: Cli, trained_run: Path, args: list[str], fragments: list[str]) -> None:
    args = [a.format(run=trained_run) for a in args]
    assert_one_line_error(cli(*args), *fragments)
