"""Any layer's activations for many images, written to disk as they are computed
(`alexnet features`): Caffe's extract_features, cuda-convnet's --write-features.

Layer names are the network's: conv1-conv5 and fc6-fc7 give the rectified outputs (what the
next layer reads), fc8 the logits; norm1, pool1, norm2, pool2 and pool5 the normalization
and pooling outputs. Each layer's array, (images, ...) in float32 or float16, is written
into a `.npy` file under a temporary name a batch at a time and renamed when all images
are in it, so an interrupted run never leaves a file that looks complete, and memory holds
one batch whatever the number of images. Beside them: files.txt (each image's file or its
index in the store's split) and, for a store, labels.npy.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alexnet.core.errors import UserError
from alexnet.core.progress import bar as progress_bar
from alexnet.models.alexnet import layer_output


class FeatureWriter:
    """A (count, ...) array per layer in DIR/LAYER.npy, filled batch by batch."""

    def __init__(self, folder: Path, count: int, dtype: str):
        self.folder, self.count, self.dtype = folder, count, np.dtype(dtype)
        self.arrays: dict[str, np.memmap] = {}
        self.position = 0

    def write(self, outputs: dict[str, torch.Tensor]) -> None:
        n = None
        for name, value in outputs.items():
            block = value.float().cpu().numpy().astype(self.dtype)
            if name not in self.arrays:
                self.arrays[name] = np.lib.format.open_memmap(
                    self.folder / f".{name}.npy.tmp", mode="w+", dtype=self.dtype,
                    shape=(self.count, *block.shape[1:]),
                )  # fmt: skip
            self.arrays[name][self.position : self.position + len(block)] = block
            n = len(block)
        self.position += n or 0

    def finish(self) -> list[Path]:
        paths = []
        for name, array in self.arrays.items():
            array.flush()
            del array
            final = self.folder / f"{name}.npy"
            os.replace(self.folder / f".{name}.npy.tmp", final)
            paths.append(final)
        self.arrays.clear()
        return paths

    def discard(self) -> None:
        self.arrays.clear()
        for path in self.folder.glob(".*.npy.tmp"):
            path.unlink()


def extract(
    model: nn.Module, batches, count: int, layers: list[str], out: Path,
    spatial_mean: bool = False, dtype: str = "float32", progress: bool = True,
) -> list[Path]:  # fmt: skip
    """Run `model` over `batches` of images and write the named layers' outputs."""
    modules = {name: layer_output(model, name) for name in layers}
    kept: dict[str, torch.Tensor] = {}
    handles = [
        module.register_forward_hook(
            lambda m, args, output, name=name: kept.__setitem__(name, output.detach().clone())
        )
        for name, module in modules.items()
    ]
    writer = FeatureWriter(out, count, dtype)
    bar = progress_bar(count, "features", "img", show=progress)
    try:
        with torch.no_grad():
            for images in batches:
                kept.clear()
                logits = model(images)
                if "fc8" in modules and "fc8" not in kept:
                    kept["fc8"] = logits
                outputs = {}
                for name in layers:
                    value = kept[name]
                    if spatial_mean and value.dim() == 4:
                        value = value.mean(dim=(2, 3))
                    outputs[name] = value
                writer.write(outputs)
                bar.update(len(images))
        if writer.position != count:
            raise UserError(f"expected {count} images, got {writer.position}")
        return writer.finish()
    except BaseException:
        writer.discard()
        raise
    finally:
        bar.close()
        for handle in handles:
            handle.remove()


def write_index(out: Path, names: list[str], labels: np.ndarray | None, record: dict) -> None:
    (out / "files.txt").write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    if labels is not None:
        np.save(out / "labels.npy", np.asarray(labels, dtype=np.int64))
    (out / "features.json").write_text(json.dumps(record, indent=2) + "\n")


