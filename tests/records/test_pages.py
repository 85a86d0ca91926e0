"""The docs cannot drift from their records: `alexnet report-docs --check` agrees with the
committed pages, fails on a page whose table was edited by hand, and every figure the
pages show is what its record draws."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from alexnet.records.pages import PAGES, draw, figures, regenerate

from fixtures import ROOT, cli


def test_every_generated_table_agrees_with_its_record():
    outcome = regenerate(ROOT, check=True)
    assert outcome.changed == [], outcome.output[-4000:]


def test_a_table_edited_by_hand_fails_the_check_and_the_command_puts_it_back(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copy(ROOT / "README.md", copy / "README.md")
    page = copy / "docs/results-large-batch.md"
    committed = page.read_text()
    assert "| 15.83% |" in committed
    page.write_text(committed.replace("| 15.83% |", "| 14.83% |"))  # a number typed by hand
    done = cli("report-docs", "--check", "--root", str(copy))
    assert done.returncode == 2
    assert "docs/results-large-batch.md" in done.stderr + done.stdout
    assert "-| batch 128" in done.stdout and "+| batch 128" in done.stdout  # the diff shown
    done = cli("report-docs", "--root", str(copy))
    assert done.returncode == 0, done.stderr
    assert page.read_text() == committed


def test_a_block_that_names_a_missing_record_is_an_error_not_a_pass(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copy(ROOT / "README.md", copy / "README.md")
    (copy / "docs/runs/large-batch/summary.json").unlink()
    with pytest.raises(RuntimeError, match=r"summary\.json"):
        regenerate(copy, check=True)


def test_the_pages_and_the_figures_name_records_that_exist():
    for page in PAGES:
        assert "[[[cog" in (ROOT / page).read_text(), page
    for figure in figures():
        assert (ROOT / figure.record).exists(), figure.record
        assert (ROOT / figure.png).is_file(), figure.png


def test_every_figure_redrawn_from_its_record_matches_the_committed_one(tmp_path):
    drawn = draw(ROOT, tmp_path)
    assert len(drawn) == len(figures())
    for png in drawn:
        committed = ROOT / png.relative_to(tmp_path)
        new, old = (
            np.asarray(Image.open(png).convert("RGB")),
            np.asarray(Image.open(committed).convert("RGB")),
        )
        assert new.shape == old.shape, committed
        # the same plot: a font's hinting may move a few pixels, a number moves many
        differing = np.any(new != old, axis=-1).mean()
        assert differing < 0.002, (committed, differing)


def test_outside_the_project_the_command_says_so_in_one_line(tmp_path):
    done = cli("report-docs", "--check", "--root", str(tmp_path))
    assert done.returncode == 2
    assert "is not the project's root" in done.stderr and "Traceback" not in done.stderr
