"""The documentation site builds with ``mkdocs build --strict``: no broken link, no missing
reference, no docstring the API reference cannot parse (mkdocs.yml; the ``docs`` extra)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEEDED = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(name.split(".")[0]) is None for name in NEEDED),
    reason="the docs extra is not installed (pip install -e '.[docs]')",
)


@pytest.mark.slow
def test_site_builds_strict_with_an_api_page_per_package(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)}
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    assert "WARNING" not in build.stderr
    pages = sorted(p.stem for p in (ROOT / "docs" / "api").glob("*.md"))
    packages = sorted(p.parent.name for p in (ROOT / "probgen").glob("*/__init__.py"))
    assert set(packages) <= set(pages)  # every package has its page
    for page in pages:
        text = (site / "api" / page / "index.html").read_text()
        assert 'class="doc doc-heading"' in text or 'class="doc doc-contents' in text
    models = (site / "api" / "models" / "index.html").read_text()
    assert 'id="probgen.models.build_model"' in models  # a reference resolved from __all__
    home = (site / "index.html").read_text()
    assert 'class="arithmatex"' in home  # math marked for MathJax
