"""End to end: ``probgen compare`` on a tiny config, its report.html rendered by headless Chromium.

Chromium loads a copy of the report with one added script that, on the
``load`` event, records on ``<body>`` how many images decoded
(``img.complete && img.naturalWidth > 0``) and how many rows the results
table has; ``--dump-dom`` prints the DOM after that script ran. A second
run takes a screenshot. ``.ci/run`` installs the Debian packages
``chromium`` and ``chromium-driver`` when they are missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from probgen.cli import app

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
PROBE = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const ok = images.filter((img) => img.complete && img.naturalWidth > 0);
  document.body.dataset.images = images.length;
  document.body.dataset.loaded = ok.length;
  const rows = [...document.querySelectorAll("#results tbody tr")];
  document.body.dataset.models = rows.map((tr) => tr.dataset.model).join(",");
  document.body.dataset.widths = ok.map((img) => img.naturalWidth).join(",");
});
</script>"""

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium is not installed (apt-get install chromium chromium-driver; "
    ".ci/run does this)",
)


class _Body(HTMLParser):
    """The attributes of <body> and the src of every <img> in a document."""

    def __init__(self) -> None:
        super().__init__()
        self.body: dict[str, str | None] = {}
        self.sources: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self.body = dict(attrs)
        elif tag == "img":
            self.sources.append(dict(attrs).get("src"))


def _chromium(tmp_path: Path, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile-{name}"  # a fresh profile per run
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_report_renders_in_chromium_with_every_image_and_one_row_per_model(
    tmp_path: Path, tiny_yaml: Callable[..., Path]
) -> None:
    models = ["gaussian", "maf", "gan"]
    result = CliRunner().invoke(
        app, ["compare", str(tiny_yaml(models)), "--out", str(tmp_path), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "reports:" in result.output
    results = json.loads((tmp_path / "compare" / "results.json").read_text())
    assert [m["label"] for m in results["models"]] == models
    report = tmp_path / "compare" / "report.html"
    text = report.read_text()
    assert "<script" not in text and "<link" not in text  # nothing to fetch: self-contained
    probed = tmp_path / "probed.html"
    probed.write_text(text.replace("</body>", PROBE + "</body>"))

    dom = _chromium(tmp_path, "dom", "--dump-dom", probed.as_uri()).stdout
    page = _Body()
    page.feed(dom)
    # the data and its true density, then per model: samples, training curves, and a
    # density heatmap for the two models that have a density (not the GAN)
    expected_images = 2 + 2 * len(models) + 2
    assert page.body.get("data-images") == str(expected_images) == str(len(page.sources))
    assert page.body.get("data-loaded") == str(expected_images)
    assert page.body.get("data-models") == ",".join(models)
    assert all(s and s.startswith("data:image/png;base64,") for s in page.sources)
    assert all(int(w) > 100 for w in (page.body.get("data-widths") or "").split(","))

    shot = tmp_path / "report.png"
    _chromium(tmp_path, "shot", f"--screenshot={shot}", "--window-size=1400,1800", report.as_uri())
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
