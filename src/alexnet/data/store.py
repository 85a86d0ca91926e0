"""A prepared dataset on disk: uint8 pixels a training process memory-maps.

    DIR/manifest.json       written last: a store without it is unfinished
    DIR/stats.npz           the training split's mean image and RGB PCA (stats.PixelStats)
    DIR/quarantine.jsonl    files that were skipped, each with its reason
    DIR/<split>/images.u8   raw (N, H, W, C) uint8, C order; shape in the manifest
    DIR/<split>/labels.npy  (N,) int64 class indices
    DIR/<split>/files.txt   where each image came from, one line per image

Raw bytes rather than .npy so that prepare can append images and, after a kill, cut the
file back to the last checkpoint; numpy maps it with the shape the manifest records.

The manifest records each split file's SHA-256 (`alexnet data verify` recomputes them). A
split refuses to open when a file's size is not the manifest's, and a split in use notices a
file changed under it (size, modification time, inode: `StoreSplit.check`, which the views
call before and after reading each batch) and raises StoreChanged rather than hand on
pixels that are not the prepared ones.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from alexnet.core.errors import UserError
from alexnet.data.stats import PixelStats

FORMAT = "alexnet-store"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WORK = ".partial"  # prepare's working files; removed when the store is complete


class StoreError(UserError):
    """The directory is not a usable store; the message says what to do."""


class StoreChanged(StoreError):
    """A store file changed while a split of it was in use."""


#: The files of a split whose bytes the manifest's checksums cover.
SPLIT_FILES = ("images.u8", "labels.npy")


def file_sha256(path: Path, block: int = 16 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def _identity(path: Path) -> tuple[int, int, int, int]:
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_dev


@dataclass
class StoreSplit:
    name: str
    images: np.ndarray  # (N, H, W, C) uint8, memory-mapped
    labels: np.ndarray  # (N,) int64
    root: Path
    seen: dict = field(default_factory=dict)  # path -> its identity when it was opened

    def __len__(self) -> int:
        return len(self.labels)

    def check(self) -> None:
        """Raise StoreChanged if a file of the split is not the one opened (a truncation,
        a rewrite, a replacement): a few stat calls."""
        for path, seen in self.seen.items():
            try:
                now = _identity(path)
            except OSError as error:
                now = (f"gone: {error.strerror}",)
            if now != seen:
                what = (f"{seen[0]:,} bytes, now {now[0]:,}" if isinstance(now[0], int)
                        else now[0])  # fmt: skip
                raise StoreChanged(
                    f"{path} changed while the run was reading it ({what}; modified "
                    f"{'at another time' if now[:1] == seen[:1] else 'in size'}): the store "
                    f"{self.root.parent} no longer holds the images it was prepared with. "
                    "Stopped before using them; restore or prepare the store again (`alexnet "
                    "data verify` checks it), then continue with --resume"
                )

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
            expected = count * side * side * self.channels
            size = (folder / "images.u8").stat().st_size if count else 0
            if size != expected:
                raise StoreError(
                    f"{folder / 'images.u8'} is {size:,} bytes; the manifest's {count:,} "
                    f"images of {side}x{side}x{self.channels} take {expected:,}: the store was "
                    "cut short or changed. Prepare it again (`alexnet data verify` says which "
                    "files differ)"
                )
            images = (
                np.memmap(folder / "images.u8", dtype=np.uint8, mode="r", shape=shape)
                if count
                else np.zeros(shape, np.uint8)
            )
            labels = np.load(folder / "labels.npy")
            if len(labels) != count:
                raise StoreError(f"{folder}: {len(labels)} labels for {count} images")
            seen = {folder / f: _identity(folder / f) for f in SPLIT_FILES
                    if (folder / f).exists()}  # fmt: skip
            self._splits[name] = StoreSplit(name, images, labels, folder, seen)
        return self._splits[name]

    @cached_property
    def stats(self) -> PixelStats:
        return PixelStats.load(self.root / "stats.npz")

    def verify(self, progress=None) -> dict:
        """Each split file's SHA-256 against the manifest's: {"checked": [...], "differ":
        [...], "missing": [...]}; stores prepared before checksums were kept have none to
        check ("unchecked")."""
        kept = self.manifest.get("checksums")
        if not kept:
            return {"checked": [], "differ": [], "missing": [], "unchecked": True}
        report = {"checked": [], "differ": [], "missing": [], "unchecked": False}
        for name, sha in sorted(kept.items()):
            path = self.root / name
            if not path.is_file():
                report["missing"].append(name)
                continue
            (report["checked"] if file_sha256(path) == sha else report["differ"]).append(name)
            if progress is not None:
                progress(name)
        return report

    def quarantine(self) -> list[dict]:
        path = self.root / "quarantine.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def open_store(root: str | Path) -> Store:
    return Store(root)
