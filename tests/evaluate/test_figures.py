"""What the network learned (#6): the filter grid, color specificity, retrieval, the report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet.data.store import Store
from alexnet.evaluate.codes import binary_codes, train_autoencoder
from alexnet.evaluate.figures import color_specificity, filter_grid, kernel_position
from alexnet.evaluate.search import hamming_nearest, nearest, pack_bits, precision_at_k
from alexnet.studies.report import TRAIN_COLOR, curves, write_report
from alexnet.train.config import load_config
from alexnet.train.trainer import train

from fixtures import DEBUG, cli


@pytest.fixture(scope="module")
def run(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("figrun") / "run"
    train(load_config(DEBUG, [f"data.store={store}", "run.epochs=2"]), out)
    return out


# Figure 3.


def test_filter_grid_places_kernels_as_the_paper_figure_does():
    # Figure 3: tower A's 48 kernels fill the top three rows of 16, row by row, tower B's the
    # bottom three (after a gap row here).
    expected = {0: (0, 0), 15: (0, 15), 16: (1, 0), 47: (2, 15), 48: (4, 0), 63: (4, 15),
                64: (5, 0), 95: (6, 15)}  # fmt: skip
    assert {i: kernel_position(i, 48) for i in expected} == expected
    rng = np.random.default_rng(0)
    kernels = rng.normal(size=(96, 3, 11, 11))
    grid = filter_grid(kernels, towers=2, pad=1)
    for i in (0, 17, 47, 48, 95):
        row, col = kernel_position(i, 48)
        cell = grid[1 + row * 12 : 1 + row * 12 + 11, 1 + col * 12 : 1 + col * 12 + 11]
        k = kernels[i].transpose(1, 2, 0)
        assert np.allclose(cell, (k - k.min()) / (k.max() - k.min()))
    assert grid.shape == (1 + 7 * 12, 1 + 16 * 12, 3)
    # the gap row between the towers is empty (white)
    assert (grid[1 + 3 * 12 : 4 * 12] == 1).all()


def test_color_specificity_ranks_gray_kernels_below_colored_ones():
    rng = np.random.default_rng(1)
    shapes = rng.normal(size=(48, 1, 11, 11))
    gray = np.repeat(shapes, 3, axis=1)  # the same shape in R, G and B
    colored = gray + rng.normal(size=(48, 3, 1, 1)) * 2  # plus a color offset per channel
    assert np.allclose(color_specificity(gray), 0)
    assert color_specificity(colored).mean() > 0.5 > color_specificity(gray).mean()
    # hand-computed: channels +1, -1, 0, flat in space: all variance is between channels
    blob = np.stack([np.ones((3, 3)), -np.ones((3, 3)), np.zeros((3, 3))])[None]
    assert color_specificity(blob) == pytest.approx([1.0])
    # iid noise: two thirds of the variance lies between 3 channels
    noise = rng.normal(size=(2000, 3, 11, 11))
    assert color_specificity(noise).mean() == pytest.approx(2 / 3, abs=0.01)
    with pytest.raises(ValueError, match="two or more"):
        color_specificity(shapes)


# Retrieval.


def test_nearest_neighbors_agree_with_brute_force():
    gen = torch.Generator().manual_seed(0)
    base, queries = torch.randn(500, 64, generator=gen), torch.randn(37, 64, generator=gen)
    brute = torch.cdist(queries.double(), base.double())
    expected_d, expected_i = brute.topk(7, dim=1, largest=False)
    for chunk, base_chunk in ((10, 16384), (8, 64), (37, 3)):  # blocks smaller than k too
        distances, indices = nearest(queries, base, k=7, chunk=chunk, base_chunk=base_chunk)
        assert torch.equal(indices, expected_i)
        assert torch.allclose(distances.double(), expected_d, rtol=1e-4)
    # a uint8 base (pixels) is widened block by block
    pixels = torch.randint(0, 256, (300, 49), generator=gen, dtype=torch.uint8)
    found = nearest(pixels[:5], pixels, k=1, base_chunk=50)[1]
    assert found.flatten().tolist() == [0, 1, 2, 3, 4]


def test_hamming_search_agrees_with_brute_force_ties_in_base_order():
    gen = torch.Generator().manual_seed(1)
    for bits in (16, 64, 100, 256):
        base = torch.randint(0, 2, (300, bits), generator=gen)
        queries = torch.randint(0, 2, (20, bits), generator=gen)
        distances, indices = hamming_nearest(pack_bits(queries), pack_bits(base), k=10, chunk=7)
        brute = (queries[:, None, :] != base[None]).sum(-1)
        expected_d, expected_i = brute.sort(dim=1, stable=True)
        assert torch.equal(distances, expected_d[:, :10])
        assert torch.equal(indices, expected_i[:, :10])


def test_precision_at_k_by_hand():
    neighbor_labels = np.array([[1, 1, 2, 1], [0, 3, 3, 3]])
    assert precision_at_k(neighbor_labels, np.array([1, 3])) == pytest.approx((3 + 3) / 8)


def test_autoencoder_codes_keep_clusters_apart():
    # Ten well-separated clusters in 64 dimensions: 16-bit codes must find same-cluster
    # neighbors nearly always, as exact Euclidean search does.
    gen = torch.Generator().manual_seed(2)
    centers = torch.randn(10, 64, generator=gen) * 4
    labels = torch.arange(600) % 10
    features = (centers[labels] + torch.randn(600, 64, generator=gen)).relu()
    model, norm, loss = train_autoencoder(features, bits=16, epochs=30, batch=64)
    codes = binary_codes(model, norm, features)
    _, found = hamming_nearest(codes[:100], codes, k=6)
    same = precision_at_k(labels.numpy()[found[:, 1:].numpy()], labels.numpy()[:100])
    assert same > 0.9, same
    assert codes.dtype == torch.int64 and codes.shape == (600, 1)
    assert loss < 0.9  # better than the mean (standardized features: 1.0)


# The commands, end to end on the debug network and store.


def test_figures_and_neighbors_write_pictures_and_numbers(store, run, tmp_path, monkeypatch):
    checkpoint = run / "checkpoints" / "last.pt"
    done = cli("figures", "filters", "--checkpoint", checkpoint, "--out", tmp_path / "f")
    assert done.returncode == 0, done.stderr
    filters = json.loads((tmp_path / "f" / "filters.json").read_text())
    assert filters["kernels"] == [8, 1, 11, 11] and filters["color_specificity"] is None
    assert Image.open(tmp_path / "f" / "filters.png").size[0] > 100
    done = cli("figures", "predictions", "--checkpoint", checkpoint, "--data", store,
               "--count", "5", "--out", tmp_path / "f")  # fmt: skip
    assert done.returncode == 0, done.stderr
    shown = json.loads((tmp_path / "f" / "predictions.json").read_text())["images"]
    assert len(shown) == 5 and all(len(item["top5"]) == 5 for item in shown)
    assert all(item["top5"][0]["probability"] >= item["top5"][-1]["probability"] for item in shown)
    picture = tmp_path / "query.png"
    Image.fromarray(np.full((40, 30), 200, np.uint8)).save(picture)
    done = cli("neighbors", "--checkpoint", checkpoint, "--data", store, "--codes", "8,16",
               "--k", "4", "--queries", "20", "--shown", "2", "--epochs", "2",
               "--query", picture, "--out", tmp_path / "n")  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "n" / "neighbors.json").read_text())
    searches = [row["search"] for row in result["table"]]
    assert searches == ["pixels, Euclidean", "fc7, Euclidean", "fc7 -> 8-bit codes, Hamming",
                        "fc7 -> 16-bit codes, Hamming"]  # fmt: skip
    assert all(0 <= row["precision_at_4"] <= 1 and row["queries_per_s"] > 0
               for row in result["table"])  # fmt: skip
    assert len(result["shown"]) == 3 and result["shown"][0]["query"] == "query.png"
    assert (tmp_path / "n" / "neighbors.png").stat().st_size > 10_000
    # the pixels row by brute force: the 20 queries drawn with seed 0, each one's 4 nearest
    # training images in Euclidean distance, the share of them of the query's class
    train_split, val = Store(store).split("train"), Store(store).split("val")
    picked = np.sort(np.random.default_rng(0).choice(len(val), size=20, replace=False))
    base = np.asarray(train_split.images[:], np.float64).reshape(len(train_split), -1)
    right = 0
    for i in picked:
        query = np.asarray(val.images[i], np.float64).reshape(-1)
        found = np.argsort(((base - query) ** 2).sum(axis=1), kind="stable")[:4]
        right += int((train_split.labels[found] == val.labels[i]).sum())
    assert result["table"][0]["precision_at_4"] == round(right / (20 * 4), 4)
    index = list((tmp_path / "n").glob("fc7-train-*.pt"))
    assert len(index) == 1
    # the index is reused: a second run leaves it as it was, also when it asks for the
    # precision auto, which on a CPU without bf16 instructions is the same fp32
    import alexnet.core.runtime

    monkeypatch.setattr(alexnet.core.runtime, "cpu_has_bf16", lambda: False)
    before = index[0].stat().st_mtime_ns
    done = cli("neighbors", "--checkpoint", checkpoint, "--data", store, "--k", "4",
               "--queries", "20", "--precision", "auto", "--out", tmp_path / "n")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert index[0].stat().st_mtime_ns == before
    assert json.loads((tmp_path / "n" / "neighbors.json").read_text())["precision"] == "fp32"
    assert "fc7, Euclidean" in done.stdout


def test_neighbors_names_a_query_that_is_not_an_image(store, run, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    done = cli("neighbors", "--checkpoint", run, "--data", store, "--queries", "4",
               "--query", bad, "--out", tmp_path / "n")  # fmt: skip
    assert done.returncode == 2 and "notes.png" in done.stderr


# The report.


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.fail("no Chromium: `make test` installs Debian's chromium package")


def test_report_renders_in_headless_chromium_with_its_curves(store, run, tmp_path):
    done = cli("eval", "--checkpoint", run, "--data", store, "--views", "ten-crop")
    assert done.returncode == 0, done.stderr
    page = write_report(run, out=tmp_path / "report.html")
    text = page.read_text()
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert "Learning curves" in text and "ten-crop" in text and "conv1 kernels" in text
    shot = tmp_path / "shot.png"
    env = {**os.environ, "HOME": str(tmp_path)}
    browser = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
         "--v=0", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900",
         f"--screenshot={shot}", page.as_uri()],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert shot.is_file(), browser.stderr
    console = [line for line in browser.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console
    # the learning curves are on the first screen, and in a file of their own: the training
    # curve's color is there
    red = np.array([int(TRAIN_COLOR[i : i + 2], 16) for i in (1, 3, 5)])
    for picture in (shot, Path(run) / "figures" / "curves.png"):
        pixels = np.asarray(Image.open(picture).convert("RGB")).reshape(-1, 3).astype(int)
        assert (np.abs(pixels - red).sum(1) < 30).sum() > 50, picture


def test_the_report_of_a_held_out_run_shows_its_test_evaluations(store, tmp_path):
    run = tmp_path / "run"
    done = cli("train", "--config", DEBUG, "--out", run, "--set", f"data.store={store}",
               "--set", "data.holdout=20", "--set", "run.epochs=1", "--test")  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = write_report(run).read_text()
    assert "No ten-crop evaluation yet" not in text
    assert "test-val-ten-crop (ten-crop)" in text and "test-val-center (center)" in text
    assert "last epoch&#x27;s held-out validation (center)" in text


@pytest.mark.parametrize(("split", "name"), [("val", "val"), ("train-holdout", "held-out")])
def test_the_curves_name_what_validated(split, name):
    line = {"train_top1_error": 0.2, "val_top1_error": 0.1, "val_top5_error": 0.01, "lr": 0.01,
            "images_per_s": 80.0, "val_split": split}  # fmt: skip
    fig = curves([{**line, "epoch": 1}, {**line, "epoch": 2}])
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert labels == ["train top-1", f"{name} top-1", f"{name} top-5"]
