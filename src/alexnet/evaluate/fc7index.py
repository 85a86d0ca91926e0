"""fc7 vectors (the 4096 activations fc8 reads) of a store split's center views, computed
once and saved beside the checkpoint's other outputs, reused while the checkpoint and the
store are unchanged: the base that `alexnet neighbors` and the server's neighbors search.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from alexnet.core.files import atomic_write
from alexnet.core.progress import bar as progress_bar


@torch.inference_mode()
def fc7_features(model, images: torch.Tensor, device: torch.device, precision: str = "fp32"):
    """fc7 activations (after ReLU; no dropout: eval mode) of a batch of views, float32."""
    from alexnet.core.runtime import autocast

    model.eval()
    with autocast(device, precision):
        out = model.forward_head(model.forward_features(images.to(device)), pre_logits=True)
    return out.float().cpu()


def fc7_index(
    checkpoint: str,
    data: str,
    split: str,
    folder: Path,
    batch: int = 128,
    workers: int = 1,
    limit: int | None = None,
    device: str = "auto",
    precision: str = "fp32",
    progress: bool = True,
) -> dict:
    """{features (N, 4096) float32, labels (N,), indices (N,)} of `split`'s center views,
    loaded from `folder` when it was built from this checkpoint and store, else computed
    and saved there."""
    from alexnet.core.runtime import resolve_device
    from alexnet.data.dataset import StoreDataset
    from alexnet.data.loader import make_loader
    from alexnet.data.store import Store
    from alexnet.evaluate.figures import check_store
    from alexnet.models import checkpoint as ckpt

    file = ckpt.find(checkpoint) if Path(checkpoint).is_dir() else Path(checkpoint)
    store = Store(data)
    count = len(store.split(split))
    count = count if limit is None else min(limit, count)
    key = {
        "checkpoint": _fingerprint(file),
        "store": str(Path(data).resolve()),
        "manifest": hashlib.sha256((Path(data) / "manifest.json").read_bytes()).hexdigest(),
        "split": split,
        "images": count,
        "precision": precision,
    }
    path = folder / f"fc7-{split}-{count}.pt"
    if path.is_file():
        saved = torch.load(path, weights_only=True)
        if saved["key"] == json.dumps(key, sort_keys=True):
            return saved
    loaded = ckpt.load(checkpoint)
    check_store(loaded, store, data)
    dev = resolve_device(device)
    model = ckpt.load_model(loaded).to(dev)
    pre = loaded["record"].preprocessing
    dataset = StoreDataset(store, split, "center", crop_size=pre.crop_size)
    dataset.normalized_as(*pre.normalization(store.view_size))
    order = list(range(count))
    batches = [order[i : i + batch] for i in range(0, count, batch)]
    loader = make_loader(dataset, batches=batches, num_workers=workers, device=dev)
    bar = progress_bar(count, f"fc7 of {split}", "img", show=progress)
    features, labels = [], []
    for images, y in loader:
        features.append(fc7_features(model, images, dev, precision))
        labels.append(y)
        bar.update(len(y))
    bar.close()
    saved = {
        "key": json.dumps(key, sort_keys=True),
        "features": torch.cat(features),
        "labels": torch.cat(labels),
        "indices": torch.tensor(order),
    }
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda handle: torch.save(saved, handle))
    return saved


def _fingerprint(path: Path) -> str:
    """A checkpoint's path, size and modification time: enough to notice a new one."""
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
