"""Retrieval with the last hidden layer (section 6.1 of the paper, Figure 4 right).

The paper shows, for test images, the training images whose fc7 vectors (the 4096
activations fc8 reads) are nearest in Euclidean distance: semantically alike, not alike in
pixels. It suggests compressing the vectors to short binary codes with an autoencoder for
efficient retrieval. Here:

- `fc7_index`: fc7 vectors of a split's center views, computed once and saved beside the
  checkpoint's other outputs, reused while the checkpoint and the store are unchanged.
- `nearest`: exact k-nearest neighbors in Euclidean distance, by matrix products in blocks.
- `CodeAutoencoder` and `binary_codes`: fc7 -> BITS sigmoid units -> fc7, trained to
  reconstruct, with noise added before the sigmoid so the code units saturate (semantic
  hashing, Salakhutdinov and Hinton 2009; Krizhevsky and Hinton 2011); codes are the units
  thresholded at 0.5, packed 64 to a word.
- `hamming_nearest`: exact k-nearest codes by Hamming distance (XOR and popcount, in numpy).
- `precision_at_k`: the share of each query's k neighbors with the query's label.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alexnet.core.errors import UserError
from alexnet.core.files import atomic_write
from alexnet.core.progress import bar as progress_bar

# Search.


def nearest(
    queries: torch.Tensor, base: torch.Tensor, k: int, chunk: int = 1024, base_chunk: int = 16384
):
    """(distances, indices) of the k rows of `base` nearest each query, Euclidean, nearest
    first (up to float32 rounding). Squared distances as |q|^2 + |x|^2 - 2 q.x, a block of
    queries against a block of the base at a time, so a uint8 base (pixels) is widened a
    block at a time and memory stays bounded whatever the base's size."""
    k = min(k, len(base))
    distances, indices = [], []
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk].float()
        q_sq = q.square().sum(1, keepdim=True)
        best_d = best_i = None
        for first in range(0, len(base), base_chunk):
            block = base[first : first + base_chunk].float()
            d2 = (q_sq + block.square().sum(1)[None] - 2 * q @ block.T).clamp_min(0)
            d, i = d2.topk(min(k, len(block)), dim=1, largest=False)
            if best_d is not None:
                d, i = torch.cat([best_d, d], 1), torch.cat([best_i, i + first], 1)
                d, pick = d.topk(min(k, d.shape[1]), dim=1, largest=False)
                i = i.gather(1, pick)
            best_d, best_i = d, i
        order = best_d.argsort(dim=1)
        distances.append(best_d.gather(1, order).sqrt())
        indices.append(best_i.gather(1, order))
    return torch.cat(distances), torch.cat(indices)


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """(N, B) of 0/1 -> (N, ceil(B / 64)) int64 words, zeros past bit B."""
    n, b = bits.shape
    padded = torch.zeros(n, -(-b // 64) * 64, dtype=torch.int64)
    padded[:, :b] = bits.to(torch.int64)
    shifts = torch.arange(64, dtype=torch.int64)
    return (padded.view(n, -1, 64) << shifts).sum(-1)  # bit j of word w: code bit 64 w + j


def hamming_distances(queries: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """(Q, N) Hamming distances between packed codes, word by word: XOR, then numpy's
    popcount (one instruction per word where the CPU has it; torch has no popcount)."""
    q, b = queries.numpy().view(np.uint64), base.numpy().view(np.uint64)
    total = np.zeros((len(q), len(b)), np.int64)
    for w in range(q.shape[1]):
        total += np.bitwise_count(q[:, w, None] ^ b[None, :, w])
    return torch.from_numpy(total)


def hamming_nearest(queries: torch.Tensor, base: torch.Tensor, k: int, chunk: int = 256):
    """(distances, indices) of the k packed codes of `base` nearest each packed query in
    Hamming distance, nearest first; ties in the order of `base`."""
    k = min(k, len(base))
    position = torch.arange(len(base), dtype=torch.int64)
    distances, indices = [], []
    for start in range(0, len(queries), chunk):
        d = hamming_distances(queries[start : start + chunk], base)
        # One key per pair, distance above position: the k smallest keys are the nearest
        # codes, ties in base order, without sorting the whole row.
        keys = (d << 32 | position).topk(k, dim=1, largest=False).values
        distances.append(keys >> 32)
        indices.append(keys & 0xFFFFFFFF)
    return torch.cat(distances), torch.cat(indices)


def precision_at_k(neighbor_labels: np.ndarray, query_labels: np.ndarray) -> float:
    """Mean over queries of the share of their neighbors that have the query's label."""
    return float((neighbor_labels == query_labels[:, None]).mean())


# The autoencoder.


class CodeAutoencoder(nn.Module):
    """fc7 (standardized) -> hidden -> `bits` code units -> hidden -> fc7."""

    def __init__(self, features: int = 4096, bits: int = 64, hidden: int = 1024) -> None:
        super().__init__()
        self.bits = bits
        self.encoder = nn.Sequential(
            nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, bits)
        )
        self.decoder = nn.Sequential(
            nn.Linear(bits, hidden), nn.ReLU(), nn.Linear(hidden, features)
        )

    def forward(self, x: torch.Tensor, noise: float = 0.0) -> torch.Tensor:
        logits = self.encoder(x)
        if noise:
            # Noise the code must outshout: the units are driven to 0 or 1.
            logits = logits + noise * torch.randn_like(logits)
        return self.decoder(torch.sigmoid(logits))

    @torch.no_grad()
    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Binary codes (N, bits) of 0/1."""
        return (self.encoder(x) > 0).to(torch.uint8)


def train_autoencoder(
    features: torch.Tensor,
    bits: int,
    epochs: int = 10,
    batch: int = 256,
    noise: float = 4.0,
    seed: int = 0,
    progress=None,
) -> tuple:
    """A CodeAutoencoder fitted to `features` (standardized inside); returns it with the
    (mean, std) it standardizes with and the last epoch's reconstruction loss."""
    torch.manual_seed(seed)
    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    x = (features - mean) / std
    model = CodeAutoencoder(x.shape[1], bits)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    loss = torch.tensor(float("nan"))
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for start in range(0, len(x), batch):
            part = x[order[start : start + batch]]
            loss = nn.functional.mse_loss(model(part, noise), part)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(part)
        if progress is not None:
            progress(epoch + 1, total / len(x))
    model.eval()
    return model, (mean, std), total / len(x)


def binary_codes(model: CodeAutoencoder, norm: tuple, features: torch.Tensor) -> torch.Tensor:
    mean, std = norm
    return pack_bits(torch.cat([model.codes((f - mean) / std) for f in features.split(4096)]))


# fc7 vectors of a store split.


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


# The command.


def timed(search, repeats: int = 3) -> tuple:
    """(result, seconds) of the fastest of `repeats` runs of search()."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = search()
        best = min(best, time.perf_counter() - start)
    return result, best


def run(
    checkpoint: str,
    data: str,
    out: str | Path,
    k: int = 8,
    queries: int = 1000,
    shown: int = 6,
    query_images: list[str] | None = None,
    bits: list[int] | None = None,
    limit: int | None = None,
    epochs: int = 10,
    batch: int = 128,
    workers: int = 1,
    device: str = "auto",
    precision: str = "fp32",
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """`alexnet neighbors`: neighbors.png and neighbors.json in `out`.

    The base is the training split (its first `limit` images); queries are `queries` images
    of the validation split drawn with `seed` (the first `shown` of them in the figure), or
    the given image files (shown, and not scored: they have no label)."""
    from alexnet.core.runtime import resolve_device, resolve_precision
    from alexnet.data.store import Store
    from alexnet.models import checkpoint as ckpt

    out = Path(out)
    dev = resolve_device(device)
    precision = resolve_precision(precision, dev, logging.getLogger("alexnet"))
    store = Store(data)
    index = fc7_index(
        checkpoint, data, "train", out, batch, workers, limit, device, precision, progress
    )
    base, base_labels = index["features"], index["labels"].numpy()
    train = store.split("train")
    pixels_base = torch.from_numpy(np.array(train.images[: len(base)])).flatten(1)  # uint8
    val = store.split("val")
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(val), size=min(queries, len(val)), replace=False))
    loaded = ckpt.load(checkpoint)
    model = ckpt.load_model(loaded).to(dev)
    record = loaded["record"]
    q_images = torch.stack([record.transform(np.asarray(val.images[i])) for i in picked])
    q_features = torch.cat([fc7_features(model, b, dev, precision) for b in q_images.split(batch)])
    q_labels = val.labels[picked]
    q_pixels = torch.from_numpy(np.array(val.images[picked])).flatten(1)

    table = []
    shown_rows: dict[str, np.ndarray] = {}

    def score(name: str, search, detail: dict) -> None:
        (_, found), seconds = timed(search)
        found = found.numpy()
        table.append(
            {
                "search": name,
                **detail,
                f"precision_at_{k}": round(precision_at_k(base_labels[found], q_labels), 4),
                "queries_per_s": round(len(picked) / seconds, 1),
            }
        )
        if "Euclidean" in name:  # the figure's two rows per query
            shown_rows[name] = found[:shown]

    score(
        "pixels, Euclidean",
        lambda: nearest(q_pixels, pixels_base, k),
        {"dimensions": int(pixels_base.shape[1]), "bytes_per_image": int(pixels_base.shape[1])},
    )
    score(
        "fc7, Euclidean",
        lambda: nearest(q_features, base, k),
        {"dimensions": int(base.shape[1]), "bytes_per_image": int(base.shape[1]) * 4},
    )
    autoencoders = []
    for b in bits or []:
        ae, norm, loss = train_autoencoder(base, b, epochs=epochs, seed=seed)
        codes, q_codes = binary_codes(ae, norm, base), binary_codes(ae, norm, q_features)
        autoencoders.append({"bits": b, "reconstruction_mse": round(loss, 4), "epochs": epochs})
        score(
            f"fc7 -> {b}-bit codes, Hamming",
            lambda c=codes, q=q_codes: hamming_nearest(q, c, k),
            {"dimensions": b, "bytes_per_image": -(-b // 8)},
        )

    figure_queries = [np.asarray(val.images[i]) for i in picked[:shown]]
    figure_labels = [store.class_names[int(y)] for y in q_labels[:shown]]
    if query_images:
        files = _query_files(query_images, record, model, dev, precision, base, pixels_base, k)
        figure_queries = files["pictures"] + figure_queries
        figure_labels = files["names"] + figure_labels
        for name in ("pixels, Euclidean", "fc7, Euclidean"):
            shown_rows[name] = np.concatenate([files[name], shown_rows[name]])
    result = {
        "checkpoint": str(checkpoint),
        "data": str(data),
        "base": f"train split, {len(base):,} images",
        "queries": f"{len(picked):,} images of the val split, drawn with seed {seed}",
        "k": k,
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
