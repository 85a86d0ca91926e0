"""The linear probe against what logistic regression must give."""

from __future__ import annotations

import json

import numpy as np
import torch

from alexnet.evaluate.probe import fit, probe

from fixtures import cli


def features(folder, x, y, layer="fc7"):
    folder.mkdir(parents=True)
    np.save(folder / f"{layer}.npy", x.astype(np.float32))
    np.save(folder / "labels.npy", y.astype(np.int64))
    return folder


def test_the_fit_is_the_optimum_of_the_regularized_cross_entropy():
    # at the minimum the gradient, written out by hand, vanishes:
    # X^T (softmax(XW + b) - onehot(y)) / n + l2 W = 0 and the column sums of the first term
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (60,), generator=g)
    l2 = 0.01
    w, b = fit(x, y, 3, l2)
    p = torch.softmax(x @ w + b, dim=1)
    residual = p - torch.nn.functional.one_hot(y, 3).double()
    assert (x.T @ residual / 60 + l2 * w).abs().max() < 1e-6  # from about 0.1 at zero
    assert (residual.mean(0)).abs().max() < 1e-6


def test_separable_classes_are_told_apart_and_random_labels_are_not(tmp_path):
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 5, (4, 8))
    y = rng.integers(0, 4, 400)
    y_test = rng.integers(0, 4, 200)
    x = centers[y] + rng.normal(0, 1, (400, 8))
    x_test = centers[y_test] + rng.normal(0, 1, (200, 8))
    result = probe(features(tmp_path / "a", x, y), features(tmp_path / "b", x_test, y_test))
    assert result["test"]["top1_error"] < 0.02 and result["test"]["top5_error"] == 0
    assert result["l2"] in (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
    noise = probe(features(tmp_path / "c", rng.normal(0, 1, (400, 8)), y),
                  features(tmp_path / "d", rng.normal(0, 1, (200, 8)), y_test))  # fmt: skip
    assert 0.6 < noise["test"]["top1_error"] < 0.9  # chance is 0.75


def test_probe_command_writes_its_result_and_refuses_missing_features(tmp_path):
    rng = np.random.default_rng(1)
    y = np.arange(40) % 2
    train = features(tmp_path / "a", rng.normal(0, 1, (40, 3)) + y[:, None] * 3, y)
    done = cli("probe", "--train", train, "--test", train, "--out", tmp_path / "p.json")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "p.json").read_text())["test"]["images"] == 40
    bad = cli("probe", "--train", train, "--test", train, "--layer", "conv5")
    assert bad.returncode == 2 and "lacks conv5.npy" in bad.stderr


def test_the_probe_shows_a_bar_over_its_fits_unless_told_not_to(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ALEXNET_PROGRESS", raising=False)
    rng = np.random.default_rng(2)
    y = np.arange(40) % 2
    train = features(tmp_path / "a", rng.normal(0, 1, (40, 3)) + y[:, None] * 3, y)
    probe(train, train)
    shown = capsys.readouterr().err
    assert "probe fc7" in shown and "6/6" in shown  # five l2 values, then the refit
    probe(train, train, progress=False)
    assert capsys.readouterr().err == ""
