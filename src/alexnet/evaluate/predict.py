"""The five most probable classes of a photograph, as the paper's Figure 4 shows them.

The photograph is prepared as the network's training data was: decoded to RGB (or gray),
its shorter side rescaled and the central square taken (alexnet.data.images), upscaled to the
view size for small-image datasets, then the center patch or the ten patches, minus the
training set's mean image (kept in the checkpoint, so the store is not needed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from alexnet.core.runtime import resolve_device
from alexnet.data.augment import center_crop, render, ten_crops
from alexnet.data.images import BadImage, decode
from alexnet.evaluate.eval import normalization
from alexnet.evaluate.metrics import softmax_batches
from alexnet.models import checkpoint as ckpt


def views_of(pixels: np.ndarray, record: dict, views: str) -> torch.Tensor:
    """(H, W, C) uint8 at the stored size -> (1, C, h, w) or (1, 10, C, h, w) float32."""
    view_size, crop_size = record["view_size"], record["crop_size"]
    crops = (
        [center_crop(crop_size, view_size)]
        if views == "center"
        else ten_crops(crop_size, view_size)
    )
    mean, scale = normalization(record, view_size)
    out = render(pixels[None], np.zeros(len(crops), np.int64), crops, crop_size, mean,
                 view_size=view_size)  # fmt: skip
    images = torch.from_numpy(out)
    if scale is not None:
        images.mul_(scale[:, None, None])
    return images if views == "center" else images[None]


def predict(
    paths: list[str],
    checkpoint: str,
    views: str = "center",
    top: int = 5,
    device: str = "auto",
    precision: str = "fp32",
) -> list[dict]:
    if views not in ("center", "ten-crop"):
        raise ValueError(f"views must be center or ten-crop, got {views!r}")
    loaded = ckpt.load(checkpoint)
    record = loaded["data"]
    model = ckpt.load_model(loaded)
    dev = resolve_device(device)
    model.to(dev)
    names = record["class_names"]
    results = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as error:
            raise ValueError(f"cannot read {path}: {error.strerror}") from None
        try:
            pixels = decode(data, record["image_size"], channels=record["channels"])
        except BadImage as error:
            raise ValueError(f"{path}: {error}") from None
        batch = views_of(pixels, record, views)
        loader = [(batch, torch.zeros(1, dtype=torch.int64))]
        probs, _ = next(softmax_batches([model], loader, dev, precision))
        values, classes = probs[0].topk(min(top, probs.shape[1]))
        results.append(
            {
                "image": str(path),
                "views": views,
                "top": [
                    {
                        "class": int(c),
                        "id": record["class_ids"][int(c)],
                        "name": names[int(c)],
                        "probability": float(v),
                    }
                    for v, c in zip(values, classes, strict=True)
                ],
            }
        )
    return results
