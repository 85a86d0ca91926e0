"""What a view is (`View`), and the paper's views rendered on the training device
(`data.render: device`, section 4.1's augmentation done by the GPU).

With it, the loader sends each image as it is stored (uint8: 256x256x3 for ImageNet, 28x28x1
for Fashion-MNIST) together with the numbers drawn for its view (crop position, reflection,
lighting shift), and torch operations on the GPU do the cropping, reflecting, upscaling,
mean subtraction and lighting that `augment.render` does on the CPU. The CPU then only
draws random numbers and gathers bytes, and a batch crosses to the GPU in a third of the
bytes or less (a 256x256x3 uint8 image against a 3x224x224 float32 view).

The drawing is shared with the CPU path (`StoreDataset`, keyed by seed, epoch and image), and
the arithmetic is the same float32 operations in the same order, so the two paths give the
same pixels (tests compare them on the CPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from alexnet.data.augment import bilinear_taps

#: Where views are rendered: "cpu" (the loader renders them) or "device" (the loader sends
#: `ViewBatch`es and a `DeviceRenderer` renders them where the network runs).
RENDER = ("cpu", "device")


@dataclass(frozen=True)
class View:
    """What a rendered view is, given to both the loader (`StoreDataset`) and the device
    renderer: crop_size x crop_size pixels cut from an image upscaled to view_size, minus
    `mean` (view_size, view_size, C) float32, times `scale` (C,) per channel or None, laid
    out NCHW or channels_last."""

    crop_size: int
    view_size: int
    mean: np.ndarray
    scale: torch.Tensor | None
    channels_last: bool


class ViewBatch(NamedTuple):
    """A batch of views not yet rendered: what the loader sends with `data.render: device`."""

    pixels: torch.Tensor  # (n, H, W, C) uint8, the stored images
    top: torch.Tensor  # (n,) int64, the crop's first row in the view-sized image
    left: torch.Tensor  # (n,) int64, its first column
    flip: torch.Tensor  # (n,) bool, reflected left to right
    shift: torch.Tensor  # (n, C) float32, PCA lighting added to every pixel

    def to(self, device: torch.device, non_blocking: bool = False) -> ViewBatch:
        return ViewBatch(*(t.to(device, non_blocking=non_blocking) for t in self))


class DeviceRenderer:
    """Renders `ViewBatch`es of one `StoreDataset` on `device`, as its CPU path would.

    A source smaller than the view size is upscaled bilinearly (half-pixel centers, edges
    clamped: `augment.bilinear_taps`), separably, first along rows of the source and then
    between two of those rows, as `augment._render_upscaled` does.
    """

    def __init__(self, view: View, source_size: int, device: torch.device) -> None:
        self.view_size, self.crop_size = view.view_size, view.crop_size
        self.channels_last, self.device = view.channels_last, device
        self.mean = torch.as_tensor(np.ascontiguousarray(view.mean, np.float32), device=device)
        self.scale = None if view.scale is None else view.scale.to(device)
        self.steps = torch.arange(view.crop_size, device=device)
        self.taps = None
        if source_size != self.view_size:
            low, high, weight = bilinear_taps(source_size, self.view_size)
            self.taps = tuple(torch.as_tensor(t, device=device) for t in (low, high, weight))

    @classmethod
    def of(cls, dataset, device: torch.device) -> DeviceRenderer | None:
        """The renderer of a `StoreDataset` whose views are rendered on the device (None
        for one whose loader renders them)."""
        if dataset.render != "device":
            return None
        return cls(dataset.view, dataset.split.images.shape[1], device)

    def __call__(self, batch: ViewBatch) -> torch.Tensor:
        """float32 (n, C, h, w) views on the device (channels_last in memory if asked)."""
        batch = batch.to(self.device, non_blocking=True)
        rows = batch.top[:, None] + self.steps  # (n, h) rows of the view-sized image
        ahead = batch.left[:, None] + self.steps
        behind = batch.left[:, None] + (self.crop_size - 1 - self.steps)
        cols = torch.where(batch.flip[:, None], behind, ahead)  # (n, w): reflected in place
        if self.taps is None:
            image = batch.pixels[_images(batch.pixels), rows[:, :, None], cols[:, None, :]].float()
        else:
            image = self._upscaled(batch.pixels, rows, cols)
        out = image.sub_(self.mean[rows[:, :, None], cols[:, None, :]])
        out = out.add_(batch.shift[:, None, None, :]).permute(0, 3, 1, 2)  # NCHW, NHWC memory
        if self.scale is not None:
            out = out.mul_(self.scale[:, None, None])
        if self.channels_last:
            return out
        # not .contiguous(): with one channel the NHWC strides already count as contiguous,
        # and oneDNN would then pick its channels_last kernels (other rounding) for conv1
        return out.clone(memory_format=torch.contiguous_format)

    def _upscaled(self, pixels: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor):
        low, high, weight = self.taps
        n = pixels.shape[0]
        # across[i, sy, x, c]: source row sy resampled to the crop's columns
        wx = weight[cols][:, None, :, None]
        image = pixels.float()
        source_rows = torch.arange(pixels.shape[1], device=self.device)[None, :, None]
        first = image[_images(pixels), source_rows, low[cols][:, None, :]]
        second = image[_images(pixels), source_rows, high[cols][:, None, :]]
        across = (1 - wx) * first + wx * second
        # then each crop row between the two resampled source rows around it
        wy = weight[rows][:, :, None, None]
        index = torch.arange(n, device=self.device)[:, None]
        return (1 - wy) * across[index, low[rows]] + wy * across[index, high[rows]]


def _images(pixels: torch.Tensor) -> torch.Tensor:
    """(n, 1, 1) image numbers for advanced indexing of a batch's first axis."""
    return torch.arange(pixels.shape[0], device=pixels.device)[:, None, None]
