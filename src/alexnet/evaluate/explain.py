"""Where in a photo the network looked: Grad-CAM (Selvaraju et al., 2017).

For a class c and a layer's feature maps A^k (k = 1..K, each h x w), the weight of map k is
the mean over its positions of the gradient of the class score (the logit, before the
softmax) with respect to it,

    alpha_k^c = (1 / hw) sum_ij  d y^c / d A^k_ij,

and the class's map is ReLU(sum_k alpha_k^c A^k), upsampled bilinearly to the input.

A convolutional layer's feature maps are its rectified outputs: "conv5" means what act5
gives (the maps the next layer reads); any module of the network can be named instead
("pool5", "norm2", ...). The network's ReLUs work in place and, on CPU, ReLU, LRN and
pooling run as one fused kernel: neither keeps a layer's maps, so Grad-CAM runs on a copy
with the ReLUs out of place and the block unfused (the same arithmetic).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from alexnet.core.errors import UserError
from alexnet.models.alexnet import layer_output


def feature_layer(model: nn.Module, name: str) -> nn.Module:
    """The module whose output are `name`'s feature maps (convN: actN, where it has one):
    the names `alexnet features` takes (alexnet.models.alexnet.layer_output)."""
    return layer_output(model, name)


def explainable(model: nn.Module) -> nn.Module:
    """A copy in evaluation mode whose layers keep their outputs: ReLUs out of place, the
    fused block off."""
    copied = copy.deepcopy(model).eval()
    if hasattr(copied, "fuse"):
        copied.fuse = False
    for module in copied.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return copied


def grad_cam(
    model: nn.Module, images: torch.Tensor, layer: nn.Module, classes: torch.Tensor
) -> torch.Tensor:
    """Grad-CAM maps (N, len(classes[0]), H, W) of the classes (N, k) for each image
    (N, C, H, W), from the output of `layer`, a module of `model` (which must not run it in
    place or fused: `explainable`). Not normalized: the values are the layer's units."""
    kept = {}
    handle = layer.register_forward_hook(lambda module, args, out: kept.__setitem__("maps", out))
    try:
        with torch.enable_grad():
            logits = model(images)
            maps = kept["maps"]
            cams = []
            for j in range(classes.shape[1]):
                # images are independent in evaluation mode: one backward pass for the batch
                score = logits.gather(1, classes[:, j : j + 1]).sum()
                (grads,) = torch.autograd.grad(score, maps, retain_graph=True)
                weights = grads.mean(dim=(2, 3), keepdim=True)  # alpha_k^c
                cams.append(F.relu((weights * maps).sum(dim=1)))
    finally:
        handle.remove()
    cams = torch.stack(cams, dim=1).detach()  # (N, k, h, w)
    return F.interpolate(cams, size=images.shape[-2:], mode="bilinear", align_corners=False)


def explain(model: nn.Module, images: torch.Tensor, layer: str = "conv5", top: int = 3):
    """The `top` classes of each image, their probabilities, and their Grad-CAM maps."""
    net = explainable(model)
    target = feature_layer(net, layer)
    with torch.no_grad():
        probs = torch.softmax(net(images), dim=1)
    values, classes = probs.topk(min(top, probs.shape[1]), dim=1)
    return classes, values, grad_cam(net, images, target, classes)


def explain_files(
    files: list[str], checkpoint: str, out, layer: str = "conv5", top: int = 3,
    device: str = "cpu",
) -> list[dict]:  # fmt: skip
    """Grad-CAM of each photo's top classes (center crop), as it is prepared for predict:
    OUT/NAME-gradcam.png (the crop and an overlay per class) and OUT/NAME-gradcam.npy (the
    raw maps, (top, crop, crop) float32). Returns a record per photo."""
    from pathlib import Path

    import numpy as np

    from alexnet.core.runtime import resolve_device
    from alexnet.data.images import BadImage
    from alexnet.models import checkpoint as ckpt

    loaded = ckpt.load(checkpoint)
    record = loaded["record"]
    pre = record.preprocessing
    model = ckpt.load_model(loaded).to(resolve_device(device))
    net = explainable(model)
    target = feature_layer(net, layer)  # a name it does not have fails before any work
    out = Path(out)
    results = []
    for path in files:
        try:
            pixels = pre.decode(Path(path))
        except (OSError, BadImage) as error:
            raise UserError(f"{path}: {getattr(error, 'strerror', None) or error}") from None
        x = pre.views(pixels, "center").to(next(model.parameters()).device)
        with torch.no_grad():
            probs = torch.softmax(net(x), dim=1)
        values, classes = probs.topk(min(top, probs.shape[1]), dim=1)
        maps = grad_cam(net, x, target, classes)[0].cpu().numpy().astype(np.float32)
        crop = pre.center_picture(pixels)
        stem = out / f"{Path(path).stem}-gradcam"
        np.save(stem.with_suffix(".npy"), maps)
        names = [record.classes.names[int(c)] for c in classes[0]]
        _overlay(crop, maps, names, values[0].tolist(), stem.with_suffix(".png"))
        results.append({
            "image": str(path), "layer": layer,
            "classes": [{"class": int(c), "name": n, "probability": float(p)}
                        for c, n, p in zip(classes[0], names, values[0], strict=True)],
            "png": str(stem.with_suffix(".png")), "maps": str(stem.with_suffix(".npy")),
        })  # fmt: skip
    return results


def _overlay(crop, maps, names, probabilities, path) -> None:
    """The crop ((h, w, C) uint8), then each class's map over it (scaled to its own
    maximum)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gray = crop.shape[-1] == 1
    shown = crop[..., 0] if gray else crop
    figure, axes = plt.subplots(1, len(maps) + 1, figsize=(3 * (len(maps) + 1), 3.3))
    axes[0].imshow(shown, cmap="gray" if gray else None)
    axes[0].set_title("input (center crop)", fontsize=9)
    for ax, cam, name, p in zip(axes[1:], maps, names, probabilities, strict=True):
        ax.imshow(shown, cmap="gray" if gray else None)
        ax.imshow(cam / max(float(cam.max()), 1e-12), cmap="jet", alpha=0.45, vmin=0, vmax=1)
        ax.set_title(f"{name[:28]} {100 * p:.1f}%", fontsize=9)
    for ax in axes:
        ax.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
