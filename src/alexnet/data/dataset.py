"""A store as a PyTorch dataset: the paper's training views and test views, in batches.

Batches are made whole by `__getitems__` (one compiled pass per image, no per-sample
collate). Augmentation is a function of (seed, epoch, image index) only, so results do not
depend on the sampler, the number of workers or ranks, or where a resumed run restarted.
Call `set_epoch` each epoch, as with DistributedSampler.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from alexnet.core.errors import UserError
from alexnet.data.augment import (
    CROP_SIZE,
    DEFAULT_LIGHTING,
    LIGHTING,
    LIGHTING_STD,
    PCALighting,
    RandomCrop,
    center_crop,
    render,
    sample_rng,
    ten_crops,
    upscale,
)
from alexnet.data.render import RENDER, View, ViewBatch
from alexnet.data.store import Store

VIEWS = ("random", "center", "ten-crop")
NORMALIZE = ("none", "std")


class StoreDataset(torch.utils.data.Dataset):
    """Views of one split of a store.

    views: "random" (training: random crop + reflection + PCA lighting), "center", or
    "ten-crop" (items are (10, C, h, w): corners, center, and their reflections).
    lighting: one of augment.LIGHTING, or "none". Mean subtraction uses the training split's
    mean image. normalize: "none" keeps the paper's 0-255 scale (raw values minus the mean);
    "std" then divides each channel by its standard deviation over the training pixels, as
    torchvision's Normalize does (unit-variance inputs, which He initialization assumes).
    Small stored images (Fashion-MNIST, CIFAR-10, Tiny ImageNet) are upscaled
    bilinearly to the store's view size (256) before cropping. render: "cpu" renders the
    views here; "device" returns each batch as a `ViewBatch` (stored pixels and drawn
    numbers) for a `DeviceRenderer` to render on the training device ("random" and "center"
    views). `view` describes the views to both.
    flip: whether random views are reflected left to right half the time (the paper's).
    """

    def __init__(
        self,
        store: Store | str | Path,
        split: str = "train",
        views: str = "random",
        crop_size: int = CROP_SIZE,
        lighting: str = DEFAULT_LIGHTING,
        lighting_std: float = LIGHTING_STD,
        subtract_mean: bool = True,
        normalize: str = "none",
        seed: int = 0,
        channels_last: bool = False,
        render: str = "cpu",
        flip: bool = True,
    ) -> None:
        self.store = store if isinstance(store, Store) else Store(store)
        if views not in VIEWS:
            raise UserError(f"views must be one of {', '.join(VIEWS)}, got {views!r}")
        if lighting != "none" and lighting not in LIGHTING:
            raise UserError(f"lighting must be one of {', '.join(LIGHTING)} or none")
        view_size = self.store.view_size
        if not 0 < crop_size <= view_size:
            raise UserError(f"crop size {crop_size} must be at most the view size {view_size}")
        self.split = self.store.split(split)
        self.views, self.seed, self.epoch = views, seed, 0
        self.label_map: np.ndarray | None = None  # relabel()
        if render not in RENDER:
            raise UserError(f"render must be one of {', '.join(RENDER)}, got {render!r}")
        if render == "device" and views == "ten-crop":
            raise UserError("ten-crop views are rendered by the loader, not on the device")
        self.render = render
        self.random_crop = RandomCrop(crop_size, view_size, flip=flip)
        stats = self.store.stats
        self.lighting = (
            PCALighting(stats.eigenvalues, stats.eigenvectors, lighting_std, lighting)
            if lighting != "none" and views == "random"
            else None
        )
        # the mean image at the view size: upscaling is linear, so the upscaled mean is the
        # mean of the upscaled images
        mean = upscale(stats.mean_image[None], view_size)[0].astype(np.float32)
        if not subtract_mean:
            mean = np.zeros_like(mean)
        if normalize not in NORMALIZE:
            raise UserError(f"normalize must be one of {', '.join(NORMALIZE)}, got {normalize!r}")
        self.normalize = normalize
        scale = None
        if normalize == "std":
            std = np.sqrt(np.diag(stats.covariance)).astype(np.float32)
            scale = torch.from_numpy(1.0 / np.maximum(std, 1e-6))
        self.view = View(crop_size, view_size, mean, scale, channels_last)

    @property
    def crop_size(self) -> int:
        return self.view.crop_size

    def normalized_as(self, mean: np.ndarray, scale: torch.Tensor | None) -> None:
        """Subtract `mean` and multiply by `scale` instead of this store's own statistics:
        a checkpoint's, so that evaluation prepares inputs exactly as its training did."""
        self.view = replace(self.view, mean=mean, scale=scale)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def relabel(self, label_map: np.ndarray | None) -> None:
        """Report label_map[store label] instead of the store's label (a class subset chosen
        by id: `data.loader.class_map`); None: the store's labels."""
        self.label_map = None if label_map is None else np.asarray(label_map, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int):
        images, labels = self.__getitems__([index])
        return images[0], labels[0]

    def __getitems__(self, indices) -> tuple[torch.Tensor | ViewBatch, torch.Tensor]:
        self.split.check()  # the store's files are the ones opened (StoreChanged if not)
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"index out of range for a split of {len(self)} images")
        stored = self.split.labels[indices]
        mapped = self.label_map
        labels = torch.from_numpy(stored if mapped is None else mapped[stored])
        rows, view_size = indices, self.store.view_size
        if self.views == "random":
            crops, shifts = [], []
            for index in indices:
                rng = sample_rng(self.seed, self.epoch, int(index))
                crops.append(self.random_crop.draw(rng))
                if self.lighting is not None:
                    shifts.append(self.lighting.draw(rng))
            shift = self.lighting.shift(np.array(shifts)) if self.lighting is not None else None
            out = self._render(rows, crops, shift)
        elif self.views == "center":
            crops = [center_crop(self.crop_size, view_size)] * len(indices)
            out = self._render(rows, crops, None)
        else:
            out = self._render(
                np.repeat(rows, 10), ten_crops(self.crop_size, view_size) * len(rows)
            )
            out = out.reshape(len(indices), 10, *out.shape[1:])
        self.split.check()  # and were so while the pixels were read
        if self.render == "device":
            return out, labels
        images = torch.from_numpy(out)
        view = self.view
        if view.scale is not None:  # per channel; the channel axis is last in memory or third
            images.mul_(view.scale if view.channels_last else view.scale[:, None, None])
        if view.channels_last:
            # (n, h, w, C) in memory, presented as the NCHW tensor it is
            images = images.movedim(-1, -3)
        return images, labels

    def _render(self, rows, crops, shift=None) -> np.ndarray | ViewBatch:
        if self.render == "device":
            channels = self.split.images.shape[3]
            return ViewBatch(
                torch.from_numpy(np.ascontiguousarray(self.split.images[rows])),
                torch.tensor([c.top for c in crops], dtype=torch.int64),
                torch.tensor([c.left for c in crops], dtype=torch.int64),
                torch.tensor([c.flip for c in crops], dtype=torch.bool),
                torch.zeros(len(crops), channels)
                if shift is None
                else torch.from_numpy(np.asarray(shift, dtype=np.float32)),
            )
        return render(
            self.split.images,
            rows,
            crops,
            self.view.crop_size,
            self.view.mean,
            shift,
            self.view.channels_last,
            self.view.view_size,
        )
