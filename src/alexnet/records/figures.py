"""The docs' figures, each drawn from its committed record by a function of (record, png)."""

from __future__ import annotations

import json
from pathlib import Path

#: The large-batch study's settings, by their runs' name prefix.
LARGE_BATCH_SETTINGS = {
    "b128": "batch 128, the recipe's rate (0.001)",
    "b2048-linear": "batch 2,048, linear scaling (0.016)",
    "b2048-warmup": "batch 2,048, linear scaling + 2 epochs of warmup",
    "b2048-lars": "batch 2,048, LARS + 2 epochs of warmup",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def large_batch_shown(rows: list[dict]) -> list[dict]:
    """The study's runs without LARS's rates that the held-out images did not choose (the
    chosen rate is the one that ran a second seed)."""
    chosen = {r["run"].split("-")[2] for r in rows
              if r["setting"] == "b2048-lars" and r["run"].endswith("-s1")}  # fmt: skip
    return [r for r in rows if r["setting"] != "b2048-lars" or r["run"].split("-")[2] in chosen]


def large_batch(record: Path, png: Path) -> None:
    """Held-out top-1 error by epoch, a color per setting, a line style per seed."""
    plt = _pyplot()
    rows = large_batch_shown(json.loads(Path(record).read_text())["runs"])
    colors = {"b128": "#4c72b0", "b2048-linear": "#c44e52", "b2048-warmup": "#dd8452",
              "b2048-lars": "#55a868"}  # fmt: skip
    fig, axis = plt.subplots(figsize=(7, 4), layout="constrained")
    seen = set()
    for row in rows:
        setting = row["setting"]
        label = LARGE_BATCH_SETTINGS[setting] if setting not in seen else None
        seen.add(setting)
        errors = [100 * e for e in row["held_out_top1_error"]]
        axis.plot(range(1, len(errors) + 1), errors, color=colors[setting], label=label,
                  alpha=0.85, linestyle="-" if row["run"].endswith("s0") else "--")  # fmt: skip
    axis.set_xlabel("epoch")
    axis.set_ylabel("held-out top-1 error, %")
    axis.set_title("Fashion-MNIST 32x32, the four-layer net: batch 128 against 2,048", fontsize=9)
    axis.legend(fontsize=8)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def ablation(record: Path, png: Path) -> None:
    """An `alexnet ablate` study's errors and training curves (the command's own plot)."""
    from alexnet.studies.ablate import plot

    plot(json.loads(Path(record).read_text()), png)


def transfer_study(record: Path, png: Path) -> None:
    """An `alexnet transfer` study's accuracy against images per class."""
    from alexnet.studies.transfer_table import plot

    plot(json.loads(Path(record).read_text()), png)


def transfer_compare(record: Path, png: Path) -> None:
    """`alexnet transfer-compare`: every source's cells in one plot."""
    from alexnet.studies.transfer_table import compare_plot

    compare_plot(json.loads(Path(record).read_text()), png)


def curves(record: Path, png: Path) -> None:
    """A run's error, learning rate and throughput per epoch, from its metrics.jsonl (the
    plot of `alexnet report`)."""
    from alexnet.studies.report import curves as draw

    metrics = [json.loads(line) for line in Path(record).read_text().splitlines() if line.strip()]
    figure = draw(metrics)
    figure.savefig(png, dpi=100)
    _pyplot().close(figure)


#: The hosts of the speed figure: (label, `alexnet bench model` record).
HOSTS = (
    ("AMD EPYC, AVX-512 bf16", "docs/bench/bench-model.json"),
    ("AMD EPYC, AVX2 only", "docs/bench/bench-model-cpu-avx2.json"),
    ("NVIDIA H100", "docs/bench/bench-model-h100.json"),
)


def speed_by_host(root: Path, png: Path) -> None:
    """alexnet2012's images/s over alexnet_owt's in the same run, by mode and dtype, a
    group of bars per host kind; 1.0 drawn as a line."""
    plt = _pyplot()
    cells = [("train", "fp32"), ("train", "bf16"), ("infer", "fp32"), ("infer", "bf16")]
    fig, axis = plt.subplots(figsize=(7, 3.6), layout="constrained")
    width = 0.8 / len(cells)
    for j, (mode, dtype) in enumerate(cells):
        ratios = []
        for _, record in HOSTS:
            rates = {(r["model"], r["mode"], r["dtype"]): r["images_per_s"]["median"]
                     for r in json.loads((Path(root) / record).read_text())["results"]}  # fmt: skip
            ours = rates.get(("alexnet2012", mode, dtype))
            owt = rates.get(("alexnet_owt", mode, dtype))
            ratios.append(ours / owt if ours and owt else 0.0)
        axis.bar([i + (j - 1.5) * width for i in range(len(HOSTS))], ratios, width,
                 label=f"{mode} {dtype}")  # fmt: skip
    axis.axhline(1.0, color="gray", linewidth=0.8)
    axis.set_xticks(range(len(HOSTS)), [label for label, _ in HOSTS], fontsize=8)
    axis.set_ylabel("alexnet2012 / alexnet_owt, images/s")
    axis.set_title("batch 128; a missing bar: not measured on that host", fontsize=9)
    fig.legend(fontsize=8, ncols=4, loc="outside lower center")
    fig.savefig(png, dpi=110)
    plt.close(fig)
