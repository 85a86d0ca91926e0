"""Every command in the guides runs: the shell blocks marked `<!-- runnable -->` in docs/
run, in order, page by page, in a folder prepared as each page assumes (a few photos in
photos/CLASS/001.jpg..., torchvision's weights file, here made-up weights of its shape, the
repository's configs/ and examples/), bounded so that the suite stays short: `alexnet train`
runs one epoch of batch 8."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fixtures import ROOT, photo

BLOCK = re.compile(r"<!-- runnable -->\n```sh\n(.*?)```", re.S)
BOUND = " --set run.epochs=1 --set optim.batch_size=8"


def runnable(page: Path) -> list[str]:
    lines = [line for block in BLOCK.findall(page.read_text()) for line in block.splitlines()]
    return [line for line in lines if line.strip() and not line.startswith("#")]


PAGES = [p for p in sorted((ROOT / "docs").glob("*.md")) if runnable(p)]


def sandbox(folder: Path) -> None:
    from references import torchvision_state_dict

    torch.save(torchvision_state_dict(), folder / "alexnet-owt-7be5be79.pth")
    for c, name in enumerate(["cat", "dog", "fox"]):
        (folder / "photos" / name).mkdir(parents=True)
        for i in range(8):
            photo(10 * c + i, (320, 240)).save(folder / "photos" / name / f"{i + 1:03d}.jpg")
    (folder / "configs").symlink_to(ROOT / "configs")
    (folder / "examples").symlink_to(ROOT / "examples")


def test_the_guides_mark_their_commands():
    assert [p.name for p in PAGES] == ["finetune.md"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_every_runnable_command_of_a_guide_runs(page, tmp_path):
    sandbox(tmp_path)
    # `python` is this interpreter (its folder first on PATH), as in an activated venv
    env = {**os.environ, "ALEXNET_PROGRESS": "0",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    for line in runnable(page):
        command = line + BOUND if line.startswith("alexnet train") else line
        done = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)  # fmt: skip
        assert done.returncode == 0, f"{page.name}: {command}\n{done.stderr[-2000:]}"
