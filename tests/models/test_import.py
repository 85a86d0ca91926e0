"""`alexnet import torchvision`: torchvision's AlexNet state dict as a checkpoint."""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from PIL import Image

from alexnet.evaluate.predict import Photos
from alexnet.models import checkpoint as ckpt
from alexnet.models.weights import ilsvrc2012_classes

from fixtures import cli, encode, photo, write
from references import torchvision_forward, torchvision_state_dict


def test_an_imported_checkpoint_computes_torchvisions_network(tmp_path):
    state = torchvision_state_dict()
    torch.save(state, tmp_path / "alexnet.pth")
    done = cli("import", "torchvision", tmp_path / "alexnet.pth", "--out", tmp_path / "tv.pt")
    assert done.returncode == 0, done.stderr
    checkpoint = ckpt.load(tmp_path / "tv.pt")
    model = ckpt.load_model(checkpoint)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), torchvision_forward(state, x), rtol=1e-5, atol=1e-5)
    record = checkpoint["record"]
    assert record.classes.ids[0] == "n01440764" and record.classes.names[0].startswith("tench")
    source = record.provenance.imported_from
    assert source.network == "torchvision" and source.path == str(tmp_path / "alexnet.pth")
    assert source.sha256 == hashlib.sha256((tmp_path / "alexnet.pth").read_bytes()).hexdigest()


def test_the_ilsvrc2012_classes_are_the_thousand_sorted_synsets():
    ids, names = ilsvrc2012_classes()
    assert len(ids) == len(set(ids)) == 1000 and ids == sorted(ids)
    # by hand: torchvision's class 1 is the goldfish, 207 the golden retriever
    assert names[1].startswith("goldfish") and names[207].startswith("golden retriever")


def test_predict_prepares_a_photo_as_torchvision_does(tmp_path):
    torch.save(torchvision_state_dict(), tmp_path / "alexnet.pth")
    cli("import", "torchvision", tmp_path / "alexnet.pth", "--out", tmp_path / "tv.pt")
    pre = ckpt.load(tmp_path / "tv.pt")["record"].preprocessing
    picture = photo(2, (320, 240))
    write(tmp_path / "p.png", encode(picture, "PNG"))
    got = Photos([str(tmp_path / "p.png")], pre, "center")[0][1]
    # by hand: Resize(256) (shorter side), CenterCrop(224), ToTensor, Normalize(mean, std)
    resized = picture.resize((341, 256), Image.Resampling.BILINEAR, reducing_gap=None)
    left, top = (341 - 224) // 2, 16
    crop = np.asarray(resized.crop((left, top, left + 224, top + 224)), np.float32) / 255
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = torch.from_numpy(((crop - mean) / std).transpose(2, 0, 1).astype(np.float32))
    # the same resize, crop and arithmetic: float32 rounding apart (a bicubic filter is
    # 1.6e-3 off on average, nearest 3e-2, one gray level 1.7e-2)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() < 1e-5


def test_import_refuses_what_is_not_torchvisions_alexnet(tmp_path):
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    bad = cli("import", "torchvision", tmp_path / "other.pth", "--out", tmp_path / "x.pt")
    assert bad.returncode == 2 and "not one of torchvision's AlexNet keys" in bad.stderr
    (tmp_path / "text.pth").write_text("hello")
    bad = cli("import", "torchvision", tmp_path / "text.pth", "--out", tmp_path / "x.pt")
    assert bad.returncode == 2 and "not a readable state dict" in bad.stderr
    assert not (tmp_path / "x.pt").exists()