def features(
    checkpoint: str, out: str | Path, layers: list[str], data: str | None = None,
    split: str = "val", paths: list[str] | None = None, batch: int = 128, workers: int = 0,
    spatial_mean: bool = False, dtype: str = "float32", limit: int | None = None,
    device: str = "cpu", progress: bool = True, class_ids: list[str] | str | None = None,
) -> dict:  # fmt: skip
    """Write the `layers` of the checkpoint's network for a store's split or for image
    files (folders and lists as predict reads them) into `out`; returns the record.
    `class_ids` (a list or a file of ids): only a store's images of those classes, labelled
    by their position in it (for a probe on other classes than the network learned)."""
    from alexnet.core.runtime import keep_freed_memory, resolve_device
    from alexnet.data.dataset import StoreDataset
    from alexnet.data.loader import class_map, make_loader, read_class_ids
    from alexnet.data.store import Store
    from alexnet.evaluate.predict import Photos, list_photos
    from alexnet.models import checkpoint as ckpt
    from alexnet.models.transfer import sha256

    if (data is None) == (paths is None):
        raise UserError("give --data STORE or image files, one of the two")
    if dtype not in ("float32", "float16"):
        raise UserError(f"--dtype must be float32 or float16, got {dtype}")
    keep_freed_memory()
    loaded = ckpt.load(checkpoint)
    record = loaded["record"]
    pre = record.preprocessing
    model = ckpt.load_model(loaded)
    for name in layers:
        layer_output(model, name)  # a name it does not have fails before any work
    dev = resolve_device(device)
    model.to(dev)
    out = Path(out)
    if not out.parent.is_dir():
        raise UserError(f"the folder above --out does not exist: {out.parent}")
    out.mkdir(exist_ok=True)
    labels, failed = None, []
    if data is not None:
        store = Store(data)
        if store.channels != pre.channels:
            raise UserError(
                f"{loaded['path']} reads {pre.channels}-channel images but {data} holds "
                f"{store.channels}-channel ones"
            )
        dataset = StoreDataset(store, split, "center", crop_size=pre.crop_size)
        dataset.normalized_as(*pre.normalization(store.view_size))
        indices = list(range(len(dataset.split.labels)))
        labels = dataset.split.labels
        if class_ids is not None:
            chosen = class_map(store.class_ids, read_class_ids(class_ids))
            indices = np.flatnonzero(chosen[labels] >= 0).tolist()
            labels = chosen[labels]
        indices = indices[:limit]
        labels = labels[indices]
        names = [dataset.split.files[i] for i in indices]
        chunks = [indices[i : i + batch] for i in range(0, len(indices), batch)]
        loader = make_loader(dataset, batches=chunks, num_workers=workers, device=dev)
        batches = (images.to(dev) for images, _ in loader)
    else:
        names = list_photos(paths)[:limit]
        if not names:
            raise UserError("no images found in " + ", ".join(paths))
        photos = Photos(names, pre, "center")
        side, channels = pre.crop_size, pre.channels
        loader = torch.utils.data.DataLoader(photos, batch_size=batch, num_workers=workers,
                                             collate_fn=lambda items: items)  # fmt: skip

        def stacked():
            for items in loader:
                rows = []
                for index, x, error in items:
                    if error is not None:
                        failed.append({"file": names[index], "error": error})
                        x = torch.full((channels, side, side), float("nan"))
                    rows.append(x)
                yield torch.stack(rows).to(dev)

        batches = stacked()
    written = extract(model, batches, len(names), layers, out, spatial_mean, dtype, progress)
    result = {
        "checkpoint": loaded["path"],
        "sha256": sha256(loaded["path"]),
        "network": record.network.name,
        "source": {"store": data, "split": split} if data is not None else {"files": len(names)},
        "images": len(names),
        "layers": {p.stem: list(np.load(p, mmap_mode="r").shape) for p in written},
        "dtype": dtype,
        "spatial_mean": spatial_mean,
        "failed": failed,  # their rows are NaN
    }
    write_index(out, names, labels, result)
    return result
