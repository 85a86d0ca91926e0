"""Top-1 and top-5 error (section 2) over the softmax of one network or an ensemble, averaged
over ten crops when asked (section 4.1), and what `alexnet eval` reports with them.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from alexnet.core.runtime import autocast, input_dtype, widened


@torch.inference_mode()
def softmax_batches(
    models: list[nn.Module],
    loader,
    device: torch.device,
    precision: str = "fp32",
    channels_last: bool = False,
    progress=None,
    render=None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(probabilities, labels) per batch, on the CPU in float32.

    A batch of shape (B, 10, C, h, w) is ten crops per image: the softmax is averaged over
    them. Several models: their (crop-averaged) softmax outputs are averaged. render: a
    `DeviceRenderer` for loaders that send `ViewBatch`es (data.render=device).
    """
    for model in models:
        model.eval()
    for images, labels in loader:
        if render is not None:
            images = render(images)
        crops = images.dim() == 5
        batch = images.shape[0]
        if crops:
            images = images.flatten(0, 1)
        images = images.to(device, input_dtype(precision), non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        total = None
        for model in models:
            # ten crops go through the network a batch of images' worth at a time: the
            # memory of a center-crop batch, not ten times it (1,280 crops of 224 pixels
            # took 12 GB of activations on a CPU)
            with autocast(device, precision):
                logits = torch.cat([model(part) for part in images.split(batch)])
            probs = torch.softmax(widened(logits), dim=1).float()
            if crops:
                probs = probs.view(batch, -1, probs.shape[1]).mean(dim=1)
            total = probs if total is None else total + probs
        if progress is not None:
            progress.update(batch)
        yield (total / len(models)).cpu(), labels


def topk_correct(probs: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[int, int]:
    """How many labels are among the k most probable classes, for each k."""
    largest = min(max(ks), probs.shape[1])
    top = probs.topk(largest, dim=1).indices
    hits = top == labels[:, None]
    return {k: int(hits[:, : min(k, largest)].any(dim=1).sum()) for k in ks}


def summarize(probs: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict:
    """Top-1/top-5 error, per-class error and the most confused pairs, from all predictions."""
    probs = torch.as_tensor(probs)
    labels_t = torch.as_tensor(labels)
    counts = topk_correct(probs, labels_t)
    n = len(labels)
    predicted = probs.argmax(dim=1).numpy()
    classes = probs.shape[1]
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = []
    for c in range(classes):
        total = int(confusion[c].sum())
        wrong = total - int(confusion[c, c])
        per_class.append(
            {
                "class": c,
                "name": class_names[c] if c < len(class_names) else str(c),
                "images": total,
                "top1_error": wrong / total if total else None,
            }
        )
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    pairs = []
    for flat in np.argsort(off, axis=None)[::-1][:10]:
        true, guess = np.unravel_index(flat, off.shape)
        if off[true, guess] == 0:
            break
        pairs.append(
            {
                "true": per_class[true]["name"],
                "predicted": per_class[guess]["name"],
                "images": int(off[true, guess]),
            }
        )
    return {
        "images": n,
        "top1_error": 1 - counts[1] / n,
        "top5_error": 1 - counts[5] / n,
        "per_class": per_class,
        "most_confused": pairs,
        "confusion": confusion,
    }
