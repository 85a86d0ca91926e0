"""The paper's pictures of what the network learned (section 6.1): Figure 3 and Figure 4 left.

- `filter_grid`: the 96 conv1 kernels as one image, tower A's 48 above tower B's, each
  tower row-major as the paper lays them out ("the top 48 kernels were learned on GPU 1
  while the bottom 48 kernels were learned on GPU 2").
- `color_specificity`: how much of a kernel's contrast lies between its color channels
  rather than in its shape, 0 for a kernel that is the same in R, G and B; per tower, the
  number that lets the paper's claim (tower A color-agnostic, tower B color-specific) be
  checked on any run.
- `predictions`: test images with bars for their five most probable labels, the true one
  marked.

Each command writes its picture (PNG) and its numbers (JSON) side by side.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from alexnet.core.errors import UserError

#: Kernels per grid row within a tower: 48 kernels make 3 rows of 16, as in Figure 3.
COLUMNS = 16


def conv1_kernels(model) -> np.ndarray:
    """conv1's weights as (kernels, channels, height, width) float64."""
    return model.conv1.weight.detach().cpu().double().numpy()


def kernel_position(index: int, per_tower: int, columns: int = COLUMNS) -> tuple[int, int]:
    """(row, column) of kernel `index` in the grid: tower A's kernels row-major from the top
    left, then one empty row, then tower B's."""
    tower, i = divmod(index, per_tower)
    rows_per_tower = -(-per_tower // columns)
    return tower * (rows_per_tower + 1) + i // columns, i % columns


def filter_grid(
    kernels: np.ndarray, towers: int = 2, columns: int = COLUMNS, pad: int = 1, zoom: int = 1
) -> np.ndarray:
    """Kernels (K, C, h, w) as an (H, W, C) image in [0, 1], each kernel stretched to its own
    range (the figure shows shapes and colors, not magnitudes), placed by `kernel_position`."""
    k, c, h, w = kernels.shape
    per_tower = k // towers
    rows = towers * (-(-per_tower // columns) + 1) - 1
    cell_h, cell_w = h * zoom + pad, w * zoom + pad
    grid = np.ones((rows * cell_h + pad, columns * cell_w + pad, c))
    for index in range(k):
        kernel = kernels[index].transpose(1, 2, 0)
        low, high = kernel.min(), kernel.max()
        kernel = (kernel - low) / (high - low) if high > low else np.full_like(kernel, 0.5)
        kernel = kernel.repeat(zoom, axis=0).repeat(zoom, axis=1)
        row, col = kernel_position(index, per_tower, columns)
        top, left = pad + row * cell_h, pad + col * cell_w
        grid[top : top + h * zoom, left : left + w * zoom] = kernel
    return grid


def color_specificity(kernels: np.ndarray) -> np.ndarray:
    """Per kernel (K, C, h, w), the share of its variance that lies between channels:

        sum (w[c, y, x] - g[y, x])^2 / sum (w[c, y, x] - mean(w))^2,  g = mean over c

    0 for a gray kernel (equal in every channel, whatever its shape), near 1 for a kernel
    whose channels differ in sign or size but which is flat in space (a color blob)."""
    if kernels.shape[1] < 2:
        raise UserError("color specificity needs kernels with two or more input channels")
    gray = kernels.mean(axis=1, keepdims=True)
    between = ((kernels - gray) ** 2).sum(axis=(1, 2, 3))
    total = ((kernels - kernels.mean(axis=(1, 2, 3), keepdims=True)) ** 2).sum(axis=(1, 2, 3))
    return between / np.maximum(total, 1e-300)


def filters(checkpoint: str, out: str | Path, zoom: int = 4) -> dict:
    """`alexnet figures filters`: filters.png and filters.json in `out`."""
    from alexnet.models import checkpoint as ckpt

    loaded = ckpt.load(checkpoint)
    model = ckpt.load_model(loaded)
    kernels = conv1_kernels(model)
    towers = model.config.towers
    per_tower = len(kernels) // towers
    result: dict = {
        "checkpoint": str(checkpoint),
        "kernels": list(kernels.shape),
        "towers": towers,
        "layout": f"tower A's {per_tower} kernels row-major in rows of {COLUMNS}, then tower B's",
    }
    names = "AB" if towers == 2 else [str(t) for t in range(towers)]
    if kernels.shape[1] >= 2:
        score = color_specificity(kernels)
        result["color_specificity"] = {
            f"tower {names[t]}": _spread(score[t * per_tower : (t + 1) * per_tower])
            for t in range(towers)
        }
        result["color_specificity_per_kernel"] = [round(float(v), 4) for v in score]
    else:
        result["color_specificity"] = None
        result["note"] = "one input channel: the kernels have no color to be specific about"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _save_grid(filter_grid(kernels, towers, zoom=zoom), result, out / "filters.png")
    (out / "filters.json").write_text(json.dumps(result, indent=2))
    return result


def _spread(values: np.ndarray) -> dict:
    return {
        "mean": round(float(values.mean()), 4),
        "median": round(float(np.median(values)), 4),
        "kernels": len(values),
    }


def _save_grid(grid: np.ndarray, result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    height, width = grid.shape[:2]
    fig = plt.figure(figsize=(width / 60 + 0.4, height / 60 + 0.9))
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.8))
    ax.imshow(grid if grid.shape[2] == 3 else grid[..., 0], cmap="gray", interpolation="nearest")
    ax.set_axis_off()
    title = f"conv1: {result['kernels'][0]} kernels of {'x'.join(map(str, result['kernels'][1:]))}"
    scores = result.get("color_specificity")
    if scores:
        title += "\ncolor specificity " + ", ".join(
            f"{k} {v['mean']:.2f}" for k, v in scores.items()
        )
    fig.suptitle(title + "\n(top: tower A; bottom: tower B)", fontsize=9)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def predictions(
    checkpoint: str,
    data: str,
    out: str | Path,
    count: int = 8,
    split: str = "val",
    seed: int = 0,
    views: str = "center",
    device: str = "auto",
    indices: list[int] | None = None,
) -> dict:
    """`alexnet figures predictions`: predictions.png and predictions.json in `out`: `count`
    images of the split, drawn with `seed` (or the given indices), with their five most
    probable labels."""
    from alexnet.core.runtime import resolve_device
    from alexnet.data.store import Store
    from alexnet.evaluate.metrics import softmax_batches
    from alexnet.models import checkpoint as ckpt

    loaded = ckpt.load(checkpoint)
    record = loaded["record"]
    store = Store(data)
    check_store(loaded, store, data)
    part = store.split(split)
    if indices is None:
        rng = np.random.default_rng(seed)
        indices = sorted(rng.choice(len(part), size=min(count, len(part)), replace=False).tolist())
    dev = resolve_device(device)
    model = ckpt.load_model(loaded).to(dev)
    names = record.classes.names
    images = torch.stack([record.transform(np.asarray(part.images[i]), views) for i in indices])
    loader = [(images, torch.as_tensor(part.labels[indices]))]
    probs, labels = next(softmax_batches([model], loader, dev))
    items = []
    for row, index in enumerate(indices):
        values, classes = probs[row].topk(min(5, probs.shape[1]))
        items.append(
            {
                "index": int(index),
                "true": names[int(labels[row])],
                "top5": [
                    {"name": names[int(c)], "probability": round(float(v), 4)}
                    for v, c in zip(values, classes, strict=True)
                ],
                "correct": int(classes[0]) == int(labels[row]),
            }
        )
    result = {
        "checkpoint": str(checkpoint),
        "data": str(data),
        "split": split,
        "views": views,
        "seed": seed,
        "images": items,
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plot_predictions([np.asarray(part.images[i]) for i in indices], items, out / "predictions.png")
    (out / "predictions.json").write_text(json.dumps(result, indent=2))
    return result


def check_store(loaded: dict, store, data) -> None:
    """The store holds the classes (in order) and channels the checkpoint was trained on."""
    from alexnet.models.checkpoint import CheckpointError

    ids = list(loaded["record"].classes.ids)
    if len(ids) < len(store.class_ids) and ids == store.class_ids[: len(ids)]:
        raise CheckpointError(
            f"{loaded['path']} was trained on the first {len(ids)} of {data}'s classes "
            "(data.classes); predictions and neighbors need a network trained on all of them"
        )
    if ids != store.class_ids:
        raise CheckpointError(
            f"{loaded['path']} was trained with other classes than {data} holds (or in "
            "another order)"
        )
    channels = loaded["record"].preprocessing.channels
    if channels != store.channels:
        raise CheckpointError(
            f"{loaded['path']} reads {channels}-channel images but {data} holds "
            f"{store.channels}-channel ones"
        )


def plot_predictions(pictures: list[np.ndarray], items: list[dict], path: Path) -> None:
    """Figure 4 left: each image over its five bars, the true label's bar red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(items)
    columns = min(n, 4)
    rows = -(-n // columns)
    fig, axes = plt.subplots(
        rows * 2,
        columns,
        figsize=(3.2 * columns, 4.4 * rows),
        gridspec_kw={"height_ratios": [1.4, 1] * rows},
        squeeze=False,
    )
    for ax in axes.flat:
        ax.set_axis_off()
    for i, (picture, item) in enumerate(zip(pictures, items, strict=True)):
        r, c = divmod(i, columns)
        show = axes[2 * r, c]
        show.imshow(picture if picture.shape[2] == 3 else picture[..., 0], cmap="gray")
        show.set_title(item["true"], fontsize=9)
        bars = axes[2 * r + 1, c]
        bars.set_axis_on()
        top = item["top5"][::-1]
        colors = ["tab:red" if t["name"] == item["true"] else "tab:blue" for t in top]
        bars.barh(range(len(top)), [t["probability"] for t in top], color=colors)
        bars.set_yticks(range(len(top)), [t["name"] for t in top], fontsize=7)
        bars.set_xlim(0, 1)
        bars.tick_params(axis="x", labelsize=7)
    fig.suptitle("five most probable labels (red: the true label)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
