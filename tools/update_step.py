"""What the one-pass update and the bf16 working copies buy a training step of alexnet2012
(`alexnet.kernels.update`, `alexnet.train.copies`): the step as `alexnet bench model` runs
it (batch 128) three ways, alternating in one process after a warm-up:

    four passes   PaperSGD as four torch foreach passes, autocast casting the weights
    one pass      the update in one pass per weight tensor, autocast casting the weights
    copies        the one pass writing the weights' bf16 copies, which the forward pass reads

(fp32 has no copies.) One process, so that the variants share the machine's moods; their
allocations interleave, which `alexnet bench model` avoids with a process per network.

    python tools/update_step.py --output docs/bench/update-step.json
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from unittest import mock

import torch

import alexnet.train.optim as optim
from alexnet.bench.common import tool_record
from alexnet.bench.model import Case, prepare_cases
from alexnet.core.files import atomic_write_json
from alexnet.core.runtime import keep_freed_memory

OPTIONS = {"channels_last": (), "compile": (), "fuse": True, "lrn_backend": "auto",
           "tower_conv": "auto", "conv1_grad": "auto"}  # fmt: skip


def _variants(dtype: str, batch: int) -> dict:
    """name -> (step function, whether the update runs as four foreach passes)."""
    setup = lambda copies: (batch, "cpu", {**OPTIONS, "bf16_copies": copies}, 2, "keep",  # noqa: E731
                            torch.get_num_threads())  # fmt: skip
    case = [Case("alexnet2012", "train", dtype)]
    with mock.patch.object(optim, "updatable", lambda *args: False):
        (four,) = prepare_cases(case, setup(False))
    (one,) = prepare_cases(case, setup(False))
    variants = {"four passes": (four, True), "one pass": (one, False)}
    if dtype == "bf16":
        (copies,) = prepare_cases(case, setup(True))
        variants["copies"] = (copies, False)
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--output", help="write the JSON here")
    args = parser.parse_args()
    keep_freed_memory()
    rows = []
    for dtype in ("fp32", "bf16"):
        variants = _variants(dtype, args.batch)
        seconds = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, (step, foreach) in variants.items():
                patch = mock.patch.object(optim, "updatable", lambda *a: False)
                with patch if foreach else contextlib.nullcontext():
                    start = time.perf_counter()
                    step()
                    seconds[name].append(time.perf_counter() - start)
        base = statistics.median(seconds["four passes"])
        for name, times in seconds.items():
            ms = statistics.median(times)
            rows.append({"dtype": dtype, "variant": name, "ms_per_step": round(1000 * ms, 1),
                         "min_ms": round(1000 * min(times), 1),
                         "max_ms": round(1000 * max(times), 1),
                         "speedup_over_four_passes": round(base / ms, 3)})  # fmt: skip
            print(f"{dtype} {name:12} {1000 * ms:7.1f} ms a step ({1000 * min(times):.0f}-"
                  f"{1000 * max(times):.0f}), {base / ms:.3f}x", flush=True)  # fmt: skip
    if args.output:
        atomic_write_json(args.output, tool_record(rows, batch=args.batch, rounds=args.rounds))


if __name__ == "__main__":
    main()
