"""Retrieval with the last hidden layer (section 6.1 of the paper, Figure 4 right).

The paper shows, for test images, the training images whose fc7 vectors (the 4096
activations fc8 reads) are nearest in Euclidean distance: semantically alike, not alike in
pixels. It suggests compressing the vectors to short binary codes with an autoencoder for
efficient retrieval. `alexnet neighbors` (`run`) puts the searches side by side: pixels and
fc7 in Euclidean distance, and fc7's binary codes in Hamming distance, each with its
precision@k and speed, and draws the figure. Its parts: alexnet.evaluate.fc7index (the base,
cached), alexnet.evaluate.search (the searches), alexnet.evaluate.codes (the autoencoder).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from alexnet.core.errors import UserError
from alexnet.evaluate.codes import binary_codes, train_autoencoder
from alexnet.evaluate.fc7index import fc7_features, fc7_index
from alexnet.evaluate.search import hamming_nearest, nearest, precision_at_k


def timed(search, repeats: int = 3) -> tuple:
    """(result, seconds) of the fastest of `repeats` runs of search()."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = search()
        best = min(best, time.perf_counter() - start)
    return result, best


@dataclass(frozen=True)
class NeighborSearch:
    """What `alexnet neighbors` searches, and how (its options, whose defaults are the
    command line's)."""

    k: int  # neighbors per query
    queries: int  # validation images drawn as queries (with `seed`)
    shown: int  # of them, in the figure
    query_images: list[str] | None  # image files as queries too (shown, not scored)
    bits: list[int]  # the code lengths an autoencoder is trained for (none: no codes)
    limit: int | None  # the base: the training split's first `limit` images (None: all)
    epochs: int  # of each autoencoder
    batch: int
    workers: int
    device: str
    precision: str
    seed: int
    progress: bool


