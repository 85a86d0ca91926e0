"""The five most probable classes of a photograph, as the paper's Figure 4 shows them.

The photograph is prepared as the network's training data was, by the record's
preprocessing (alexnet.data.preprocess): decoded to RGB (or gray), its shorter side rescaled
with the store's filter and the central square taken, upscaled to the view size for
small-image datasets, then the center patch or the ten patches, minus the training set's
mean (kept in the checkpoint, so the store is not needed), times the scale.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from alexnet.core.errors import UserError
from alexnet.core.progress import bar as progress_bar
from alexnet.core.runtime import (
    InferenceNetwork,
    keep_freed_memory,
    resolve_device,
    resolve_precision,
)
from alexnet.data.images import BadImage
from alexnet.data.preprocess import Preprocessing
from alexnet.evaluate.metrics import softmax_batches
from alexnet.models import checkpoint as ckpt
from alexnet.models.record import ModelRecord

#: What a folder given to predict is searched for (recursively), by file name ending.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
#: A file with one of these endings lists paths to predict, one per line.
LIST_SUFFIXES = (".txt", ".lst")


def list_photos(paths: list[str]) -> list[str]:
    """Image files from files, folders (searched recursively, in sorted order, for
    IMAGE_SUFFIXES) and lists (.txt or .lst: one path per line; blank lines and lines
    starting with # skipped). A path that does not exist stays in the list: it becomes an
    error row, as an unreadable file does."""
    found = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found += sorted(str(p) for p in path.rglob("*")
                            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)  # fmt: skip
        elif path.suffix.lower() in LIST_SUFFIXES and path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            found += [x.strip() for x in lines if x.strip() and not x.lstrip().startswith("#")]
        else:
            found.append(name)
    return found


class Photos(torch.utils.data.Dataset):
    """Each file's network input (its views), or the reason it has none."""

    def __init__(self, files: list[str], preprocessing: Preprocessing, views: str):
        self.files, self.preprocessing, self.views = files, preprocessing, views

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        path = self.files[index]
        try:
            data = Path(path).read_bytes()
        except OSError as error:
            return index, None, f"cannot read: {error.strerror or error}"
        try:
            pixels = self.preprocessing.decode(data)
        except BadImage as error:
            return index, None, str(error)
        views = self.preprocessing.views(pixels, self.views)
        # (C, h, w), or (10, C, h, w) for ten crops
        return index, views[0] if self.views == "center" else views, None


def _collate(items):
    return items


def predict_files(
    files: list[str],
    checkpoint: str | dict,
    views: str = "center",
    top: int = 5,
    batch_size: int = 64,
    workers: int = 0,
    device: str = "auto",
    precision: str = "fp32",
    progress: bool = False,
    network=None,
):
    """One result per file, in order, streamed: a batch at a time is in memory, whatever
    the number of files. Each result holds the file, its `top` classes with their
    probabilities, and `error` (None, or why the file gave no prediction). `network`: what
    runs the prepared views instead of the checkpoint's own network, on the CPU (a Runtime
    of alexnet.export.runtimes: ONNX Runtime or OpenVINO, which keeps its own precision)."""
    if views not in ("center", "ten-crop"):
        raise UserError(f"views must be center or ten-crop, got {views!r}")
    if batch_size < 1 or workers < 0:
        raise UserError(f"batch must be 1 or more and workers 0 or more: {batch_size}, {workers}")
    keep_freed_memory()  # no page faults for each batch's activations (as training does)
    loaded = checkpoint if isinstance(checkpoint, dict) else ckpt.load(checkpoint)
    record: ModelRecord = loaded["record"]
    if network is None:
        dev = resolve_device(device)
        precision = resolve_precision(precision, dev, logging.getLogger("alexnet"))
        model = InferenceNetwork(ckpt.load_model(loaded), dev, precision)
        precision = "fp32"  # the network casts its inputs itself
    else:
        dev, model, precision = torch.device("cpu"), network, "fp32"
    loader = torch.utils.data.DataLoader(
        Photos(files, record.preprocessing, views),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
        prefetch_factor=2 if workers else None,
    )
    bar = progress_bar(len(files), "predict", "img", show=progress)
    for items in loader:
        good = [(i, x) for i, x, error in items if error is None]
        probs = {}
        if good:
            batch = torch.stack([x for _, x in good])
            labels = torch.zeros(len(good), dtype=torch.int64)
            out, _ = next(softmax_batches([model], [(batch, labels)], dev, precision))
            probs = {i: p for (i, _), p in zip(good, out, strict=True)}
        for i, _, error in items:
            yield _row(files[i], views, error, probs.get(i), record, top)
        bar.update(len(items))
    bar.close()


def _row(path: str, views: str, error: str | None, probs, record: ModelRecord, top: int) -> dict:
    row = {"image": str(path), "views": views, "error": error, "top": []}
    if probs is None:
        return row
    values, classes = probs.topk(min(top, probs.shape[0]))
    ids, names = record.classes.ids, record.classes.names
    row["top"] = [
        {
            "class": int(c),
            "id": ids[int(c)],
            "name": names[int(c)],
            "probability": float(v),
        }
        for v, c in zip(values, classes, strict=True)
    ]
    return row


def predict(
    paths: list[str],
    checkpoint: str,
    views: str = "center",
    top: int = 5,
    device: str = "auto",
    precision: str = "fp32",
) -> list[dict]:
    """The results of `predict_files` for a few images; the first that gives none raises
    ValueError with its reason."""
    rows = list(predict_files(paths, checkpoint, views, top, device=device, precision=precision))
    for row in rows:
        if row["error"] is not None:
            raise UserError(f"{row['image']}: {row['error']}")
    return rows
