"""The network as an ONNX file that ONNX Runtime runs with any batch size.

Three parts of the paper's network are not plain ONNX, and each comes out exactly:
- the LRN: ONNX's `LRN` divides its alpha by the window size, and it normalizes across all
  of a layer's maps, while the paper's alpha is undivided and its normalization stays
  within each tower (section 3.5). The package's LRN operator becomes `Split` into the
  towers, `LRN` with alpha x size on each, and `Concat` (`lrn_to_onnx`);
- conv1's released edge arithmetic (224 -> 55: the image is padded on the right and bottom
  before an 11x11 stride-4 convolution) becomes a `Conv` with asymmetric `pads`;
- the fused ReLU-LRN-pool kernel is not exported: the block is its three layers
  (alexnet.export.network).

The preprocessing is in the file's metadata (`metadata_props`: "alexnet", a JSON record,
and "alexnet.mean_image", the mean image; alexnet.export.metadata).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from alexnet.export import metadata
from alexnet.export.network import exportable
from alexnet.models import checkpoint as ckpt

OPSET = 18


def lrn_to_onnx(x, size, coefficient, beta, k, groups, backend):
    """ONNX for torch.ops.alexnet.lrn: per tower, ONNX's LRN with alpha = coefficient x
    size (ONNX divides alpha by size; the package's coefficient multiplies the sum)."""
    from onnxscript import opset18 as op

    def normalize(part):
        return op.LRN(part, alpha=float(coefficient) * size, beta=float(beta), bias=float(k),
                      size=int(size))  # fmt: skip

    if groups == 1:
        return normalize(x)
    towers = op.Split(x, axis=1, num_outputs=int(groups))
    return op.Concat(*[normalize(t) for t in towers], axis=1)


def example_input(checkpoint: dict, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """Random network inputs at the checkpoint's crop size, scaled like its real inputs."""
    pre = checkpoint["record"].preprocessing
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, pre.channels, pre.crop_size, pre.crop_size, generator=generator)
    return x if pre.scale is not None else x * 60.0  # 0-255 minus the mean


def onnx_program(module: torch.nn.Module, example: torch.Tensor, inputs=None, outputs=None):
    """torch's ONNX exporter on `module` (already in exportable form), with a dynamic batch
    dimension and the package's LRN operator translated by `lrn_to_onnx`. The exporter's
    notes on operators this network does not use (torchvision's, when it is absent) and its
    deprecation warnings are kept out of the user's terminal."""
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.onnx.export(
                module,
                (example,),
                dynamo=True,
                input_names=inputs,
                output_names=outputs,
                dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                custom_translation_table={torch.ops.alexnet.lrn.default: lrn_to_onnx},
                opset_version=OPSET,
                verbose=False,
            )
    finally:
        quiet.setLevel(level)


def export_onnx(checkpoint: dict, path: str | Path) -> Path:
    """Write the checkpoint's network to `path` (atomically) and return the path."""
    path = Path(path)
    model = ckpt.load_model(checkpoint)
    with exportable(model) as network:
        program = onnx_program(network, example_input(checkpoint), ["image"], ["logits"])
    for key, value in metadata.as_strings(checkpoint["record"]).items():
        program.model.metadata_props[key] = value
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        program.save(str(temporary))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def check_onnx(path: str | Path) -> None:
    """onnx.checker's full check (types and shapes inferred)."""
    import onnx

    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def session(path: str | Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_parity(
    checkpoint: dict, path: str | Path, batches=(1, 8), images: int = 64, seed: int = 0
) -> dict:
    """The package's logits against ONNX Runtime's on the same random inputs: the largest
    difference at each batch size, and whether the top-5 classes agree on `images` inputs."""
    model = ckpt.load_model(checkpoint)
    runtime = session(path)
    name = runtime.get_inputs()[0].name
    report = {"max_abs_logit_difference": {}, "images": images}
    for batch in batches:
        x = example_input(checkpoint, batch, seed=seed + batch)
        with torch.no_grad():
            ours = model(x).numpy()
        theirs = runtime.run(None, {name: x.numpy()})[0]
        report["max_abs_logit_difference"][str(batch)] = float(np.abs(ours - theirs).max())
        report.setdefault("max_abs_logit", {})[str(batch)] = float(np.abs(ours).max())
    x = example_input(checkpoint, images, seed=seed)
    with torch.no_grad():
        ours = model(x)
    theirs = torch.from_numpy(runtime.run(None, {name: x.numpy()})[0])
    top = min(5, ours.shape[1])
    same = (ours.topk(top).indices == theirs.topk(top).indices).all(dim=1)
    report["top5_identical"] = int(same.sum())
    return report
