"""``--data PATH`` in ``probgen train``, ``evaluate`` and ``compare``: your own file, end to end."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import Result

from probgen.cli.app import EXIT_USER_ERROR
from probgen.train import ComponentConfig, load_config


@pytest.fixture
def faithful(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Old Faithful copied as ./faithful.csv into a fresh working directory."""
    monkeypatch.chdir(tmp_path)
    return Path(shutil.copy(data_dir / "old_faithful" / "faithful.csv", tmp_path / "faithful.csv"))


def test_a_refit_that_keeps_the_start_says_so(cli: Callable[..., Result], faithful: Path) -> None:
    # the EM mixture start of a MAF is best on validation at step 0 here, so 0 steps refit
    flags = ["--model", "maf", "--set", "train.steps=50", "--no-progress", "--n-samples", "200"]
    result = cli("train", "--data", "faithful.csv", *flags)
    assert result.exit_code == 0, result.output
    assert "0 steps" in result.output
    assert "early stopping kept the model as built" in " ".join(result.output.split())


def test_train_and_evaluate_on_a_csv(cli: Callable[..., Result], faithful: Path) -> None:
    # over N(0, I): the small-data default (the EM mixture base) may keep its start (0 steps)
    flags = ["--model", "maf", "--set", "train.steps=50", "--set", "model.options.base=normal",
             "--no-progress", "--n-samples", "200"]  # fmt: skip
    result = cli("train", "--data", "faithful.csv", *flags)
    assert result.exit_code == 0, result.output
    assert "trained maf on faithful.csv: 50 steps" in result.output
    assert "(refit on train + validation for the 50 steps" in " ".join(result.output.split())
    run = Path("runs/run")
    # the resolved config names the file by its absolute path, so it reruns from anywhere
    config = load_config(run / "config.yaml")
    assert config.data == ComponentConfig("file", {"path": str(faithful.resolve())})

    other = Path("held_out.csv")
    shutil.copy(faithful, other)
    scored = cli("evaluate", run, "--data", other, "--metrics", "nll")
    assert scored.exit_code == 0, scored.output
    metrics = json.loads((run / "metrics.json").read_text())
    # the same rows (a copy of the file): the same test NLL, kept beside the run's own
    assert metrics["test:held_out.csv"]["nll"]["value"] == metrics["test"]["nll"]["value"]

    np.savetxt("one_column.csv", np.arange(10.0), header="v", comments="")
    wrong = cli("evaluate", run, "--data", "one_column.csv")
    assert wrong.exit_code == EXIT_USER_ERROR
    assert wrong.output.strip() == (
        "error: --data one_column.csv: the run was trained on events of shape (2,), "
        "continuous, no condition, this data has events of shape (1,), continuous, no condition"
    )


def test_a_bad_file_ends_train_with_one_line(
    cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("bad.csv").write_text("a,b\n1,2\n3,oops\n")
    result = cli("train", "--data", "bad.csv", "--model", "gaussian", "--no-progress")
    assert result.exit_code == EXIT_USER_ERROR
    lines = result.output.strip().splitlines()
    assert lines == [
        f"error: {tmp_path / 'bad.csv'}: column 'b' is not numeric: row 1 (line 3) holds 'oops'"
    ]
    missing = cli("train", "--data", "nothing_here", "--model", "gaussian")
    assert missing.exit_code == EXIT_USER_ERROR
    assert "error: --data 'nothing_here': no such file or folder" in missing.output


def test_compare_on_a_csv(cli: Callable[..., Result], faithful: Path) -> None:
    config = {
        "name": "mine",
        "models": ["gaussian"],
        "workers": 1,
        "train": {"steps": 20, "log_every": 10},
        "evaluation": {"n_samples": 100, "heatmap_resolution": 8},
    }
    Path("tiny.yaml").write_text(yaml.safe_dump(config))
    data = faithful.read_bytes()
    result = cli("compare", "tiny.yaml", "--data", "faithful.csv", "--no-progress")
    assert result.exit_code == 0, result.output
    assert faithful.read_bytes() == data
    results = json.loads(Path("runs/mine/results.json").read_text())
    assert results["config"]["data"] == {"name": "file", "options": {"path": str(faithful)}}
    assert [m["label"] for m in results["models"]] == ["gaussian"]
    rerun = load_config(Path("runs/mine/runs/gaussian/config.yaml"))
    assert rerun.data == ComponentConfig("file", {"path": str(faithful)})
    # the reports and the terminal table name the file, its full path in a tooltip / details
    markdown = Path("runs/mine/report.md").read_text()
    assert markdown.splitlines()[2].startswith("Data: faithful.csv; 1 model,")
    assert f"Data file: `{faithful}`" in markdown
    page = Path("runs/mine/report.html").read_text()
    assert f'<p>Data: <span class="file" title="{faithful}">faithful.csv</span>; 1 model,' in page
    assert f"<p>Data file: <code>{faithful}</code></p>" in page
    assert "Data: file" not in markdown + page
    assert "faithful.csv: 1 models, test split" in " ".join(result.output.split())


def test_compare_refuses_a_run_trained_on_another_file(tmp_path: Path) -> None:
    from probgen.compare import load_compare_config
    from probgen.train import ConfigError, RunConfig, save_config

    for name in ("a.csv", "b.csv"):
        (tmp_path / name).write_text("u,v\n" + "".join(f"{i},{i % 3}\n" for i in range(20)))
    trained_on = ComponentConfig("file", {"path": str(tmp_path / "a.csv")})
    save_config(
        RunConfig(ComponentConfig("gaussian"), trained_on), tmp_path / "run" / "config.yaml"
    )
    data = {"name": "file", "options": {"path": str(tmp_path / "b.csv")}}
    with pytest.raises(
        ConfigError, match=r"was trained on .*a\.csv, not on the comparison's .*b\.csv"
    ):
        load_compare_config(None, {"data": data, "models": [{"run": str(tmp_path / "run")}]})
    same = load_compare_config(
        None,
        {
            "data": {**data, "options": {"path": str(tmp_path / "a.csv")}},
            "models": [{"run": str(tmp_path / "run")}],
        },
    )
    assert same.models[0].label == "run"
