"""`alexnet features`: layers' activations written to disk, against the network's own."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from alexnet.data.dataset import StoreDataset
from alexnet.evaluate.features import FeatureWriter, features
from alexnet.models import checkpoint as ckpt

from fixtures import cli, encode, photo, write


def test_features_of_a_store_are_the_networks_own_activations(debug_run, store, tmp_path):
    out = tmp_path / "f"
    done = cli("features", "--checkpoint", debug_run, "--data", store, "--split", "val",
               "--layers", "conv5,pool5,fc7,fc8", "--batch", "5", "--out", out)  # fmt: skip
    assert done.returncode == 0, done.stderr
    loaded = ckpt.load(debug_run / "checkpoints" / "last.pt")
    model = ckpt.load_model(loaded)
    dataset = StoreDataset(store, "val", "center", crop_size=224)
    dataset.normalized_as(*loaded["record"].preprocessing.normalization(dataset.store.view_size))
    x, y = dataset.__getitems__(list(range(24)))
    with torch.no_grad():  # written out by hand from the network's own parts
        m = model
        a = m.pool2(m.norm2(torch.relu(m.conv2(m.pool1(m.norm1(torch.relu(m.conv1(x))))))))
        conv5 = torch.relu(m.conv5(torch.relu(m.conv4(torch.relu(m.conv3(a))))))
        pool5 = m.pool5(conv5)
        fc7 = m.forward_head(pool5, pre_logits=True)
        fc8 = m.fc8(fc7)
    for name, expected in (("conv5", conv5), ("pool5", pool5), ("fc7", fc7), ("fc8", fc8)):
        got = np.load(out / f"{name}.npy")
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)
    assert np.array_equal(np.load(out / "labels.npy"), y.numpy())
    assert len((out / "files.txt").read_text().splitlines()) == 24
    assert json.loads((out / "features.json").read_text())["layers"]["conv5"] == [24, 16, 13, 13]


def test_spatial_means_half_precision_and_files_with_a_broken_one(debug_run, tmp_path):
    for k in range(3):
        write(tmp_path / "in" / f"{k}.jpg", encode(photo(k)))
    write(tmp_path / "in" / "bad.jpg", b"nope")
    out = tmp_path / "f"
    result = features(str(debug_run), out, ["conv5", "fc7"], paths=[str(tmp_path / "in")],
                      spatial_mean=True, dtype="float16", progress=False)  # fmt: skip
    conv5, fc7 = np.load(out / "conv5.npy"), np.load(out / "fc7.npy")
    assert conv5.shape == (4, 16) and fc7.shape == (4, 32) and conv5.dtype == np.float16
    files = (out / "files.txt").read_text().splitlines()
    assert [f.rsplit("/", 1)[-1] for f in files] == ["0.jpg", "1.jpg", "2.jpg", "bad.jpg"]
    assert np.isnan(conv5[3]).all() and np.isfinite(conv5[:3]).all()
    assert [f["file"].rsplit("/", 1)[-1] for f in result["failed"]] == ["bad.jpg"]
    # each row is the mean of the whole map over its 13 x 13 positions
    features(str(debug_run), tmp_path / "whole", ["conv5"], paths=[str(tmp_path / "in")],
             progress=False)  # fmt: skip
    whole = np.load(tmp_path / "whole" / "conv5.npy")
    assert whole.shape == (4, 16, 13, 13)
    means = whole[:3].astype(np.float64).mean(axis=(2, 3))
    np.testing.assert_allclose(conv5[:3].astype(np.float64), means, rtol=2e-3, atol=1e-3)


def test_an_interrupted_write_leaves_no_file_that_looks_complete(tmp_path):
    writer = FeatureWriter(tmp_path, count=10, dtype="float32")
    writer.write({"fc7": torch.ones(4, 3)})
    assert not (tmp_path / "fc7.npy").exists()  # only the temporary file so far
    writer.discard()
    assert not list(tmp_path.iterdir())


def test_features_refuses_unknown_layers_and_other_channels(debug_run, tmp_path):
    done = cli("features", "--checkpoint", debug_run, "--data", tmp_path, "--layers", "fc9",
               "--out", tmp_path / "f")  # fmt: skip
    assert done.returncode == 2 and "no layer 'fc9'" in done.stderr and "pool5" in done.stderr
    from fixtures import make_store

    make_store(tmp_path / "rgb", count=4)  # 3 channels; the debug network reads 1
    with pytest.raises(ValueError, match="reads 1-channel images"):
        features(str(debug_run), tmp_path / "g", ["fc7"], data=str(tmp_path / "rgb"),
                 progress=False)  # fmt: skip
