"""Every command in the guides runs: the shell blocks marked `<!-- runnable -->` in docs/
run, in order, page by page, in a folder prepared as each page assumes (a few photos in
photos/CLASS/001.jpg..., torchvision's weights file, here made-up weights of its shape, a
small Fashion-MNIST store in data/fashion-mnist with a run trained on it in runs/short, a
photo shirt.png, the repository's configs/ and examples/), bounded so that the suite stays
short: `alexnet train` runs one epoch of batch 8, runs/short is the debug network."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fixtures import ROOT, cli, fashion_mnist, photo

BLOCK = re.compile(r"<!-- runnable -->\n```sh\n(.*?)```", re.S)
BOUND = " --set run.epochs=1 --set optim.batch_size=8"


def runnable(page: Path) -> list[str]:
    lines = [line for block in BLOCK.findall(page.read_text()) for line in block.splitlines()]
    return [line for line in lines if line.strip() and not line.startswith("#")]


PAGES = [p for p in sorted((ROOT / "docs").glob("*.md")) if runnable(p)]


@pytest.fixture(scope="module")
def fashion_mnist_run(tmp_path_factory) -> Path:
    """data/fashion-mnist (60 images) and runs/short, one epoch of the debug network on it."""
    folder = tmp_path_factory.mktemp("fashion-mnist")
    fashion_mnist(folder / "raw", train=40, test=20)
    store, run = folder / "data/fashion-mnist", folder / "runs/short"
    done = cli("data", "prepare", "--source", "fashion-mnist", "--src", str(folder / "raw"),
               "--out", str(store))  # fmt: skip
    assert done.returncode == 0, done.stderr
    done = cli("train", "--config", str(ROOT / "configs/debug.yaml"), "--set",
               f"data.store={store}", "--set", "run.epochs=1", "--set", "data.holdout=10",
               "--out", str(run))  # fmt: skip
    assert done.returncode == 0, done.stderr
    return folder


def sandbox(folder: Path, fashion: Path) -> None:
    from references import torchvision_state_dict

    torch.save(torchvision_state_dict(), folder / "alexnet-owt-7be5be79.pth")
    for c, name in enumerate(["cat", "dog", "fox"]):
        (folder / "photos" / name).mkdir(parents=True)
        for i in range(8):
            photo(10 * c + i, (320, 240)).save(folder / "photos" / name / f"{i + 1:03d}.jpg")
    shutil.copytree(fashion / "data", folder / "data")
    shutil.copytree(fashion / "runs", folder / "runs")
    shutil.copy(ROOT / "docs/serving/photos/00-Ankle_boot.png", folder / "shirt.png")
    (folder / "configs").symlink_to(ROOT / "configs")
    (folder / "examples").symlink_to(ROOT / "examples")


def test_the_guides_mark_their_commands():
    assert [p.name for p in PAGES] == ["export.md", "figures.md", "finetune.md"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_every_runnable_command_of_a_guide_runs(page, tmp_path, fashion_mnist_run):
    sandbox(tmp_path, fashion_mnist_run)
    # `python` is this interpreter (its folder first on PATH), as in an activated venv
    env = {**os.environ, "ALEXNET_PROGRESS": "0",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    for line in runnable(page):
        command = line + BOUND if line.startswith("alexnet train") else line
        done = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)  # fmt: skip
        assert done.returncode == 0, f"{page.name}: {command}\n{done.stderr[-2000:]}"
