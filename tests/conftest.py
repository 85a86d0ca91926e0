"""Fixtures shared by the training, evaluation and prediction tests."""

from __future__ import annotations

import os
from pathlib import Path

# Triton's CPU interpreter, so the Triton LRN kernels run on CPU tensors here; read when the
# kernels are defined, so before anything imports alexnet.kernels.lrn_triton.
os.environ.setdefault("TRITON_INTERPRET", "1")

# `make test` runs the tests in several pytest-xdist workers. Each takes its share of the
# cores for torch's threads, and so do the processes its tests start (torch reads
# OMP_NUM_THREADS when it starts): more threads than cores would make them wait on each other.
if workers := os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    threads = max(1, (os.cpu_count() or 1) // int(workers))
    os.environ["OMP_NUM_THREADS"] = str(threads)
else:
    threads = 0  # torch's default

import pytest
import torch

from alexnet.data.prepare import NoProgress, Settings, prepare

from fixtures import fashion_mnist

if threads:
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> Path:
    """A Fashion-MNIST-shaped store of 160 training and 24 validation random images."""
    root = tmp_path_factory.mktemp("debug")
    fashion_mnist(root / "src", train=160, test=24)
    prepare(Settings("fashion-mnist", str(root / "src"), size=None), root / "store",
            workers=1, progress=NoProgress)  # fmt: skip
    return root / "store"


@pytest.fixture(scope="session")
def store32(tmp_path_factory) -> Path:
    """A Fashion-MNIST-shaped store of 100 training and 20 validation random images, stored
    at 32x32 (`--size 32`), for the four-layer CIFAR net."""
    root = tmp_path_factory.mktemp("debug32")
    fashion_mnist(root / "src", train=100, test=20)
    prepare(Settings("fashion-mnist", str(root / "src"), size=32), root / "store",
            workers=1, progress=NoProgress)  # fmt: skip
    return root / "store"


@pytest.fixture(scope="session")
def debug_run(store, tmp_path_factory) -> Path:
    """A run directory of configs/debug.yaml trained one epoch on `store`."""
    from alexnet.train.config import load_config
    from alexnet.train.trainer import train

    from fixtures import DEBUG

    out = tmp_path_factory.mktemp("debugrun") / "run"
    train(load_config(DEBUG, [f"data.store={store}", "run.epochs=1"]), out)
    return out
