"""``probgen export RUN DIR`` writes a pretrained folder; ``probgen sample DIR`` reads one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import probgen
from probgen.train import load_run


def test_export_writes_the_runs_model_and_card(cli, trained_run: Path, tmp_path: Path) -> None:
    result = cli("export", trained_run, tmp_path / "shared")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    loaded = probgen.from_pretrained(tmp_path / "shared")
    reference, _, _ = load_run(trained_run)
    assert all(
        torch.equal(a, b)
        for a, b in zip(loaded.state_dict().values(), reference.state_dict().values(), strict=True)
    )
    card = (tmp_path / "shared" / "README.md").read_text()
    assert "# gaussian on 8gaussians" in card and "## Metrics (test split)" in card
    assert "| nll |" in card and "probgen train config.yaml" in card

    again = cli("export", trained_run, tmp_path / "shared")
    assert again.exit_code == 2 and "--overwrite" in again.stderr
    assert cli("export", trained_run, tmp_path / "shared", "--overwrite").exit_code == 0


def test_sample_reads_a_pretrained_folder_as_it_reads_the_run(
    cli, trained_run: Path, tmp_path: Path
) -> None:
    assert cli("export", trained_run, tmp_path / "shared").exit_code == 0
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    assert cli("sample", trained_run, "-n", "7", "--out", a).exit_code == 0
    result = cli("sample", tmp_path / "shared", "-n", "7", "--out", b)
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.load(a), np.load(b))
    assert cli("sample", tmp_path / "shared", "-n", "7", "--out", tmp_path / "x.png").exit_code == 0
    refine = cli("sample", tmp_path / "shared", "--refine", "mh")
    assert refine.exit_code == 2 and "pass a run folder" in refine.stderr


def test_export_of_a_folder_that_is_not_a_run_is_one_line(cli, tmp_path: Path) -> None:
    result = cli("export", tmp_path, tmp_path / "out")
    assert result.exit_code == 2 and "is not a run directory" in result.stderr
    assert not (tmp_path / "out").exists()
