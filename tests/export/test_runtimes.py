"""The exported network in ONNX Runtime and OpenVINO: the package's logits, through
`predict --runtime` and `serve --runtime` too."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from alexnet.core.errors import UserError
from alexnet.export.runtimes import exported
from alexnet.models import checkpoint as ckpt
from alexnet.models.weights import untrained_checkpoint

from fixtures import cli, encode, photo, write

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")
pytest.importorskip("onnxscript")


def real_scale(batch: int, side: int, seed: int = 0) -> torch.Tensor:
    """0-255 pixels minus the record's mean (110 everywhere), where the LRN acts."""
    pixels = np.random.default_rng(seed).integers(0, 256, (batch, 3, side, side))
    return torch.from_numpy((pixels - 110.0).astype(np.float32))


@pytest.mark.parametrize("name", ["alexnet2012", "alexnet_owt"])
def test_openvino_gives_the_packages_logits_in_fp32_and_within_bf16s_rounding(name):
    checkpoint = untrained_checkpoint(name, scale=None)
    model = ckpt.load_model(checkpoint)
    x = real_scale(8, checkpoint["record"].preprocessing.crop_size)
    with torch.no_grad():
        ours = model(x)
    size = ours.abs().max()
    assert size > 10  # logits that a difference would show in
    for runtime, precision, within in (("openvino", "fp32", 1e-5), ("onnxruntime", "fp32", 1e-5),
                                       ("openvino", "bf16", 2e-2)):  # fmt: skip
        with exported(checkpoint, runtime, precision, threads=2) as engine:
            theirs = engine(x)
        assert theirs.dtype == torch.float32 and theirs.shape == ours.shape
        assert (theirs - ours).abs().max() <= within * size, (runtime, precision)
        if precision == "fp32":
            assert torch.equal(theirs.topk(5).indices, ours.topk(5).indices)
    with (
        pytest.raises(UserError, match="onnxruntime runs fp32 here, not bf16"),
        exported(checkpoint, "onnxruntime", "bf16"),
    ):
        pass


def test_predict_and_serve_with_a_runtime_answer_as_the_package_does(debug_run, tmp_path):
    from alexnet.serve.engine import Engine

    for k in range(3):
        write(tmp_path / "photos" / f"{k}.jpg", encode(photo(k, (90, 70))))
    rows = {}
    for runtime in ("torch", "onnxruntime", "openvino"):
        done = cli("predict", tmp_path / "photos", "--checkpoint", debug_run, "--runtime",
                   runtime, "--top", "5", "--json")  # fmt: skip
        assert done.returncode == 0, done.stderr
        rows[runtime] = json.loads(done.stdout)
    for runtime in ("onnxruntime", "openvino"):
        for ours, theirs in zip(rows["torch"], rows[runtime], strict=True):
            assert [t["class"] for t in ours["top"]] == [t["class"] for t in theirs["top"]]
            got = [t["probability"] for t in theirs["top"]]
            assert got == pytest.approx([t["probability"] for t in ours["top"]], abs=1e-5)
    torch_engine, openvino = Engine(str(debug_run)), Engine(str(debug_run), runtime="openvino")
    assert openvino.runtime == "openvino" and openvino.describe()["runtime"] == "openvino"
    data = encode(photo(5), "PNG")
    ours = torch_engine.probabilities([torch_engine.prepare(data, "ten-crop").views])[0]
    theirs = openvino.probabilities([openvino.prepare(data, "ten-crop").views])[0]
    assert torch.allclose(ours, theirs, atol=1e-5)
    refused = cli("serve", "--checkpoint", debug_run, "--runtime", "onnxruntime",
                  "--precision", "bf16", "--port", "0")  # fmt: skip
    assert refused.returncode == 2 and "onnxruntime runs fp32 here" in refused.stderr
