"""A prepared dataset on disk: uint8 pixels a training process memory-maps.

    DIR/manifest.json       written last: a store without it is unfinished
    DIR/stats.npz           the training split's mean image and RGB PCA (stats.PixelStats)
    DIR/quarantine.jsonl    files that were skipped, each with its reason
    DIR/<split>/images.u8   raw (N, H, W, C) uint8, C order; shape in the manifest
    DIR/<split>/labels.npy  (N,) int64 class indices
    DIR/<split>/files.txt   where each image came from, one line per image

Raw bytes rather than .npy so that prepare can append images and, after a kill, cut the
file back to the last checkpoint; numpy maps it with the shape the manifest records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from alexnet.data.stats import PixelStats

FORMAT = "alexnet-store"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WORK = ".partial"  # prepare's working files; removed when the store is complete


class StoreError(ValueError):
    """The directory is not a usable store; the message says what to do."""


@dataclass
class StoreSplit:
    name: str
    images: np.ndarray  # (N, H, W, C) uint8, memory-mapped
    labels: np.ndarray  # (N,) int64
    root: Path

    def __len__(self) -> int:
        return len(self.labels)

    @cached_property
    def files(self) -> list[str]:
        return (self.root / "files.txt").read_text(encoding="utf-8").splitlines()


class Store:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        manifest = self.root / MANIFEST
        if not manifest.is_file():
            if (self.root / WORK).is_dir():
                raise StoreError(
                    f"{self.root} is an unfinished store (prepare was interrupted); run the "
                    "same `alexnet data prepare` command again to finish it"
                )
            raise StoreError(
                f"{self.root} is not a prepared store (no {MANIFEST}); "
                "make one with `alexnet data prepare`"
            )
        self.manifest = json.loads(manifest.read_text(encoding="utf-8"))
        if self.manifest.get("format") != FORMAT:
            raise StoreError(f"{manifest} is not an {FORMAT} manifest")
        if self.manifest.get("version") != FORMAT_VERSION:
            raise StoreError(
                f"{self.root} has store format {self.manifest.get('version')}, this version "
                f"reads {FORMAT_VERSION}; prepare it again"
            )
        self._splits: dict[str, StoreSplit] = {}

    @property
    def class_ids(self) -> list[str]:
        return self.manifest["class_ids"]

    @property
    def class_names(self) -> list[str]:
        return self.manifest["class_names"]

    @property
    def num_classes(self) -> int:
        return len(self.class_ids)

    @property
    def image_size(self) -> int:
        """Side of the stored images (256, or a small dataset's native size)."""
        return self.manifest["image_size"]

    @property
    def view_size(self) -> int:
        """Side the images are rescaled to before cropping: 256 in the paper."""
        return self.manifest["view_size"]

    @property
    def channels(self) -> int:
        return self.manifest["channels"]

    @property
    def split_names(self) -> list[str]:
        return list(self.manifest["splits"])

    def split(self, name: str) -> StoreSplit:
        if name not in self.manifest["splits"]:
            raise StoreError(f"{self.root} has no {name!r} split; it has {self.split_names}")
        if name not in self._splits:
            info = self.manifest["splits"][name]
            count, side = info["images"], self.image_size
            folder = self.root / name
            shape = (count, side, side, self.channels)
            images = (
                np.memmap(folder / "images.u8", dtype=np.uint8, mode="r", shape=shape)
                if count
                else np.zeros(shape, np.uint8)
            )
            labels = np.load(folder / "labels.npy")
            if len(labels) != count:
                raise StoreError(f"{folder}: {len(labels)} labels for {count} images")
            self._splits[name] = StoreSplit(name, images, labels, folder)
        return self._splits[name]

    @cached_property
    def stats(self) -> PixelStats:
        return PixelStats.load(self.root / "stats.npz")

    def quarantine(self) -> list[dict]:
        path = self.root / "quarantine.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def open_store(root: str | Path) -> Store:
    return Store(root)
