"""report.html rendered by headless Chromium: end to end, and at a laptop's and a phone's width.

Chromium loads a copy of the report with one added script that, on the
``load`` event, records on ``<body>`` what the test checks (how many images
decoded, ``img.complete && img.naturalWidth > 0``; the rows of a table; the
page's and each element's width); ``--dump-dom`` prints the DOM after that
script ran. A second run takes a screenshot, kept as a test artefact: in
``$PROBGEN_TEST_ARTEFACTS`` when set (CI can keep that folder), else in the
test's ``tmp_path``. ``.ci/run`` installs the Debian packages ``chromium``
and ``chromium-driver`` when they are missing.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from probgen.cli import app
from probgen.compare.report import write_reports
from probgen.compare.run import Comparison

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

OVERFLOW_PROBE = """<script>
window.addEventListener("load", () => {
  const width = document.documentElement.clientWidth;  // the viewport less any scroll bar
  const scrolls = (el) => ["auto", "scroll", "hidden"].includes(getComputedStyle(el).overflowX);
  const clipped = (el) => {
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      if (scrolls(p)) return true;
    }
    return false;
  };
  const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
    + (el.className && typeof el.className === "string" ? "." + el.className : "");
  const wide = [...document.body.querySelectorAll("*")].filter(
    (el) => el.getBoundingClientRect().right > width + 0.5 && !clipped(el));
  const board = document.querySelector("#leaderboard").parentElement;
  const b = parent.document.body.dataset;  // the frame's page (same origin: srcdoc)
  b.innerWidth = window.innerWidth;
  b.scrollWidth = document.documentElement.scrollWidth;
  b.clientWidth = width;
  b.overflowing = wide.slice(0, 5).map(name).join(" ");
  b.boardScrolls = board.scrollWidth > board.clientWidth;
  b.tiles = document.querySelectorAll(".tiles figure").length;
  b.tileWidths = [...new Set([...document.querySelectorAll(".tiles img")].map(
    (img) => Math.round(img.getBoundingClientRect().width)))].join(",");
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
    # the summary figure; the data's tile, its samples and true density; per model: a tile,
    # samples, training curves, and a density heatmap for the two models that have a density
    expected_images = 1 + 3 + 3 * len(models) + 2
    assert page.body.get("data-images") == str(expected_images) == str(len(page.sources))
    assert page.body.get("data-loaded") == str(expected_images)
    assert page.body.get("data-models") == ",".join(results["ranking"]["order"])
    assert sorted(results["ranking"]["order"]) == sorted(models)
    assert all(s and s.startswith("data:image/png;base64,") for s in page.sources)
    assert all(int(w) > 100 for w in (page.body.get("data-widths") or "").split(","))

    shot = tmp_path / "report.png"
    _chromium(tmp_path, "shot", f"--screenshot={shot}", "--window-size=1400,1800", report.as_uri())
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one


def _artefacts(tmp_path: Path) -> Path:
    """Where screenshots go: ``$PROBGEN_TEST_ARTEFACTS`` when set, else ``tmp_path``."""
    folder = Path(os.environ.get("PROBGEN_TEST_ARTEFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _framed(page: str, width: int, height: int, path: Path) -> Path:
    """``page`` in an ``<iframe srcdoc>`` of ``width`` × ``height`` CSS pixels at (0, 0) of a
    page written to ``path``: Chromium's windows are at least 500 px wide, a frame is as
    wide as asked, and a srcdoc frame shares its parent's origin (the probe writes there)."""
    frame = (
        f'<!DOCTYPE html><html><body style="margin:0"><iframe style="border:0; display:block; '
        f'width:{width}px; height:{height}px" srcdoc="{html.escape(page)}"></iframe></body></html>'
    )
    path.write_text(frame)
    return path


@pytest.mark.parametrize("width", [1280, 390])
def test_report_fits_a_laptop_and_a_phone_without_horizontal_overflow(
    tmp_path: Path, wide_comparison: Comparison, width: int
) -> None:
    text = write_reports(wide_comparison)["html"].read_text()
    probed = _framed(text.replace("</body>", OVERFLOW_PROBE + "</body>"), width, 900,
                     tmp_path / "probed.html")  # fmt: skip
    window = f"--window-size={max(width, 500)},900"
    dom = _chromium(tmp_path, "dom", window, "--dump-dom", probed.as_uri()).stdout
    page = _Body()
    page.feed(dom)
    body = page.body
    assert body.get("data-inner-width") == str(width)  # the viewport is the width asked for
    assert int(body.get("data-scroll-width") or 0) <= width
    assert body.get("data-overflowing") == ""  # no element pokes out of the viewport
    # at a laptop's width the leaderboard fits; on a phone it scrolls inside its own box
    assert body.get("data-board-scrolls") == ("false" if width == 1280 else "true")
    assert body.get("data-tiles") == str(1 + len(wide_comparison.results) - 1)  # data + ran rows
    assert len((body.get("data-tile-widths") or "").split(",")) == 1  # one size for all tiles

    shown = _framed(text, width, 2400, tmp_path / "shown.html")
    window = tmp_path / "window.png"
    _chromium(tmp_path, "shot", f"--window-size={max(width, 500)},2400",
              f"--screenshot={window}", shown.as_uri())  # fmt: skip
    with Image.open(window) as image:  # the frame alone: what a screen of that width shows
        shot = _artefacts(tmp_path) / f"report-{width}px.png"
        image.crop((0, 0, width, 2400)).save(shot)
    with Image.open(shot) as image:
        assert image.size == (width, 2400)
        assert len(image.convert("L").getcolors(1 << 16) or ()) > 50  # a page, not a blank
