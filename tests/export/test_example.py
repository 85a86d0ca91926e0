"""examples/onnx_classify.py, the complete example of running an exported file without the
package: its preparation of a photo, read from the file's metadata alone, is the package's
(`record.transform`), and its classes are the package's, for a gray network trained on
small images (a mean image, upscaled views) and an RGB one (torchvision's: a mean color and
a scale), with an upright-turned JPEG."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch

from fixtures import ROOT, encode, photo

EXAMPLE = ROOT / "examples" / "onnx_classify.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("onnx_classify", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _photos(folder, channels):
    paths = []
    for i, size in enumerate([(96, 72), (300, 500), (640, 480)]):
        image = photo(i, size)
        image = image.convert("L") if channels == 1 else image
        path = folder / f"photo-{i}.jpg"
        exif = image.getexif()
        exif[0x0112] = 6 if i == 2 else 1  # the third is stored on its side
        path.write_bytes(encode(image, "JPEG", exif=exif))
        paths.append(path)
    return paths


def _check(example, checkpoint, folder, channels):
    import onnxruntime

    import alexnet
    from alexnet.export.onnx import export_onnx
    from alexnet.models import checkpoint as ckpt

    onnx = export_onnx(ckpt.load(checkpoint), folder / "model.onnx")
    model, record = alexnet.load(checkpoint)
    session = onnxruntime.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    read, mean = example.read_metadata(session)
    paths = _photos(folder, channels)
    for path in paths:
        theirs = example.prepare(str(path), read["preprocessing"], mean)
        ours = record.transform(path).numpy()
        assert theirs.shape == ours.shape
        np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-4 * np.abs(ours).max())
    done = subprocess.run([sys.executable, str(EXAMPLE), str(onnx), *map(str, paths),
                           "--top", "1"], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    with torch.no_grad():
        logits = model(torch.stack([record.transform(p) for p in paths]))
    for line, row in zip(done.stdout.splitlines(), logits, strict=True):
        assert line.split(": ")[1].rsplit(" ", 1)[0] == record.classes.names[int(row.argmax())]


def test_a_gray_network_of_small_images(example, debug_run, tmp_path):
    _check(example, debug_run / "checkpoints" / "last.pt", tmp_path, 1)


def test_an_rgb_network_with_a_mean_color_and_a_scale(example, tmp_path):
    from alexnet.models import checkpoint as ckpt
    from alexnet.models.weights import torchvision_checkpoint

    from references import torchvision_state_dict

    ckpt.save(tmp_path / "tv.pt", torchvision_checkpoint(torchvision_state_dict()))
    _check(example, tmp_path / "tv.pt", tmp_path, 3)
