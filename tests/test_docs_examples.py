"""Every Python code block of README.md and docs/*.md runs, so no example rots.

One test per block (id ``file:line``), run as a user would: in a fresh
folder, in float32, with ``PROBGEN_DATA`` pointing at the shared data. An
HTML comment on the line before a block's fence changes that:

    <!-- not-run: why -->        the block is illustrative (an interface, a sketch); kept few
    <!-- needs: name, name -->   run only once those capabilities exist (``REQUIREMENTS``),
                                 skipped with the name until then
    <!-- run -->                 also run a ``sh`` block, in bash with ``set -eu`` (CLI steps)
    <!-- id: name -->            name the block, for ``after``
    <!-- after: name, name -->   run those blocks (and theirs) first, in the same folder and
                                 namespace (a walkthrough's later steps)

Markers combine with ``;``: ``<!-- run; after: csv; needs: data-files -->``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

import probgen
from probgen.registry import DATASETS

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHARED_DATA = Path(os.environ.get("PROBGEN_DATA", ROOT.parent / "shared" / "data"))

REQUIREMENTS: dict[str, Callable[[], bool]] = {
    "data-files": lambda: "file" in DATASETS.names(),  # `--data PATH`, `data: {name: file}`
    "pretrained": lambda: hasattr(probgen, "from_pretrained"),  # save/from_pretrained
    "shared-data": lambda: (SHARED_DATA / "mnist").is_dir(),  # ../shared/data
}
"""Capabilities a block may need, each with its check."""

_FENCE = re.compile(r"^```(\w*)(.*)$")
_MARKER = re.compile(r"^<!--\s*(.*?)\s*-->$")
_RUN = ("python", "sh")


@dataclass
class Block:
    """A fenced code block: where it is, its language, its code and its markers."""

    path: Path
    line: int
    language: str
    code: str
    markers: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT).as_posix()}:{self.line}"

    @property
    def runs(self) -> bool:
        if "not-run" in self.markers:
            return False
        return self.language == "python" or (self.language == "sh" and "run" in self.markers)


def _markers(comment: str) -> dict[str, str]:
    out = {}
    for part in comment.split(";"):
        key, _, value = part.partition(":")
        out[key.strip()] = value.strip()
    return out


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, with the markers of the line before each."""
    lines = path.read_text().splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        start = i
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            i += 1
        before = lines[start - 1].strip() if start else ""
        comment = _MARKER.match(before)
        language = fence.group(1)
        if fence.group(2).strip():  # ```python title="…": shown, never run
            language += " (illustrative)"
        markers = _markers(comment.group(1)) if comment else {}
        code = "\n".join(lines[start + 1 : i])
        out.append(Block(path, start + 1, language, code, markers))
        i += 1
    return out


def _runnable() -> list[Block]:
    return [b for path in DOCS for b in blocks(path) if b.runs]


def _names(block: Block, key: str) -> list[str]:
    return [n.strip() for n in block.markers.get(key, "").split(",") if n.strip()]


def _chain(block: Block) -> list[Block]:
    """The blocks to run for ``block``: those it comes ``after`` (recursively), then itself."""
    named = {b.markers["id"]: b for b in blocks(block.path) if "id" in b.markers}
    chain: list[Block] = []
    for name in _names(block, "after"):
        if name not in named:
            raise AssertionError(f"{block.id}: 'after: {name}' names no block of the file")
        chain += [b for b in _chain(named[name]) if b not in chain]
    return [*chain, block]


def _run(block: Block, namespace: dict[str, Any]) -> None:
    if block.language == "python":
        exec(compile(block.code, block.id, "exec"), namespace)
        return
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.code],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"{block.id} failed:\n{result.stdout}\n{result.stderr}"


def test_every_python_block_is_collected_and_illustrative_ones_are_few() -> None:
    every = [b for path in DOCS for b in blocks(path)]
    python = [b for b in every if b.language.startswith("python")]
    shown_only = [b for b in python if not b.runs]
    assert len(python) >= 20  # the parser finds the blocks (a broken regex finds none)
    assert len(shown_only) <= 3, [b.id for b in shown_only]
    assert all(b.markers.get("not-run") for b in shown_only if "not-run" in b.markers)  # a reason
    unknown = {name for b in every for name in _names(b, "needs") if name not in REQUIREMENTS}
    assert not unknown, f"unknown requirements {unknown}; known: {sorted(REQUIREMENTS)}"


@pytest.mark.parametrize("block", _runnable(), ids=lambda b: b.id)
def test_block_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chain = _chain(block)
    needs = {name for b in chain for name in _names(b, "needs")}
    missing = sorted(n for n in needs if not REQUIREMENTS[n]())
    if missing:
        pytest.skip(f"needs {', '.join(missing)}, not in this checkout yet")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROBGEN_DATA", str(SHARED_DATA))
    torch.set_default_dtype(torch.float32)  # as a user runs it (the autouse fixture restores)
    threads = torch.get_num_threads()
    namespace: dict[str, Any] = {"__name__": "__main__"}
    try:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            for b in chain:
                _run(b, namespace)
    finally:
        torch.set_num_threads(threads)
