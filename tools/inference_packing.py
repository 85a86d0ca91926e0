"""What packing the convolutions' weights once buys (`PackedConv2d` in
alexnet.core.runtime.InferenceNetwork): the package's inference with the convolutions packed
and with `F.conv2d` as eager mode runs it (everything else alike), alternating in one
process, at batch 1, 8 and 128, fp32 and bf16; the logits are checked to be the same bits.

    python tools/inference_packing.py --output docs/bench/inference-packing.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from unittest import mock

import torch

import alexnet.core.runtime as runtime
from alexnet.bench.common import tool_record
from alexnet.bench.runtimes import seeded_checkpoint
from alexnet.core.files import atomic_write_json
from alexnet.export.onnx import example_input
from alexnet.models import checkpoint as ckpt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="alexnet2012,alexnet_owt")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", help="write the JSON here")
    args = parser.parse_args()
    rows = []
    for spec in args.models.split(","):
        checkpoint = seeded_checkpoint(spec)
        model = ckpt.load_model(checkpoint)
        for dtype in ("fp32", "bf16"):
            packed = runtime.InferenceNetwork(model, torch.device("cpu"), dtype)
            with mock.patch.object(runtime, "_packable_conv", lambda module: False):
                plain = runtime.InferenceNetwork(model, torch.device("cpu"), dtype)
            for batch in (1, 8, 128):
                x, steps = example_input(checkpoint, batch), max(1, 32 // batch)
                timed = {"packed": [], "eager": []}
                with torch.inference_mode():
                    same = torch.equal(packed(x), plain(x))
                    for _ in range(args.rounds):  # alternating, after the warm-up above
                        for name, network in (("packed", packed), ("eager", plain)):
                            start = time.perf_counter()
                            for _ in range(steps):
                                network(x)
                            timed[name].append(batch * steps / (time.perf_counter() - start))
                ours, theirs = statistics.median(timed["packed"]), statistics.median(timed["eager"])
                rows.append({"model": spec, "dtype": dtype, "batch": batch, "same_logits": same,
                             "packed_images_per_s": round(ours, 1),
                             "eager_images_per_s": round(theirs, 1),
                             "ratio": round(ours / theirs, 3)})  # fmt: skip
                print(f"{spec:12} {dtype} batch {batch:3}: packed {ours:7.1f}, eager "
                      f"{theirs:7.1f} images/s, {ours / theirs:.2f}x, same logits {same}",
                      flush=True)  # fmt: skip
    if args.output:
        atomic_write_json(args.output, tool_record(rows))


if __name__ == "__main__":
    main()
