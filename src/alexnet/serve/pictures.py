"""Pictures for the page: a photo's Grad-CAM overlay, thumbnails of the nearest training
images, PNGs as data URIs, and the warm-up's sample photo."""

from __future__ import annotations

import base64
import io

import numpy as np


def sample_png(side: int, channels: int) -> bytes:
    """A PNG of a gray gradient, `side` square, for the warm-up."""
    from PIL import Image

    ramp = np.linspace(0, 255, side * side).reshape(side, side).astype(np.uint8)
    image = Image.fromarray(ramp if channels == 1 else np.stack([ramp] * 3, -1))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


_JET = None


def overlay(picture: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The class map (scaled to its maximum) in the jet colors over the picture, uint8 RGB."""
    global _JET
    if _JET is None:
        from matplotlib import colormaps

        _JET = (colormaps["jet"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.float32)
    rgb = np.repeat(picture, 3, axis=2) if picture.shape[2] == 1 else picture
    level = np.clip(cam / max(float(cam.max()), 1e-12) * 255, 0, 255).astype(np.uint8)
    blended = (1 - alpha) * rgb.astype(np.float32) + alpha * _JET[level]
    return np.clip(blended, 0, 255).astype(np.uint8)


def thumbnail(picture: np.ndarray, side: int = 96) -> np.ndarray:
    from PIL import Image

    image = Image.fromarray(picture[..., 0] if picture.shape[2] == 1 else picture)
    if max(image.size) > side:
        image.thumbnail((side, side), Image.Resampling.BILINEAR)
    return np.asarray(image)


def png_data_uri(pixels: np.ndarray) -> str:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")
