"""Classify photos with an exported network in ONNX Runtime, the preprocessing read from the
file's own metadata: no alexnet package, only onnxruntime, NumPy and Pillow.

    alexnet export --checkpoint runs/NAME --format onnx --out model.onnx
    python examples/onnx_classify.py model.onnx photo.jpg [photo.png ...] [--top 5]

The file's metadata holds the network's record (JSON under "alexnet") and its mean
("alexnet.mean": base64 of little-endian float32). The steps below are those of
alexnet.data.preprocess, for photos in RGB or gray (the package also takes palettes,
alpha, CMYK and 16-bit images): turn upright by EXIF, the shorter side to `image_size`,
the central square, upscaled bilinearly to `view_size` when that is larger, the central
`crop_size` square, minus the mean, times the scale.
"""

from __future__ import annotations

import argparse
import base64
import json

import numpy as np
import onnxruntime
from PIL import Image, ImageOps

FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
           "lanczos": Image.Resampling.LANCZOS, "box": Image.Resampling.BOX}  # fmt: skip


def read_metadata(session: onnxruntime.InferenceSession) -> tuple[dict, np.ndarray | None]:
    """The record (JSON) and the mean (an image (H, W, C) or a color (C,)) the file holds."""
    meta = session.get_modelmeta().custom_metadata_map
    record = json.loads(meta["alexnet"])
    mean = None
    if "alexnet.mean" in meta:
        shape = record["preprocessing"]["mean_shape"]
        mean = np.frombuffer(base64.b64decode(meta["alexnet.mean"]), "<f4").reshape(shape)
    return record, mean


def upscale(pixels: np.ndarray, size: int) -> np.ndarray:
    """(h, w, C) -> (size, size, C), bilinear with half-pixel centers and clamped edges
    (torch's interpolate with align_corners=False)."""

    def taps(n: int):
        position = np.maximum((np.arange(size) + 0.5) * (n / size) - 0.5, 0.0)
        low = np.floor(position).astype(int)
        return low, np.minimum(low + 1, n - 1), position - low

    low, high, w = taps(pixels.shape[0])
    rows = pixels[low] * (1 - w)[:, None, None] + pixels[high] * w[:, None, None]
    low, high, w = taps(pixels.shape[1])
    return rows[:, low] * (1 - w)[None, :, None] + rows[:, high] * w[None, :, None]


def prepare(path: str, p: dict, mean: np.ndarray | None) -> np.ndarray:
    """A photo -> (C, crop, crop) float32, the network's input."""
    size, view, crop = p["image_size"], p["view_size"], p["crop_size"]
    image = Image.open(path)
    if p["draft"] and image.format == "JPEG":
        image.draft(image.mode, (2 * size, 2 * size))  # libjpeg's reduced decoding
    image = ImageOps.exif_transpose(image)
    image = image.convert("RGB" if p["channels"] == 3 else "L")
    width, height = image.size
    scale = size / min(width, height)
    shape = (max(size, round(width * scale)), max(size, round(height * scale)))
    if shape != image.size:
        image = image.resize(shape, FILTERS[p["filter"]])
    left, top = (shape[0] - size) // 2, (shape[1] - size) // 2
    image = image.crop((left, top, left + size, top + size))
    pixels = np.asarray(image, dtype=np.float64).reshape(size, size, p["channels"])
    if view > size:  # the small datasets' images, upscaled to the view the network takes
        pixels = upscale(pixels, view)
    if mean is not None and mean.ndim == 3:  # a mean image, brought to the view's size
        mean = mean.astype(np.float64)
        pixels = pixels - (mean if mean.shape[0] == view else upscale(mean, view))
    margin = (view - crop) // 2
    pixels = pixels[margin : margin + crop, margin : margin + crop]
    if mean is not None and mean.ndim == 1:  # a mean color
        pixels = pixels - mean.astype(np.float64)
    if p["scale"] is not None:
        pixels = pixels * np.asarray(p["scale"], dtype=np.float64)
    return pixels.transpose(2, 0, 1).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="the .onnx file `alexnet export` wrote")
    parser.add_argument("photos", nargs="+")
    parser.add_argument("--top", type=int, default=5)
    args = parser.parse_args()
    session = onnxruntime.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    record, mean = read_metadata(session)
    names = record["classes"]["names"]
    batch = np.stack([prepare(photo, record["preprocessing"], mean) for photo in args.photos])
    (logits,) = session.run(None, {session.get_inputs()[0].name: batch})
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    for photo, row in zip(args.photos, probabilities, strict=True):
        best = np.argsort(-row)[: args.top]
        print(photo + ": " + ", ".join(f"{names[i]} {row[i]:.1%}" for i in best))


if __name__ == "__main__":
    main()
