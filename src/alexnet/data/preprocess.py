"""How a photograph becomes a trained network's input: one value, one function.

`Preprocessing` holds every fact of the way a network's training images were made (the
channels, the stored size and its resampling, the view size, the crop, what is subtracted
and what each channel is multiplied by), and turns a photo into the tensor the network
takes exactly as training did (section 2 and 4.1 of the paper):

1. decode to RGB (or gray), upright as its EXIF tag says, the shorter side resized to the
   stored size with the store's filter (and its draft decoding of large JPEGs), the
   central square kept (`alexnet.data.images`);
2. upscale bilinearly to the view size, for stores of small images (Fashion-MNIST, CIFAR,
   Tiny ImageNet);
3. the center patch, or the ten patches (four corners, center, their reflections);
4. minus the mean (the training set's mean image, upscaled alike, or a mean per channel),
   times the scale of each channel (None: the paper's 0-255 inputs).

Everything that prepares a photo for a network (predict, explain, features, neighbors,
serve, eval's ensembles' checks, a user's `record.transform`) goes through `decode` and
`views` here, so they give the same tensors to the bit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from alexnet.core.errors import UserError
from alexnet.data.augment import center_crop, render, ten_crops, upscale
from alexnet.data.images import DEFAULT_FILTER, FILTERS, PHOTO_FORMATS, decode

VIEWS = ("center", "ten-crop")


def same_mean(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    """Two means (or none) equal, bit for bit."""
    return (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))


@dataclass(frozen=True, eq=False)
class Preprocessing:
    """A network's input, from a photo. Frozen: a record travels with its weights."""

    channels: int  # 3 (RGB) or 1 (gray)
    image_size: int  # the stored square's side: shorter side resized to it, center kept
    view_size: int  # the stored square upscaled bilinearly to this before cropping
    crop_size: int  # the side of the center view and of the ten views
    # what is subtracted, 0-255 values: the training set's mean image (image_size,
    # image_size, channels) float32, or a mean per channel (channels,); None: nothing
    mean: torch.Tensor | None
    # each channel multiplied by this after the subtraction (the inverse of its standard
    # deviation, torchvision's Normalize); None: the paper's 0-255 inputs
    scale: tuple[float, ...] | None
    filter: str = DEFAULT_FILTER  # the resampling to the stored size (images.FILTERS)
    draft: bool = True  # libjpeg's reduced decoding of large JPEGs before the filter

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise UserError(f"channels must be 1 or 3, got {self.channels}")
        if not 0 < self.crop_size <= self.view_size or self.image_size < 1:
            raise UserError(
                f"sizes must satisfy 0 < crop {self.crop_size} <= view {self.view_size} and a "
                f"stored size of 1 or more ({self.image_size})"
            )
        if self.filter not in FILTERS:
            raise UserError(f"filter must be one of {', '.join(FILTERS)}, got {self.filter!r}")
        if self.mean is not None:
            shapes = ((self.channels,), (self.image_size, self.image_size, self.channels))
            if tuple(self.mean.shape) not in shapes:
                raise UserError(
                    f"the mean must be per channel {shapes[0]} or an image {shapes[1]}, "
                    f"got {tuple(self.mean.shape)}"
                )
            object.__setattr__(self, "mean", self.mean.detach().to("cpu", torch.float32))
        if self.scale is not None:
            if len(self.scale) != self.channels:
                raise UserError(f"scale needs {self.channels} values, got {len(self.scale)}")
            object.__setattr__(self, "scale", tuple(float(v) for v in self.scale))

    def __eq__(self, other) -> bool:
        if not isinstance(other, Preprocessing):
            return NotImplemented
        return same_mean(self.mean, other.mean) and all(
            getattr(self, k) == getattr(other, k)
            for k in ("channels", "image_size", "view_size", "crop_size", "scale", "filter",
                      "draft")
        )  # fmt: skip

    __hash__ = None  # a tensor inside: compared by value, never a dict key

    def replace(self, **changes) -> Preprocessing:
        return replace(self, **changes)

    # -- the two steps -------------------------------------------------------------------

    def decode(
        self, image, *, formats: tuple[str, ...] | None = PHOTO_FORMATS, exif: bool = True
    ) -> np.ndarray:
        """A photo -> (image_size, image_size, channels) uint8: encoded bytes, a file's
        path, a Pillow image, or a uint8 array already at the stored size (a store's
        image). Raises BadImage (alexnet.data.images) for what cannot be a photo."""
        options = {"channels": self.channels, "filter": self.filter, "draft": self.draft,
                   "exif": exif}  # fmt: skip
        if isinstance(image, np.ndarray):
            shape = (self.image_size, self.image_size, self.channels)
            if image.dtype != np.uint8 or image.shape != shape:
                raise UserError(f"an array must be uint8 of shape {shape}, got "
                                 f"{image.dtype} {image.shape}")  # fmt: skip
            return image
        if isinstance(image, (str, Path)):
            image = Path(image).read_bytes()
        if isinstance(image, (bytes, bytearray, memoryview)):
            image = bytes(image)
        if isinstance(image, (bytes, Image.Image)):
            return decode(image, self.image_size, formats=formats, **options)
        raise TypeError(
            f"a photo is bytes, a path, a PIL image or a uint8 array, not {type(image).__name__}"
        )

    def views(self, pixels: np.ndarray, views: str = "center") -> torch.Tensor:
        """(image_size, image_size, C) uint8 -> (V, C, crop, crop) float32: V = 1 for the
        center view, 10 for the ten crops (torchvision's TenCrop order)."""
        if views not in VIEWS:
            raise UserError(f"views must be one of {', '.join(VIEWS)}, got {views!r}")
        crops = (
            [center_crop(self.crop_size, self.view_size)]
            if views == "center"
            else ten_crops(self.crop_size, self.view_size)
        )
        mean, scale = self.at_view_size
        out = render(pixels[None], np.zeros(len(crops), np.int64), crops, self.crop_size, mean,
                     view_size=self.view_size)  # fmt: skip
        images = torch.from_numpy(out)
        if scale is not None:
            images.mul_(scale[:, None, None])
        return images

    def center_picture(self, pixels: np.ndarray) -> np.ndarray:
        """The center view as a picture, (crop, crop, C) uint8: what the network saw, before
        the mean and the scale (Grad-CAM's overlays are drawn on it)."""
        crop = render(pixels[None], np.zeros(1, np.int64),
                      [center_crop(self.crop_size, self.view_size)], self.crop_size,
                      view_size=self.view_size)[0]  # fmt: skip
        return np.clip(crop.transpose(1, 2, 0), 0, 255).astype(np.uint8)

    def __call__(self, image, views: str = "center") -> torch.Tensor:
        """A photo -> (C, crop, crop) for the center view, (10, C, crop, crop) for
        views="ten-crop": what `alexnet predict` feeds the network."""
        out = self.views(self.decode(image), views)
        return out[0] if views == "center" else out

    # -- for datasets of stored images ---------------------------------------------------

    @cached_property
    def at_view_size(self) -> tuple[np.ndarray, torch.Tensor | None]:
        """The mean at the view size (view, view, C) float32 and the scale as a tensor:
        what a store's dataset subtracts and multiplies (StoreDataset.normalized_as).
        Made once: upscaling the mean image costs as much as an image."""
        return self.normalization(self.view_size)

    def normalization(self, view_size: int) -> tuple[np.ndarray, torch.Tensor | None]:
        """The mean at `view_size` (a store's, which may differ from the record's) and the
        scale as a float32 tensor."""
        shape = (view_size, view_size, self.channels)
        if self.mean is None:
            mean = np.zeros(shape, np.float32)
        elif self.mean.ndim == 1:
            mean = np.broadcast_to(self.mean.numpy(), shape).astype(np.float32)
        else:
            # upscaling is linear, so the upscaled mean is the mean of the upscaled images
            mean = self.mean.numpy().astype(np.float64)
            if mean.shape[0] != view_size:
                mean = upscale(mean[None], view_size)[0]
            mean = mean.astype(np.float32)
        scale = None if self.scale is None else torch.tensor(self.scale, dtype=torch.float32)
        return mean, scale

    @property
    def mean_per_channel(self) -> tuple[float, ...] | None:
        """The mean color (what runtimes that subtract a color, not an image, use)."""
        if self.mean is None:
            return None
        mean = self.mean.double()
        return tuple(float(v) for v in (mean if mean.ndim == 1 else mean.mean(dim=(0, 1))))
