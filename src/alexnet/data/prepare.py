"""`alexnet data prepare`: a source turned into a store, resumably, on all the cores given.

Images are decoded in chunks by a process pool, in order, and appended to each split's
files. Every few seconds a checkpoint records how many chunks are done, with the exact
statistics and the quarantine so far, written atomically. A killed run is resumed by running
the same command: the appended files are cut back to the checkpoint and work continues from
there. The manifest is written last, so a store that has one is complete.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from alexnet.core.errors import UserError
from alexnet.core.files import atomic_write, atomic_write_json
from alexnet.core.version import __version__
from alexnet.data import images as image_codec
from alexnet.data.listing import Listing, Reader
from alexnet.data.sources import list_source
from alexnet.data.stats import PixelStats, PixelSums
from alexnet.data.store import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    SPLIT_FILES,
    WORK,
    Store,
    file_sha256,
)

log = logging.getLogger(__name__)

VIEW_SIZE = 256  # section 2: the shorter side is rescaled to 256
CHUNK = 128  # images per task: large enough to amortise pickling, small enough to resume
CHECKPOINT_SECONDS = 10.0


class PrepareError(UserError):
    pass


@dataclass(frozen=True)
class Settings:
    """Everything that changes the pixels; a resumed run must use the same."""

    source: str
    src: str | None
    size: int | None  # None: the source's native size
    filter: str = image_codec.DEFAULT_FILTER
    draft: bool = True
    max_pixels: int = image_codec.DEFAULT_MAX_PIXELS

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Report:
    store: Path
    counts: dict[str, int] = field(default_factory=dict)
    quarantined: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    already_done: bool = False


class NoProgress:
    """A progress bar that shows nothing, for `progress=` in tests and benchmarks."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def update(self, n: int) -> None:
        pass

    def set_postfix(self, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


# ---------------------------------------------------------------------------------------
# Work done in the pool

_worker: dict = {}


def _init_worker(settings: Settings, side: int, channels: int, stats: bool) -> None:
    _worker.update(reader=Reader(), settings=settings, side=side, channels=channels, stats=stats)


def _decode_chunk(task: tuple[int, list[tuple]]):
    """Decode one chunk. Returns (chunk, pixels of the good images, their positions in the
    chunk, [(position, reason)] for the bad ones, their PixelSums or None)."""
    chunk, locators = task
    settings, side, channels = _worker["settings"], _worker["side"], _worker["channels"]
    good, positions, bad = [], [], []
    for position, locator in enumerate(locators):
        try:
            data = _worker["reader"].read(locator)
        except OSError as error:
            bad.append((position, f"cannot read: {error}"))
            continue
        try:
            pixels = image_codec.decode(
                data,
                side,
                channels=channels,
                filter=settings.filter,
                max_pixels=settings.max_pixels,
                draft=settings.draft,
            )
        except image_codec.BadImage as error:
            bad.append((position, str(error)))
            continue
        good.append(pixels)
        positions.append(position)
    stacked = np.stack(good) if good else np.zeros((0, side, side, channels), np.uint8)
    return chunk, stacked, positions, bad, _sums(stacked)


def _sums(pixels: np.ndarray) -> PixelSums | None:
    """The chunk's statistics, computed where it was decoded so the writer stays light."""
    if not _worker["stats"]:
        return None
    sums = PixelSums(pixels.shape[1:])
    sums.add(pixels)
    return sums


def _array_chunk(array: np.ndarray, task: tuple[int, list[tuple]]):
    chunk, locators = task
    pixels = np.ascontiguousarray(array[[loc[1] for loc in locators]])
    side, settings = _worker["side"], _worker["settings"]
    if pixels.shape[1] != side:  # --size other than the native one
        pixels = np.stack([image_codec.resize_pixels(p, side, settings.filter) for p in pixels])
    return chunk, pixels, list(range(len(locators))), [], _sums(pixels)


# ---------------------------------------------------------------------------------------
# One split


class _SplitWriter:
    """Appends a split's images, labels and listing positions; checkpoints its progress."""

    def __init__(self, out: Path, split: str, shape: tuple[int, int, int], stats: bool) -> None:
        self.folder = out / split
        self.folder.mkdir(parents=True, exist_ok=True)
        self.progress_path = out / WORK / f"{split}.progress.npz"
        self.row_bytes = int(np.prod(shape))
        self.shape = shape
        self.paths = {
            "images": self.folder / "images.u8.partial",
            "labels": self.folder / "labels.i64.partial",
            "index": self.folder / "index.i64.partial",
        }
        self.chunks_done, self.rows = 0, 0
        self.quarantine: list[dict] = []
        self.sums = PixelSums(shape) if stats else None
        if self.progress_path.is_file():
            with np.load(self.progress_path) as state:
                self.chunks_done, self.rows = int(state["chunks_done"]), int(state["rows"])
                self.quarantine = json.loads(str(state["quarantine"]))
                if self.sums is not None:
                    self.sums = PixelSums.from_state(state)
        # Cut the appended files back to the checkpoint: rows after it are redone.
        sizes = {
            "images": self.rows * self.row_bytes,
            "labels": self.rows * 8,
            "index": self.rows * 8,
        }
        self.files = {}
        for key, path in self.paths.items():
            handle = open(path, "r+b" if path.exists() else "w+b")  # noqa: SIM115
            handle.truncate(sizes[key])
            handle.seek(sizes[key])
            self.files[key] = handle

    def append(self, pixels, labels, index, sums: PixelSums | None) -> None:
        self.files["images"].write(pixels.data)
        self.files["labels"].write(labels.astype("<i8").tobytes())
        self.files["index"].write(index.astype("<i8").tobytes())
        self.rows += len(pixels)
        if self.sums is not None:
            self.sums.merge(sums)

    def checkpoint(self) -> None:
        for handle in self.files.values():
            handle.flush()
            os.fsync(handle.fileno())
        state = {
            "chunks_done": np.int64(self.chunks_done),
            "rows": np.int64(self.rows),
            "quarantine": np.array(json.dumps(self.quarantine)),
        }
        if self.sums is not None:
            state.update(self.sums.state())
        atomic_write(self.progress_path, lambda f: np.savez(f, **state))

    def close(self) -> None:
        for handle in self.files.values():
            handle.close()

    def finish(self, names: list[str], done_path: Path) -> None:
        """Turn the partial files into the split's final files. Every step can be redone, so
        a kill anywhere in here is resumed by running it again."""
        self.checkpoint()
        self.close()
        labels = np.fromfile(self.paths["labels"], dtype="<i8")
        index = np.fromfile(self.paths["index"], dtype="<i8")
        atomic_write(self.folder / "labels.npy", lambda f: np.save(f, labels.astype(np.int64)))
        atomic_write(
            self.folder / "files.txt",
            lambda f: f.write("".join(f"{names[i]}\n" for i in index)),
            mode="w",
        )
        atomic_write_json(done_path, {"images": len(labels), "quarantine": self.quarantine})
        _finish_rename(self.folder)


def _finish_rename(folder: Path) -> None:
    partial = folder / "images.u8.partial"
    if partial.exists():
        os.replace(partial, folder / "images.u8")
    for name in ("labels.i64.partial", "index.i64.partial"):
        (folder / name).unlink(missing_ok=True)


def _run_split(
    listing: Listing,
    split: str,
    writer: _SplitWriter,
    settings: Settings,
    side: int,
    workers: int,
    strict: bool,
    progress,
) -> None:
    entries = listing.splits[split]
    total = len(entries)
    chunks = [
        (c, entries.locators[start : start + CHUNK])
        for c, start in enumerate(range(0, total, CHUNK))
    ]
    todo = chunks[writer.chunks_done :]
    bar = progress(
        total=total,
        initial=min(total, writer.chunks_done * CHUNK),
        desc=f"{split:>5}",
        unit="img",
        smoothing=0.05,
    )
    labels = np.asarray(entries.labels, dtype=np.int64)
    worker_args = (settings, side, listing.channels, writer.sums is not None)
    pool = None
    if split in listing.arrays:
        _init_worker(*worker_args)
        array = listing.arrays[split]
        results = (_array_chunk(array, task) for task in todo)
    elif workers <= 1:
        _init_worker(*worker_args)
        results = (_decode_chunk(task) for task in todo)
    else:
        context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
        pool = context.Pool(workers, _init_worker, worker_args)
        results = pool.imap(_decode_chunk, todo, chunksize=1)
    last = time.monotonic()
    try:
        for chunk, pixels, positions, bad, sums in results:
            start = chunk * CHUNK
            if bad and strict:
                position, reason = bad[0]
                raise PrepareError(
                    f"{entries.names[start + position]}: {reason} (--strict stops at the first "
                    "bad file; without it bad files are skipped and listed)"
                )
            index = np.asarray(positions, dtype=np.int64) + start
            writer.append(pixels, labels[index], index, sums)
            for position, reason in bad:
                writer.quarantine.append(
                    {"split": split, "file": entries.names[start + position], "reason": reason}
                )
                log.warning("skipped %s: %s", entries.names[start + position], reason)
            writer.chunks_done = chunk + 1
            if bad:
                bar.set_postfix(quarantined=len(writer.quarantine))
            bar.update(len(positions) + len(bad))
            if time.monotonic() - last > CHECKPOINT_SECONDS:
                writer.checkpoint()
                last = time.monotonic()
        writer.checkpoint()
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()


# ---------------------------------------------------------------------------------------
# The whole store


def prepare(
    settings: Settings,
    out: str | Path,
    *,
    workers: int | None = None,
    strict: bool = False,
    overwrite: bool = False,
    download_to: Path | None = None,
    progress=None,
    command: str | None = None,
) -> Report:
    """Prepare `settings.source` into `out`. Safe to interrupt and to run again."""
    out = Path(out)
    started = time.monotonic()
    workers = workers or default_workers()
    fingerprint = settings.to_dict()
    work = out / WORK
    if (out / MANIFEST).is_file():
        existing = Store(out)
        if existing.manifest["settings"] == fingerprint and not overwrite:
            counts = {k: v["images"] for k, v in existing.manifest["splits"].items()}
            return Report(out, counts, existing.quarantine(), 0.0, already_done=True)
        if not overwrite:
            raise PrepareError(
                f"{out} already holds a store prepared with other settings "
                f"({existing.manifest['settings']}); choose another --out or pass --overwrite"
            )
    if overwrite and out.exists():
        _clear_store(out)
    if work.is_dir():
        previous = json.loads((work / "settings.json").read_text())
        if previous != fingerprint:
            raise PrepareError(
                f"{out} holds an unfinished store prepared with other settings ({previous}); "
                "run with those settings to finish it, or pass --overwrite to start again"
            )
    elif out.exists() and any(out.iterdir()):
        raise PrepareError(f"{out} exists and is not a store; choose an empty or new folder")

    listing = list_source(
        settings.source, Path(settings.src) if settings.src else None, download_to
    )
    return prepare_listing(listing, settings, out, workers, strict, progress, command, started)


def prepare_listing(
    listing: Listing,
    settings: Settings,
    out: Path,
    workers: int = 1,
    strict: bool = False,
    progress=None,
    command: str | None = None,
    started: float | None = None,
) -> Report:
    """Write a listing into `out` (prepare's second half; tests and benchmarks call it with
    listings of arrays)."""
    if progress is None:
        from alexnet.core.progress import bar as progress
    out, work = Path(out), Path(out) / WORK
    started = time.monotonic() if started is None else started
    fingerprint = settings.to_dict()
    if "train" not in listing.splits or not len(listing.splits["train"]):
        raise PrepareError(f"{settings.src}: the source has no training images")
    side = settings.size or listing.native_size or VIEW_SIZE
    shape = (side, side, listing.channels)
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_json(work / "settings.json", fingerprint)

    counts, quarantine = {}, []
    for split in listing.splits:
        done_path = work / f"{split}.done.json"
        if not done_path.is_file():
            writer = _SplitWriter(out, split, shape, stats=split == "train")
            try:
                _run_split(listing, split, writer, settings, side, workers, strict, progress)
            except BaseException:
                writer.close()
                raise
            if split == "train":
                if writer.sums.images == 0:
                    raise PrepareError("every training image was quarantined; see the log above")
                stats = writer.sums.finish()
                atomic_write(out / "stats.npz", lambda f, s=stats: np.savez(f, **s.__dict__))
            writer.finish(listing.splits[split].names, done_path)
        _finish_rename(out / split)
        done = json.loads(done_path.read_text())
        counts[split] = done["images"]
        quarantine += done["quarantine"]
    stats = PixelStats.load(out / "stats.npz")

    atomic_write(
        out / "quarantine.jsonl",
        lambda f: f.write("".join(json.dumps(q) + "\n" for q in quarantine)),
        mode="w",
    )
    seconds = time.monotonic() - started
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "source": settings.source,
        "settings": fingerprint,
        "image_size": side,
        "view_size": max(VIEW_SIZE, side) if settings.size is None else side,
        "channels": listing.channels,
        "native": settings.size is None and listing.native_size is not None,
        "class_ids": listing.class_ids,
        "class_names": listing.class_names,
        "splits": {
            split: {
                "images": counts[split],
                "listed": len(listing.splits[split]),
                "quarantined": sum(q["split"] == split for q in quarantine),
            }
            for split in listing.splits
        },
        "quarantined": len(quarantine),
        # what `alexnet data verify` and a run's resume check the files against
        "checksums": {
            f"{split}/{name}": file_sha256(out / split / name)
            for split in listing.splits
            for name in SPLIT_FILES
            if (out / split / name).is_file()
        },
        "stats": {
            "file": "stats.npz",
            "channel_mean": stats.channel_mean.tolist(),
            "eigenvalues": stats.eigenvalues.tolist(),
            "eigenvectors": stats.eigenvectors.tolist(),
        },
        "provenance": {
            **listing.provenance,
            "alexnet_version": __version__,
            "command": command,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": round(seconds, 1),
            "workers": workers,
        },
    }
    atomic_write_json(out / MANIFEST, manifest)
    shutil.rmtree(work)
    return Report(out, counts, quarantine, seconds)


def _clear_store(out: Path) -> None:
    """Remove a store's own files (never anything else a user put there)."""
    if (out / MANIFEST).is_file():
        (out / MANIFEST).unlink()  # first: the half-removed store no longer looks complete
    for name in ("stats.npz", "quarantine.jsonl"):
        (out / name).unlink(missing_ok=True)
    for child in list(out.iterdir()) if out.is_dir() else []:
        ours = child.name == WORK or (child / "labels.npy").exists()
        if child.is_dir() and (ours or any(p.suffix == ".partial" for p in child.iterdir())):
            shutil.rmtree(child)
