"""Communication of data-parallel AlexNet on paper: what each GPU sends per step when the
gradients are all-reduced by a ring (NCCL's algorithm for large messages), for 8, 64 and
512 GPUs, fp32 and bf16 gradients, and the time it takes at stated link bandwidths.

A ring all-reduce of P values over N ranks sends 2 (N - 1) / N x P values from each rank
(a reduce-scatter and an all-gather, each (N - 1) / N x P). The parameters are counted from
the package's network; the convolutional layers' share is shown apart, and Krizhevsky
(2014)'s hybrid scheme is counted too (alexnet.train.hybrid.bytes_per_step: the conv
gradients all-reduced, the conv5 maps, fc7's partial sums, fc8's input gradient and the
logits of the whole batch sent instead of fc6-fc8's gradients), at 128 images per GPU.

    python tools/allreduce_cost.py --output docs/bench/allreduce-cost.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import alexnet  # noqa: E402
from alexnet.train.hybrid import bytes_per_step  # noqa: E402

RANKS = (8, 64, 512)
BYTES = {"fp32": 4, "bf16": 2}
# Per-GPU link bandwidths, gigabits per second: 25 GbE, 100 Gb/s InfiniBand EDR, 400 Gb/s
# NDR; NVLink 4 within an H100 node: 900 GB/s both ways, 450 GB/s = 3,600 Gb/s each way.
LINKS_GBIT = {"25 GbE": 25, "100 Gb/s IB": 100, "400 Gb/s IB": 400, "NVLink 4": 3600}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    model = alexnet.create_model("alexnet2012")
    counts = {"conv": 0, "fc": 0}
    for name, p in model.named_parameters():
        counts["conv" if name.startswith("conv") else "fc"] += p.numel()
    total = counts["conv"] + counts["fc"]
    rows = []
    for ranks in RANKS:
        for dtype, size in BYTES.items():
            for part, params in (("all", total), ("conv only", counts["conv"])):
                sent = 2 * (ranks - 1) / ranks * params * size
                rows.append({
                    "ranks": ranks, "gradients": dtype, "parameters": part,
                    "bytes_sent_per_rank": round(sent),
                    "seconds": {link: round(sent * 8 / (gbit * 1e9), 4)
                                for link, gbit in LINKS_GBIT.items()},
                })  # fmt: skip
    widths = {"features": 9216, "hidden": 4096, "classes": 1000}
    for ranks in RANKS:
        for dtype, size in BYTES.items():
            sent = bytes_per_step(ranks, 128 * ranks, counts, widths, element=size)
            rows.append({
                "ranks": ranks, "gradients": dtype, "parameters": "hybrid, 128 a GPU",
                "bytes_sent_per_rank": round(sent["hybrid_total"]),
                "parts": {k: round(v) for k, v in sent["hybrid"].items()},
                "seconds": {link: round(sent["hybrid_total"] * 8 / (gbit * 1e9), 4)
                            for link, gbit in LINKS_GBIT.items()},
            })  # fmt: skip
    result = {
        "command": "python " + " ".join(sys.argv),
        "network": "alexnet2012",
        "parameters": {"conv": counts["conv"], "fc": counts["fc"], "all": total},
        "rule": "ring all-reduce: 2 (N - 1) / N x parameters x bytes sent by each rank",
        "links_gbit_per_s": LINKS_GBIT,
        "rows": rows,
    }
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    for row in rows:
        times = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in row["seconds"].items())
        print(f"{row['ranks']:>4} ranks {row['gradients']} {row['parameters']:>9}: "
              f"{row['bytes_sent_per_rank'] / 1e6:,.1f} MB; {times}")  # fmt: skip


if __name__ == "__main__":
    main()
