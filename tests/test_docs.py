"""The documentation site (mkdocs.yml): it builds with --strict from the repository, the API
reference from the docstrings included, and a broken link or a page missing from the
navigation fails the build."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from fixtures import ROOT

ENV = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}


def build(root: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=root, env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_the_site_builds_strictly_with_every_page_and_the_api_reference(tmp_path):
    done = build(ROOT, tmp_path / "site")
    assert done.returncode == 0, done.stderr[-3000:]
    pages = sorted(p.stem for p in (ROOT / "docs").glob("*.md"))
    for page in pages:
        built = tmp_path / "site" / ("index.html" if page == "index" else f"{page}/index.html")
        assert built.is_file(), page
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("alexnet.load", "create_model", "ModelRecord", "Preprocessing",
                 "LocalResponseNorm"):  # fmt: skip
        assert name in api, name


def test_a_broken_link_or_a_page_out_of_the_navigation_fails_the_build(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copytree(ROOT / "src", copy / "src")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    page = copy / "docs" / "scaling.md"
    page.write_text(page.read_text() + "\nSee [the missing page](missing.md).\n")
    done = build(copy, tmp_path / "site1")
    assert done.returncode != 0 and "missing.md" in done.stderr
    page.write_text(page.read_text().replace("See [the missing page](missing.md).", ""))
    (copy / "docs" / "orphan.md").write_text("# An orphan\n")
    done = build(copy, tmp_path / "site2")
    assert done.returncode != 0 and "orphan.md" in done.stderr
