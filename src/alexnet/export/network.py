"""The network as the exporters see it: the same weights and arithmetic, written with
operators that every runtime has.

On CPU the package runs ReLU, LRN and pooling as one fused kernel, conv1's weight gradient
through space-to-depth and the towers as grouped or split convolutions, whichever is
faster. An exported file cannot call those kernels, so for export the block runs as its
three layers (ReLU, the LRN, max-pooling), conv1 as a padded convolution and the towers as
one grouped convolution each (ONNX's `group`). The LRN either stays the package's operator
(`torch.ops.alexnet.lrn`, which the ONNX exporter translates, alexnet.export.onnx) or, for
programs that must load without this package, runs as torch operations.
"""

from __future__ import annotations

import contextlib
import copy

from alexnet.models.alexnet import AlexNet
from alexnet.nn.conv import CeilConv2d, TowerConv2d
from alexnet.nn.lrn import LocalResponseNorm


@contextlib.contextmanager
def exportable(model: AlexNet, lrn: str = "kernel"):
    """A copy of `model` in evaluation mode with the fused block off, conv1 direct, the
    towers grouped and every LRN on `lrn` ("kernel": the package's operator; "torch": torch
    operations). The model itself is left as it was."""
    copied = copy.deepcopy(model).eval()
    if hasattr(copied, "fuse"):
        copied.fuse = False
    for module in copied.modules():
        if isinstance(module, LocalResponseNorm):
            module.backend = lrn
        if isinstance(module, TowerConv2d):
            module.mode = "grouped"
        if isinstance(module, CeilConv2d):
            module.weight_grad = "direct"
    yield copied
