"""`alexnet data show`: what a store holds, in numbers and pictures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from alexnet.data.augment import LIGHTING
from alexnet.data.store import Store


def describe(store: Store) -> dict:
    stats = store.stats
    return {
        "store": str(store.root),
        "source": store.manifest["source"],
        "image_size": store.image_size,
        "view_size": store.view_size,
        "channels": store.channels,
        "classes": store.num_classes,
        "splits": store.manifest["splits"],
        "quarantined": store.manifest["quarantined"],
        "channel_mean": stats.channel_mean.tolist(),
        "eigenvalues": stats.eigenvalues.tolist(),
        "eigenvectors": stats.eigenvectors.tolist(),
        "lighting_shift_std": {
            # the standard deviation of the per-channel shift each reading of the paper gives
            name: float(
                np.sqrt(((stats.eigenvectors * (0.1 * step(stats.eigenvalues))) ** 2).sum(1)).max()
            )
            for name, step in LIGHTING.items()
        },
    }


def text(info: dict, store: Store, classes: int = 10) -> str:
    lines = [
        f"{info['store']}: {info['source']}, {info['classes']} classes, "
        f"{info['image_size']}x{info['image_size']}x{info['channels']} stored"
        + (f" (viewed at {info['view_size']})" if info["view_size"] != info["image_size"] else ""),
    ]
    for split, counts in info["splits"].items():
        lines.append(
            f"  {split:>5}: {counts['images']:,} images ({counts['quarantined']} quarantined)"
        )
    lines.append(f"  channel mean: {np.round(info['channel_mean'], 2).tolist()}")
    lines.append(f"  RGB eigenvalues: {np.round(info['eigenvalues'], 2).tolist()}")
    shifts = ", ".join(f"{k} {v:.1f}" for k, v in info["lighting_shift_std"].items())
    lines.append(f"  PCA lighting shift, largest channel std in levels: {shifts}")
    names = store.class_names
    shown = ", ".join(f"{i}: {n}" for i, n in enumerate(names[:classes]))
    more = f", ... ({len(names) - classes} more)" if len(names) > classes else ""
    lines.append(f"  classes: {shown}{more}")
    return "\n".join(lines)


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def sample_grid(store: Store, path: Path, split: str = "train", count: int = 32, seed: int = 0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = store.split(split)
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(len(data), size=min(count, len(data)), replace=False))
    columns = 8
    rows = (len(picks) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.6, rows * 1.8), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, index in zip(axes.flat, picks, strict=False):
        ax.imshow(_rgb(np.asarray(data.images[index])), interpolation="nearest")
        name = store.class_names[int(data.labels[index])].split(",")[0]
        ax.set_title(name[:18], fontsize=7)
    figure.suptitle(f"{store.root.name}: {split} samples with their labels", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def statistics_figure(store: Store, path: Path) -> None:
    """The mean image, and each principal colour direction as mean colour -/+ 3 sqrt(lambda) p_i."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = store.stats
    channels = store.channels
    figure, axes = plt.subplots(1, 1 + channels, figsize=(3 * (1 + channels), 3.2))
    mean = np.clip(stats.mean_image, 0, 255).astype(np.uint8)
    axes[0].imshow(_rgb(mean), interpolation="nearest")
    axes[0].set_title("mean image")
    axes[0].axis("off")
    steps = np.linspace(-3, 3, 7)
    for i in range(channels):
        direction = stats.eigenvectors[:, i] * np.sqrt(stats.eigenvalues[i])
        strip = stats.channel_mean[None, :] + steps[:, None] * direction[None, :]
        strip = np.clip(strip, 0, 255).astype(np.uint8)[None]
        axes[1 + i].imshow(_rgb(strip), aspect="auto", interpolation="nearest")
        axes[1 + i].set_title(
            f"p{i + 1}: sqrt(l)={np.sqrt(stats.eigenvalues[i]):.1f}\n"
            f"[{', '.join(f'{v:.2f}' for v in stats.eigenvectors[:, i])}]",
            fontsize=8,
        )
        axes[1 + i].set_xticks(range(len(steps)), [f"{s:+.0f}" for s in steps], fontsize=7)
        axes[1 + i].set_yticks([])
    figure.suptitle("training set mean and principal colour directions (-3 to +3 std)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def show(store_path: str | Path, out: str | Path | None = None, split: str = "train") -> dict:
    """Writes samples.png, statistics.png and show.json; returns the numbers."""
    store = Store(store_path)
    out = Path(out) if out else store.root / "show"
    out.mkdir(parents=True, exist_ok=True)
    info = describe(store)
    sample_grid(store, out / "samples.png", split)
    statistics_figure(store, out / "statistics.png")
    info["pictures"] = [str(out / "samples.png"), str(out / "statistics.png")]
    (out / "show.json").write_text(json.dumps(info, indent=2))
    info["text"] = text(info, store)
    return info
