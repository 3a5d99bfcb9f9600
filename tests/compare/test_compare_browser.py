"""End to end: a tiny comparison's report.html rendered by headless Chromium.

Chromium loads a copy of the report with one added script that, on the
``load`` event, records on ``<body>`` how many images decoded
(``img.complete && img.naturalWidth > 0``) and how many rows the results
table has; ``--dump-dom`` prints the DOM after that script ran. A second
run takes a screenshot. ``.ci/run`` installs the Debian packages
``chromium`` and ``chromium-driver`` when they are missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest

from probgen.compare import CompareConfig
from probgen.compare.report import write_reports
from probgen.compare.run import Evaluator, run_comparison

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
  document.body.dataset.rows = document.querySelectorAll("#results tbody tr").length;
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
    tmp_path: Path, tiny: Callable[..., CompareConfig], evaluator: Evaluator
) -> None:
    config = tiny(["gaussian", "maf", "gan"], budget=0.3)
    comparison = run_comparison(config, tmp_path / "cmp", evaluator=evaluator, progress=False)
    report = write_reports(comparison)["html"]
    text = report.read_text()
    assert "<script" not in text and "<link" not in text  # nothing to fetch: self-contained
    probed = tmp_path / "probed.html"
    probed.write_text(text.replace("</body>", PROBE + "</body>"))

    dom = _chromium(tmp_path, "dom", "--dump-dom", probed.as_uri()).stdout
    page = _Body()
    page.feed(dom)
    expected_images = len(comparison.data_figures) + sum(len(r.figures) for r in comparison.results)
    assert page.body.get("data-images") == str(expected_images) == str(len(page.sources))
    assert page.body.get("data-loaded") == str(expected_images)
    assert page.body.get("data-rows") == str(len(config.models)) == "3"
    assert all(s and s.startswith("data:image/png;base64,") for s in page.sources)
    assert all(int(w) > 100 for w in (page.body.get("data-widths") or "").split(","))
    rows = re.findall(r'<tr data-model="([^"]+)"', dom)
    assert rows == ["gaussian", "maf", "gan"]

    shot = tmp_path / "report.png"
    _chromium(tmp_path, "shot", f"--screenshot={shot}", "--window-size=1400,1800", report.as_uri())
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
