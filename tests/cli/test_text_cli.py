"""``probgen sample`` on a text run: prompts, filters, printed and written text, clear errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import Result

from tests.cli.conftest import invoke

Cli = Callable[..., Result]

TEXT = "ROMEO: but soft, what light through yonder window breaks?\nJULIET: ay me.\n" * 20


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-layer character transformer trained for 20 steps on a small corpus."""
    root = tmp_path_factory.mktemp("text")
    (root / "corpus.txt").write_text(TEXT)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        result = invoke(
            "train", "--model", "transformer", "--data", "text", "--steps", "20",
            "--set", f"data.options.path={root / 'corpus.txt'}", "--set", "data.options.context=16",
            "--set", "model.options.n_layer=1", "--set", "model.options.n_head=2",
            "--set", "model.options.n_embd=16", "--no-progress", "--n-samples", "20",
            "--name", "gpt", "--out", root / "runs",
        )  # fmt: skip
    finally:
        torch.set_default_dtype(old)
    assert result.exit_code == 0, result.output
    return root / "runs" / "gpt"


def test_sample_prints_the_prompt_and_its_continuation(cli: Cli, text_run: Path) -> None:
    result = cli("sample", text_run, "--prompt", "ROMEO:", "--max-new-tokens", "40")
    assert result.exit_code == 0, result.output
    text = result.stdout.removesuffix("\n")
    assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + 40
    assert set(text) <= set(TEXT)
    again = cli("sample", text_run, "--prompt", "ROMEO:", "--max-new-tokens", "40")
    assert again.stdout == result.stdout  # seeded
    other = cli("sample", text_run, "--prompt", "ROMEO:", "--max-new-tokens", "40", "--seed", "1")
    assert other.stdout != result.stdout


def test_sample_writes_text_files_and_greedy_ignores_the_seed(
    cli: Cli, text_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "romeo.txt"
    args = ("sample", text_run, "--prompt", "JULIET", "--max-new-tokens", "30", "-n", "3")
    result = cli(*args, "--temperature", "0", "--out", out)
    assert result.exit_code == 0, result.output
    assert "wrote 3 text sample(s)" in result.stdout
    texts = out.read_text().removesuffix("\n").split("\n\n")
    assert len(texts) == 3 and len(set(texts)) == 1  # greedy: one text, whatever the draws
    printed = cli(*args, "--temperature", "0", "--seed", "7")
    assert printed.stdout.removesuffix("\n").split("\n\n") == texts
    filtered = cli(*args, "--top-k", "3", "--top-p", "0.9", "--temperature", "0.8")
    assert filtered.exit_code == 0, filtered.output


def test_text_runs_still_write_token_arrays(cli: Cli, text_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "ids.npy"
    result = cli("sample", text_run, "-n", "5", "--out", out, "--top-k", "2")
    assert result.exit_code == 0, result.output
    ids = np.load(out)
    assert ids.shape == (5, 16) and ids.dtype == np.int64


def test_evaluate_reports_bits_per_character(cli: Cli, text_run: Path) -> None:
    metrics = json.loads((text_run / "metrics.json").read_text())["test"]
    assert metrics["bits_per_char"]["kind"] == "exact"
    assert metrics["bits_per_char"]["value"] == pytest.approx(metrics["bpd"]["value"], rel=1e-12)
    assert {"distinct_2", "ngram_js_2"} <= metrics.keys()
    assert metrics["network_evaluations"]["value"] == 16  # one forward pass per token


def test_text_metrics_by_name(cli: Cli, text_run: Path) -> None:
    """--metrics takes the text metrics' registry names; bits/char is bits/dim (D = T)."""
    args = ("evaluate", text_run, "--split", "validation", "--metrics")
    result = cli(*args, "bits_per_char,bpd,distinct_2,ngram_js_1")
    assert result.exit_code == 0, result.output
    metrics = json.loads((text_run / "metrics.json").read_text())["validation"]
    assert list(metrics)[:4] == ["bits_per_char", "bpd", "distinct_2", "ngram_js_1"]
    assert not {"nats_per_char", "distinct_1", "ngram_js_2"} & metrics.keys()
    assert metrics["bits_per_char"]["value"] == pytest.approx(metrics["bpd"]["value"], rel=1e-12)
    assert metrics["bits_per_char"]["unit"] == "bits/char"
    assert 0 < metrics["distinct_2"]["value"] <= 1
    assert 0 <= metrics["ngram_js_1"]["value"] <= np.log(2)


def test_a_text_metric_on_other_data_is_a_one_line_error(cli: Cli, trained_run: Path) -> None:
    result = cli("evaluate", trained_run, "--metrics", "nll,nats_per_char")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert (
        "'nats_per_char' is defined on text data, not on continuous data (ToyDataset)"
        in result.stderr
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--prompt", "ROMEO: é"), "--prompt 'ROMEO: é': character 'é' (position 7) is not in"),
        (("--max-new-tokens", "-1"), "--max-new-tokens: expected >= 0, got -1"),
        (("--temperature", "-1"), "temperature: expected >= 0, got -1"),
        (("--top-p", "1.5"), r"top_p: expected in (0, 1] or None, got 1.5"),
        (("--guidance", "2"), "--guidance and --refine do not apply to text runs"),
    ],
)
def test_bad_text_options_are_one_line_errors(
    cli: Cli, text_run: Path, args: tuple[str, ...], message: str
) -> None:
    result = cli("sample", text_run, *args)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr


def test_text_options_on_other_runs_are_refused(cli: Cli, trained_run: Path) -> None:
    result = cli("sample", trained_run, "--prompt", "hi")
    assert (
        result.exit_code == 2
        and "--prompt and --max-new-tokens apply to text runs" in result.stderr
    )
    result = cli("sample", trained_run, "--temperature", "0.5")
    assert result.exit_code == 2 and "--temperature applies to autoregressive runs" in result.stderr
