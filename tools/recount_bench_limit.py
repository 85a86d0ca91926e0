"""Recount the share of the machine's limit in recorded `alexnet bench model` results.

The records before this counting rule counted a training step as 3x the forward pass,
conv1's input gradient included, which no step computes. The measured rates and limits are
kept; `fraction_of_limit`, `step_macs_per_image`, `counting` and the table are recomputed
(alexnet.bench.model.recount), and `recounted` names this command.

    python tools/recount_bench_limit.py docs/bench/bench-model*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from alexnet.bench.model import recount


def main(paths: list[str]) -> None:
    for name in paths:
        path = Path(name)
        result = json.loads(path.read_text())
        if "results" not in result or "matmul_flops_per_s" not in result:
            continue
        before = {(e["model"], e["mode"], e["dtype"]): e["fraction_of_limit"]
                  for e in result["results"]}  # fmt: skip
        recount(result)
        result["recounted"] = "python tools/recount_bench_limit.py " + name
        path.write_text(json.dumps(result, indent=2) + "\n")
        for e in result["results"]:
            old = before[(e["model"], e["mode"], e["dtype"])]
            if e["mode"] == "train":
                print(f"{path.name}: {e['model']} {e['dtype']} train "
                      f"{old:.0%} -> {e['fraction_of_limit']:.0%}")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
