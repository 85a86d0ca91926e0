"""Evaluation as the paper reports it (sections 2, 4.1 and 6 of the paper).

Top-1 and top-5 error rates: the fraction of test images whose label is not the most
probable class, or not among the five most probable. Ten-crop testing averages the softmax
of the network over the four corner patches, the center patch and their reflections; an
ensemble (the paper's 5-CNN entry) averages the softmax of several networks.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from alexnet.core.progress import bar as progress_bar
from alexnet.data.preprocess import same_mean
from alexnet.evaluate.metrics import softmax_batches, summarize

# ---------------------------------------------------------------------------------------
# alexnet eval


def evaluate_checkpoints(
    checkpoints: list[str],
    data: str,
    split: str = "val",
    views: str = "center",
    batch_size: int = 128,
    precision: str = "fp32",
    device: str = "auto",
    workers: int = 1,
    limit: int | None = None,
    progress: bool = True,
    images: list[int] | None = None,
) -> dict:
    """Top-1/top-5 error of one network or an ensemble (softmax averaged) on a store;
    `images`: only these indices of the split (a run's held-out images)."""
    from alexnet.core.runtime import (
        InferenceNetwork,
        keep_freed_memory,
        resolve_device,
        resolve_precision,
    )
    from alexnet.data.dataset import StoreDataset
    from alexnet.data.loader import class_map, make_loader
    from alexnet.data.store import Store
    from alexnet.models import checkpoint as ckpt

    keep_freed_memory()
    dev = resolve_device(device)
    precision = resolve_precision(precision, dev, logging.getLogger("alexnet"))
    loaded = [ckpt.load(c) for c in checkpoints]
    store = Store(data)
    first = loaded[0]["record"]
    for c in loaded:
        record = c["record"]
        classes = len(record.classes)
        if classes > store.num_classes:
            raise ckpt.CheckpointError(
                f"{c['path']} predicts {classes} classes but the store {data} has "
                f"{store.num_classes}; evaluate it on the dataset it was trained for"
            )
        if record.preprocessing.channels != store.channels:
            raise ckpt.CheckpointError(
                f"{c['path']} reads {record.preprocessing.channels}-channel images but "
                f"{data} holds {store.channels}-channel ones"
            )
        # a network trained on some of the store's classes (data.classes, data.class_ids)
        # is evaluated on the images of those classes, labelled as it was trained
        if not set(record.classes.ids) <= set(store.class_ids):
            raise ckpt.CheckpointError(
                f"{c['path']} was trained with other classes than {data} holds"
            )
        # one dataset makes every network's inputs
        for what, mine, theirs in (
            ("crop size", record.preprocessing.crop_size, first.preprocessing.crop_size),
            ("scale", record.preprocessing.scale, first.preprocessing.scale),
            ("classes", record.classes.ids, first.classes.ids),
        ):
            if mine != theirs:
                raise ckpt.CheckpointError(
                    f"an ensemble needs the same {what} for every network: "
                    f"{loaded[0]['path']} has {theirs}, {c['path']} has {mine}"
                )
        if not same_mean(record.preprocessing.mean, first.preprocessing.mean):
            raise ckpt.CheckpointError(
                f"an ensemble needs the same mean for every network: {loaded[0]['path']} and "
                f"{c['path']} subtract different ones"
            )
    models = [InferenceNetwork(ckpt.load_model(c), dev, precision) for c in loaded]
    dataset = StoreDataset(store, split, views, crop_size=first.preprocessing.crop_size)
    dataset.normalized_as(*first.preprocessing.normalization(store.view_size))
    chosen = class_map(store.class_ids, list(first.classes.ids))
    dataset.relabel(chosen)
    indices = np.flatnonzero(chosen[dataset.split.labels] >= 0).tolist()
    if images is not None:
        wanted = set(images)
        indices = [i for i in indices if i in wanted]
    indices = indices if limit is None else indices[:limit]
    batches = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    loader = make_loader(dataset, batches=batches, num_workers=workers, device=dev)
    bar = progress_bar(len(indices), f"eval {views}", "img", show=progress)
    probs, labels = [], []
    # the networks cast their inputs to their precision themselves (InferenceNetwork)
    for p, y in softmax_batches(models, loader, dev, "fp32", progress=bar):
        probs.append(p)
        labels.append(y)
    bar.close()
    probs_all = torch.cat(probs).numpy()
    labels_all = torch.cat(labels).numpy()
    result = summarize(probs_all, labels_all, list(first.classes.names))
    result.update(
        checkpoints=[c["path"] for c in loaded],
        data=str(data),
        split=split if images is None else f"{split} (held out: {len(indices)} images)",
        views=views,
        precision=precision,
        device=str(dev),
    )
    return result


def plot(result: dict, path) -> None:
    """The confusion matrix (rows: true class, normalized) and each class's top-1 error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    confusion = np.asarray(result["confusion"], dtype=np.float64)
    rows = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    names = [c["name"] for c in result["per_class"]]
    errors = [c["top1_error"] or 0.0 for c in result["per_class"]]
    n = len(names)
    labelled = n <= 40
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 6), gridspec_kw={"width_ratios": [1.1, 1]})
    image = ax1.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ax1.set(xlabel="predicted", ylabel="true", title="confusion (fraction of each true class)")
    if labelled:
        ax1.set_xticks(range(n), names, rotation=90, fontsize=7)
        ax1.set_yticks(range(n), names, fontsize=7)
    fig.colorbar(image, ax=ax1, fraction=0.046)
    order = np.argsort(errors)[::-1][: min(n, 40)]
    ax2.barh([names[i] for i in order][::-1], [100 * errors[i] for i in order][::-1])
    ax2.set(xlabel="top-1 error (%)", title="per-class error" + (" (worst 40)" if n > 40 else ""))
    ax2.tick_params(axis="y", labelsize=7)
    fig.suptitle(
        f"{result['views']}: top-1 error {100 * result['top1_error']:.2f}%, top-5 "
        f"{100 * result['top5_error']:.2f}% on {result['images']:,} images"
        + (f", ensemble of {len(result['checkpoints'])}" if len(result["checkpoints"]) > 1 else "")
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
