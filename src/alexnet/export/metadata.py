"""What an exported file says about its network and its input, so that a runtime can make
that input from a photo: the network's record (alexnet.models.record) as strings.

Two entries, in ONNX's metadata_props and in a pt2 file's extra files:

- "alexnet": JSON of the record: `network` (name, config), `classes` (ids, names),
  `preprocessing`, `provenance`, `schema`, and `producer` (this package and its version);
- "alexnet.mean": the mean, base64 of little-endian float32 of shape
  `preprocessing.mean_shape` ((H, W, C) for a mean image, (C,) for a mean color).

The preprocessing, step by step (what alexnet.data.preprocess does): decode, turn upright by
EXIF, resize the shorter side to `image_size` with `filter` (Pillow's, antialiased; `draft`:
libjpeg's reduced decoding of large JPEGs first, to no less than twice that side), keep the
central square; upscale it bilinearly to `view_size`; take the `crop_size` center (or the
ten crops); subtract the mean (a mean image is upscaled to `view_size` the same way and
cropped alike; `mean_per_channel` is its average color, for runtimes that subtract one);
multiply each channel by `scale` (null: 1). The input is (N, C, crop_size, crop_size)
float32, `layout` NCHW.

Files written before the typed record (their "alexnet" JSON has no `schema`, the mean under
"alexnet.mean_image") are read too.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import torch

from alexnet.core.errors import UserError
from alexnet.core.version import __version__
from alexnet.models.record import ModelRecord, from_v1


def describe(record: ModelRecord) -> dict:
    """The record as plain JSON values, with who wrote it and the input's layout."""
    values, _ = record.to_json()
    values["producer"] = f"alexnet {__version__}"
    values["preprocessing"]["layout"] = "NCHW float32"
    return values


def as_strings(record: ModelRecord) -> dict[str, str]:
    """The metadata as the string pairs ONNX's metadata_props and pt2's extra files hold."""
    strings = {"alexnet": json.dumps(describe(record), sort_keys=True)}
    mean = record.preprocessing.mean
    if mean is not None:
        array = mean.float().numpy().astype("<f4")
        strings["alexnet.mean"] = base64.b64encode(array.tobytes()).decode("ascii")
    return strings


def _array(text: str, shape: list[int]) -> torch.Tensor:
    array = np.frombuffer(base64.b64decode(text), dtype="<f4").reshape(shape)
    return torch.from_numpy(array.copy())


def read(meta: dict[str, str], path: str) -> ModelRecord:
    """The record `as_strings` wrote into a file's metadata; ValueError if there is none."""
    try:
        described = json.loads(meta["alexnet"])
        if "schema" not in described:
            return _read_v1(described, meta)
        values = {k: v for k, v in described.items() if k != "producer"}
        values["preprocessing"] = {
            k: v for k, v in values["preprocessing"].items() if k != "layout"
        }
        shape = values["preprocessing"]["mean_shape"]
        mean = None if shape is None else _array(meta["alexnet.mean"], shape)
        return ModelRecord.from_json(values, mean)
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(
            f"{path} has no alexnet metadata ({error}): export it with `alexnet export`"
        ) from None


def _read_v1(described: dict, meta: dict[str, str]) -> ModelRecord:
    """The metadata of files written before the typed record."""
    pre = described["preprocessing"]
    shape = pre["mean_image_shape"]
    data = {
        "class_ids": described["class_ids"],
        "class_names": described["class_names"],
        **{k: pre[k] for k in ("channels", "image_size", "view_size", "crop_size", "scale")},
        "mean_image": None if shape is None else _array(meta["alexnet.mean_image"], shape),
    }
    return from_v1(described["model"], data)