def run(checkpoint: str, data: str, out: str | Path, search: NeighborSearch) -> dict:
    """`alexnet neighbors`: neighbors.png and neighbors.json in `out`.

    The base is the training split (its first `limit` images); queries are `queries` images
    of the validation split drawn with `seed` (the first `shown` of them in the figure), or
    the given image files (shown, and not scored: they have no label)."""
    from alexnet.core.runtime import resolve_device, resolve_precision
    from alexnet.data.store import Store
    from alexnet.models import checkpoint as ckpt

    out = Path(out)
    dev = resolve_device(search.device)
    precision = resolve_precision(search.precision, dev, logging.getLogger("alexnet"))
    store = Store(data)
    index = fc7_index(
        checkpoint,
        data,
        "train",
        out,
        search.batch,
        search.workers,
        search.limit,
        search.device,
        precision,
        search.progress,
    )
    base, base_labels = index["features"], index["labels"].numpy()
    train = store.split("train")
    pixels_base = torch.from_numpy(np.array(train.images[: len(base)])).flatten(1)  # uint8
    val = store.split("val")
    rng = np.random.default_rng(search.seed)
    picked = np.sort(rng.choice(len(val), size=min(search.queries, len(val)), replace=False))
    loaded = ckpt.load(checkpoint)
    model = ckpt.load_model(loaded).to(dev)
    record = loaded["record"]
    q_images = torch.stack([record.transform(np.asarray(val.images[i])) for i in picked])
    q_features = torch.cat(
        [fc7_features(model, b, dev, precision) for b in q_images.split(search.batch)]
    )
    q_labels = val.labels[picked]
    q_pixels = torch.from_numpy(np.array(val.images[picked])).flatten(1)

    table = []
    shown_rows: dict[str, np.ndarray] = {}

    def score(name: str, find, detail: dict) -> None:
        (_, found), seconds = timed(find)
        found = found.numpy()
        table.append(
            {
                "search": name,
                **detail,
                f"precision_at_{search.k}": round(precision_at_k(base_labels[found], q_labels), 4),
                "queries_per_s": round(len(picked) / seconds, 1),
            }
        )
        if "Euclidean" in name:  # the figure's two rows per query
            shown_rows[name] = found[: search.shown]

    score(
        "pixels, Euclidean",
        lambda: nearest(q_pixels, pixels_base, search.k),
        {"dimensions": int(pixels_base.shape[1]), "bytes_per_image": int(pixels_base.shape[1])},
    )
    score(
        "fc7, Euclidean",
        lambda: nearest(q_features, base, search.k),
        {"dimensions": int(base.shape[1]), "bytes_per_image": int(base.shape[1]) * 4},
    )
    autoencoders = []
    for b in search.bits or []:
        ae, norm, loss = train_autoencoder(base, b, epochs=search.epochs, seed=search.seed)
        codes, q_codes = binary_codes(ae, norm, base), binary_codes(ae, norm, q_features)
        autoencoders.append(
            {"bits": b, "reconstruction_mse": round(loss, 4), "epochs": search.epochs}
        )
        score(
            f"fc7 -> {b}-bit codes, Hamming",
            lambda c=codes, q=q_codes: hamming_nearest(q, c, search.k),
            {"dimensions": b, "bytes_per_image": -(-b // 8)},
        )

    figure_queries = [np.asarray(val.images[i]) for i in picked[: search.shown]]
    figure_labels = [store.class_names[int(y)] for y in q_labels[: search.shown]]
    if search.query_images:
        files = _query_files(
            search.query_images, record, model, dev, precision, base, pixels_base, search.k
        )
        figure_queries = files["pictures"] + figure_queries
        figure_labels = files["names"] + figure_labels
        for name in ("pixels, Euclidean", "fc7, Euclidean"):
            shown_rows[name] = np.concatenate([files[name], shown_rows[name]])
    result = {
        "checkpoint": str(checkpoint),
        "data": str(data),
        "base": f"train split, {len(base):,} images",
        "queries": f"{len(picked):,} images of the val split, drawn with seed {search.seed}",
        "k": search.k,
        "precision": precision,
        "table": table,
        "autoencoders": autoencoders,
        "shown": [
            {
                "query": figure_labels[i],
                **{name: [int(j) for j in rows[i]] for name, rows in shown_rows.items()},
            }
            for i in range(len(figure_queries))
        ],
    }
    out.mkdir(parents=True, exist_ok=True)
    plot(figure_queries, figure_labels, shown_rows, train, store.class_names, out / "neighbors.png")
    (out / "neighbors.json").write_text(json.dumps(result, indent=2))
    return result


def _query_files(paths, record, model, dev, precision, base, pixels_base, k) -> dict:
    """Neighbors of image files: decoded and viewed as `alexnet predict` does."""
    from alexnet.data.images import BadImage

    pictures, names, fc7, pixels = [], [], [], []
    for path in paths:
        try:
            picture = record.transform.decode(Path(path))
        except (OSError, BadImage) as error:
            raise UserError(f"cannot use {path} as a query: {error}") from None
        pictures.append(picture)
        names.append(Path(path).name)
        views = record.transform.views(picture, "center")
        fc7.append(fc7_features(model, views, dev, precision))
        pixels.append(torch.tensor(picture).flatten()[None])  # decode's array is read-only
    return {
        "pictures": pictures,
        "names": names,
        "fc7, Euclidean": nearest(torch.cat(fc7), base, k)[1].numpy(),
        "pixels, Euclidean": nearest(torch.cat(pixels), pixels_base, k)[1].numpy(),
    }


def plot(queries, labels, rows: dict, train, class_names, path: Path) -> None:
    """For each query, its nearest training images by fc7 and, below, by pixels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [name for name in ("fc7, Euclidean", "pixels, Euclidean") if name in rows]
    k = rows[kinds[0]].shape[1]
    n = len(queries)
    fig, axes = plt.subplots(
        n * len(kinds), k + 1, figsize=(1.3 * (k + 1), 1.45 * n * len(kinds)), squeeze=False
    )
    for ax in axes.flat:
        ax.set_axis_off()

    def show(ax, picture, title, color="black"):
        ax.imshow(picture if picture.shape[2] == 3 else picture[..., 0], cmap="gray")
        ax.set_title(title, fontsize=6, color=color)

    for i, (picture, label) in enumerate(zip(queries, labels, strict=True)):
        for j, kind in enumerate(kinds):
            r = i * len(kinds) + j
            show(axes[r, 0], picture, f"query: {label}" if j == 0 else "")
            axes[r, 0].text(
                -0.1,
                0.5,
                kind.split(",")[0],
                transform=axes[r, 0].transAxes,
                rotation=90,
                va="center",
                ha="right",
                fontsize=7,
            )
            for c, index in enumerate(rows[kind][i]):
                name = class_names[int(train.labels[index])]
                show(
                    axes[r, c + 1],
                    np.asarray(train.images[index]),
                    name,
                    "tab:green" if name == label else "tab:red",
                )
    fig.suptitle("nearest training images: by fc7 (upper row), by pixels (lower row)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))  # room for the title
    fig.savefig(path, dpi=100)
    plt.close(fig)
