"""`alexnet export`: ONNX files against ONNX Runtime, torch.export programs, safetensors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from alexnet.export.onnx import check_onnx, export_onnx, onnx_program
from alexnet.export.program import export_program, load_program
from alexnet.models import checkpoint as ckpt
from alexnet.models.registry import VARIANTS
from alexnet.models.tensorfile import save_weights
from alexnet.models.weights import untrained_checkpoint
from alexnet.nn.lrn import LocalResponseNorm as LRN

from fixtures import DEBUG, cli

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")  # torch's ONNX exporter writes through it


def synthetic_checkpoint(name: str) -> dict:
    """He-initialized weights and unit-variance inputs: logits of order 1, so that a
    difference in them shows."""
    return untrained_checkpoint(name)


@pytest.mark.parametrize("name", ["alexnet2012", "alexnet2012_1gpu", "caffenet", "alexnet_owt"])
def test_onnx_runtime_gives_the_packages_logits(name, tmp_path):
    # inputs on the scale the paper's network sees, 0-255 pixels minus the mean, where the
    # LRN acts: one LRN across both towers instead of one per tower moves alexnet2012's
    # logits by 3.4% of their size here, the exported file's by 1e-6
    checkpoint = untrained_checkpoint(name, scale=None)
    path = export_onnx(checkpoint, tmp_path / f"{name}.onnx")
    check_onnx(path)  # onnx.checker, full check
    runtime = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    side = checkpoint["record"].preprocessing.crop_size
    model = ckpt.load_model(checkpoint)
    for batch in (1, 8):
        pixels = np.random.default_rng(batch).integers(0, 256, (batch, 3, side, side))
        x = (pixels - 110.0).astype(np.float32)  # the record's mean image is 110 everywhere
        with torch.no_grad():
            ours = model(torch.from_numpy(x)).numpy()
        theirs = runtime.run(["logits"], {"image": x})[0]
        assert np.abs(ours).max() > 10  # logits that a difference would show in
        assert np.abs(ours - theirs).max() <= 1e-5 * np.abs(ours).max(), name
        top = np.argsort(-ours, axis=1)[:, :5]
        assert (top == np.argsort(-theirs, axis=1)[:, :5]).all()
    model = onnx.load(str(path), load_external_data=False)
    ops = {node.op_type for node in model.graph.node}
    # the towers' LRN as ONNX's LRN per tower; no kernel of this package left in the graph
    assert all(node.domain in ("", "ai.onnx") for node in model.graph.node)
    if name == "alexnet_owt":
        assert "LRN" not in ops
    else:
        # one ONNX LRN per tower of each normalization layer (caffenet's normalize across
        # all maps, as Caffe's do: one each)
        layers = [m for m in ckpt.load_model(checkpoint).modules() if isinstance(m, LRN)]
        lrn = [n for n in model.graph.node if n.op_type == "LRN"]
        assert len(lrn) == sum(m.groups for m in layers) and len(layers) == 2
        assert ("Split" in ops) == (layers[0].groups == 2)
        alpha = next(a.f for a in lrn[0].attribute if a.name == "alpha")
        # ONNX divides alpha by the size as Caffe does; the paper's 1e-4 is undivided, so it
        # is written 5e-4, while caffenet's (Caffe's 1e-4) stays
        assert alpha == pytest.approx(1e-4 if name == "caffenet" else 5e-4, rel=1e-6)
    described = json.loads({p.key: p.value for p in model.metadata_props}["alexnet"])
    assert described["preprocessing"]["crop_size"] == VARIANTS[name].input_size
    assert described["network"]["name"] == name and len(described["classes"]["names"]) == 1000


def test_the_onnx_lrn_is_the_papers_formula_within_each_tower(tmp_path):
    # The package's LRN layer (two towers of 4 maps) through the exporter, run by ONNX
    # Runtime, against a naive loop of the paper's formula:
    # b = a / (k + alpha * sum over the 5 neighbouring maps of its own tower of a^2)^beta
    layer = LRN(5, alpha=1e-4, beta=0.75, k=2.0, groups=2).eval()
    x = np.random.default_rng(0).normal(0, 60, (2, 8, 3, 3)).astype(np.float32)
    program = onnx_program(layer, torch.from_numpy(x))
    program.save(str(tmp_path / "lrn.onnx"))
    model = onnx.load(str(tmp_path / "lrn.onnx"))
    assert [n.op_type for n in model.graph.node] == ["Split", "LRN", "LRN", "Concat"]
    runtime = ort.InferenceSession(str(tmp_path / "lrn.onnx"), providers=["CPUExecutionProvider"])
    got = runtime.run(None, {runtime.get_inputs()[0].name: x})[0]
    expected = np.empty(x.shape, dtype=np.float64)
    for t in range(2):  # towers of 4 maps
        for c in range(4):
            window = range(max(0, c - 2), min(4, c + 3))
            total = sum(x[:, 4 * t + j].astype(np.float64) ** 2 for j in window)
            expected[:, 4 * t + c] = x[:, 4 * t + c] / (2.0 + 1e-4 * total) ** 0.75
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize("name", ["alexnet2012", "alexnet2012_1gpu", "caffenet", "alexnet_owt"])
def test_a_torch_export_program_reloads_and_matches(name, tmp_path):
    checkpoint = synthetic_checkpoint(name)
    path = export_program(checkpoint, tmp_path / "net.pt2")
    module, described = load_program(path)
    model = ckpt.load_model(checkpoint)
    side = VARIANTS[name].input_size
    for batch in (1, 8):
        x = torch.randn(batch, 3, side, side)
        with torch.no_grad():
            torch.testing.assert_close(module(x), model(x), rtol=1e-5, atol=1e-4)
    assert described["preprocessing"]["view_size"] == 256
    # no operator of this package in the program: it loads where alexnet is not installed
    program = torch.export.load(str(path))
    assert not [n for n in program.graph.nodes if "alexnet" in str(n.target)]


def test_safetensors_round_trip_is_bit_identical_and_loads_as_a_checkpoint(debug_run, tmp_path):
    last = ckpt.load(debug_run / "checkpoints" / "last.pt")
    save_weights(last, tmp_path / "a.safetensors")
    loaded = ckpt.load(tmp_path / "a.safetensors")
    # the record whole (its mean bit for bit), the recipe as JSON holds it
    assert loaded["record"] == last["record"]
    assert loaded["config"] == json.loads(json.dumps(last["config"]))
    assert loaded["state_dict"].keys() == last["state_dict"].keys()
    for key, value in last["state_dict"].items():
        assert loaded["state_dict"][key].dtype == value.dtype
        assert torch.equal(loaded["state_dict"][key], value), key
    save_weights(loaded, tmp_path / "b.safetensors")  # the same bytes again
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    # the safetensors library reads it without this package, and no pickle is involved
    from safetensors.torch import load_file

    assert torch.equal(load_file(tmp_path / "a.safetensors")["fc8.weight"],
                       last["state_dict"]["fc8.weight"])  # fmt: skip


def test_export_command_writes_each_format_and_eval_and_predict_take_safetensors(
    debug_run, store, tmp_path
):
    for kind in ("onnx", "pt2", "safetensors"):
        out = tmp_path / f"net.{kind}"
        done = cli("export", "--checkpoint", debug_run, "--format", kind, "--out", out, "--check")
        assert done.returncode == 0, done.stderr
        report = json.loads((tmp_path / f"net.{kind}.check.json").read_text())
        if kind == "safetensors":
            assert report["weights_identical"] is True
        else:
            assert max(report["max_abs_logit_difference"].values()) < 1e-4
    a = cli("eval", "--checkpoint", tmp_path / "net.safetensors", "--data", store, "--json",
            "--out", tmp_path / "e1")  # fmt: skip
    b = cli("eval", "--checkpoint", debug_run / "checkpoints" / "last.pt", "--data", store,
            "--json", "--out", tmp_path / "e2")  # fmt: skip
    assert a.returncode == 0, a.stderr
    assert json.loads(a.stdout)["top1_error"] == json.loads(b.stdout)["top1_error"]
    # features and --init-from take it too
    done = cli("features", "--checkpoint", tmp_path / "net.safetensors", "--data", store,
               "--layers", "fc7", "--limit", "8", "--out", tmp_path / "f")  # fmt: skip
    assert done.returncode == 0, done.stderr
    done = cli("train", "--config", DEBUG, "--set", f"data.store={store}", "--set",
               "run.epochs=1", "--set", "data.train_images=16", "--init-from",
               tmp_path / "net.safetensors", "--out", tmp_path / "tuned")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "init_from" in json.loads((tmp_path / "tuned" / "version.json").read_text())


def test_export_refuses_bad_input_with_one_line(debug_run, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    cases = [
        (["--format", "tflite", "--out", tmp_path / "x"], "invalid choice: 'tflite'"),
        (["--format", "onnx", "--out", tmp_path / "missing" / "x.onnx"], "does not exist"),
        (["--format", "onnx", "--out", tmp_path], "names a folder"),
    ]
    for extra, message in cases:
        done = cli("export", "--checkpoint", debug_run, *extra)
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    done = cli("export", "--checkpoint", bad, "--format", "onnx", "--out", tmp_path / "y.onnx")
    assert done.returncode == 2 and "not a readable checkpoint" in done.stderr
    assert not (tmp_path / "y.onnx").exists() and not (tmp_path / "missing").exists()
