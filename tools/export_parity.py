"""The ONNX parity table of docs/export.md and docs/benchmarks.md: each network with seeded
He-initialized weights (logits of order 1) exported by `alexnet export --format onnx`, then
onnx.checker's full check and ONNX Runtime's logits against the package's at batch 1 and 8,
and the top-5 classes of 64 inputs.

    python tools/export_parity.py --output docs/bench/export-parity.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from alexnet.bench.common import machine
from alexnet.export.onnx import check_onnx, check_parity, export_onnx
from alexnet.models.weights import untrained_checkpoint

NETWORKS = ("alexnet2012", "alexnet2012_1gpu", "caffenet", "alexnet_owt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", help="write the JSON here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in NETWORKS:
            checkpoint = untrained_checkpoint(name)
            path = export_onnx(checkpoint, Path(folder) / f"{name}.onnx")
            check_onnx(path)
            report = check_parity(checkpoint, path, batches=(1, 8), images=64)
            rows.append({"network": name, "onnx_checker": "full check passed", **report})
            print(name, json.dumps(report), file=sys.stderr)
    import onnxruntime

    result = {"machine": machine(), "onnxruntime": onnxruntime.__version__,
              "command": "python " + " ".join(sys.argv), "networks": rows}  # fmt: skip
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print("| network | batch 1: max logit difference | batch 8 | top-5 identical |")
    print("| --- | ---: | ---: | ---: |")
    for r in rows:
        d = r["max_abs_logit_difference"]
        print(f"| `{r['network']}` | {d['1']:.1e} | {d['8']:.1e} | {r['top5_identical']} of "
              f"{r['images']} |")  # fmt: skip


if __name__ == "__main__":
    main()
