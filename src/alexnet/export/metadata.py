"""What an exported file says about its input, so that a runtime can make it from a photo.

The package's own preparation (alexnet.evaluate.predict): decode to the stored size
(`image_size`, shorter side resized and the center cropped), upscale bilinearly to
`view_size`, take the `crop_size` center (or the ten crops), subtract the mean image
(`mean_image`: 0-255 values, HxWxC at the stored size, upscaled to `view_size` the same
way, then cropped alike) and multiply each channel by `scale` (when `normalize` is "std";
1 otherwise). The input is (N, C, crop_size, crop_size) float32.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import torch

from alexnet.core.version import __version__


def describe(checkpoint: dict) -> dict:
    """The network and its input, as plain values (the mean image separately, as bytes)."""
    data = checkpoint.get("data") or {}
    mean = data.get("mean_image")
    scale = data.get("scale")
    return {
        "producer": f"alexnet {__version__}",
        "model": checkpoint["model"],
        "class_ids": list(data.get("class_ids") or []),
        "class_names": list(data.get("class_names") or []),
        "preprocessing": {
            "layout": "NCHW float32",
            "channels": data.get("channels"),
            "image_size": data.get("image_size"),
            "view_size": data.get("view_size"),
            "crop_size": data.get("crop_size"),
            "normalize": data.get("normalize", "none"),
            "scale": None if scale is None else [float(v) for v in torch.as_tensor(scale)],
            # per channel, for runtimes that subtract a mean color, not an image
            "mean_per_channel": None
            if mean is None
            else [float(v) for v in torch.as_tensor(mean).double().mean(dim=(0, 1))],
            "mean_image_shape": None if mean is None else list(torch.as_tensor(mean).shape),
        },
    }


def mean_image_text(checkpoint: dict) -> str | None:
    """The mean image as base64 of little-endian float32 (HxWxC), for text-only metadata."""
    mean = (checkpoint.get("data") or {}).get("mean_image")
    if mean is None:
        return None
    array = torch.as_tensor(mean).float().numpy().astype("<f4")
    return base64.b64encode(array.tobytes()).decode("ascii")


def read_mean_image(text: str, shape: list[int]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").reshape(shape)


def as_strings(checkpoint: dict) -> dict[str, str]:
    """The metadata as the string pairs ONNX's metadata_props and pt2's extra files hold."""
    strings = {"alexnet": json.dumps(describe(checkpoint), sort_keys=True)}
    mean = mean_image_text(checkpoint)
    if mean is not None:
        strings["alexnet.mean_image"] = mean
    return strings


def read(meta: dict[str, str], path: str) -> dict:
    """The checkpoint-shaped record (model, data) that `as_strings` wrote into a file's
    metadata: what a runtime needs to prepare photos for it."""
    try:
        described = json.loads(meta["alexnet"])
        pre = described["preprocessing"]
        shape = pre["mean_image_shape"]
        mean = None if shape is None else read_mean_image(meta["alexnet.mean_image"], shape)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"{path} has no alexnet metadata ({error}): export it with `alexnet export`"
        ) from None
    return {
        "model": described["model"],
        "data": {
            "class_ids": described["class_ids"],
            "class_names": described["class_names"],
            "channels": pre["channels"],
            "image_size": pre["image_size"],
            "view_size": pre["view_size"],
            "crop_size": pre["crop_size"],
            "normalize": pre["normalize"],
            "scale": None if pre["scale"] is None else torch.tensor(pre["scale"]),
            "mean_image": None if mean is None else torch.from_numpy(mean.copy()),
        },
    }
