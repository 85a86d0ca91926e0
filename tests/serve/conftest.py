"""A served checkpoint (the debug run), its fc7 index, and servers started from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexnet.serve.traffic import Server


@pytest.fixture(scope="session")
def served(debug_run) -> Path:
    return debug_run / "checkpoints" / "last.pt"


@pytest.fixture(scope="session")
def fc7_folder(served, store, tmp_path_factory) -> Path:
    from alexnet.evaluate.fc7index import fc7_index

    folder = tmp_path_factory.mktemp("index")
    fc7_index(str(served), str(store), "train", folder, workers=0, progress=False)
    return folder


@pytest.fixture(scope="session")
def server(served, fc7_folder):
    """The debug network with neighbors, default limits."""
    with Server(served, "--index", str(fc7_folder)) as running:
        yield running


@pytest.fixture(scope="session")
def photos(store, tmp_path_factory) -> list[Path]:
    """Eight of the store's validation images as PNG files."""
    from alexnet.data.store import Store

    folder = tmp_path_factory.mktemp("photos")
    val = Store(store).split("val")
    paths = []
    for i in range(8):
        path = folder / f"val-{i}.png"
        Image.fromarray(np.asarray(val.images[i])[..., 0]).save(path)
        paths.append(path)
    return paths
