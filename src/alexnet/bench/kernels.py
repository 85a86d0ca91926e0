"""`alexnet bench fused`: the fused ReLU-LRN-pool kernel alone, on conv1's and conv2's blocks."""

from __future__ import annotations

import statistics
import time

import torch

from alexnet.bench.common import machine
from alexnet.bench.model import DTYPES
from alexnet.core.runtime import keep_freed_memory

#: The fused blocks of alexnet2012 at batch 128: conv1's and conv2's outputs, two towers.
FUSED_BLOCKS = {"conv1": (128, 96, 55, 55), "conv2": (128, 256, 27, 27)}


def bench_fused(repeats: int = 7, batch: int = 128, dtypes: tuple[str, ...] = DTYPES) -> dict:
    """Milliseconds of the fused ReLU-LRN-pool (`alexnet.kernels.fused`) forward and backward on its
    two blocks, median over `repeats` after two warm-ups: the kernel alone, for measuring
    changes to it side by side (`git stash` or a checkout between two runs)."""
    from alexnet.kernels.fused import relu_lrn_pool

    kept = keep_freed_memory()
    rows = []
    for block, shape in FUSED_BLOCKS.items():
        z32 = torch.randn(batch, *shape[1:], generator=torch.Generator().manual_seed(0))
        for dtype in dtypes:
            z = z32.to(torch.bfloat16 if dtype == "bf16" else torch.float32).requires_grad_()
            forward, backward, kept_grad = [], [], None
            for i in range(repeats + 2):
                start = time.perf_counter()
                y = relu_lrn_pool(z, 5, 1e-4, 0.75, 2.0, 2, 3, 2)  # the paper's conv1 and conv2
                middle = time.perf_counter()
                # the last gradient stays alive while the next is made, as in a training
                # step; freeing first, glibc gives the 150 MB back and faults it in again
                kept_grad = torch.autograd.grad(y, z, torch.ones_like(y))
                if i >= 2:  # two warm-ups: compilation, then the heap's growth
                    forward.append(middle - start)
                    backward.append(time.perf_counter() - middle)
            del kept_grad
            rows.append(
                {
                    "block": block,
                    "shape": [batch, *shape[1:]],
                    "dtype": dtype,
                    "forward_ms": 1e3 * statistics.median(forward),
                    "backward_ms": 1e3 * statistics.median(backward),
                }
            )
    lines = ["block  shape               dtype  forward ms  backward ms"]
    for r in rows:
        shape = "x".join(map(str, r["shape"]))
        lines.append(
            f"{r['block']:<6} {shape:<19} {r['dtype']:<6} {r['forward_ms']:>10.1f}"
            f" {r['backward_ms']:>12.1f}"
        )
    return {
        "machine": machine(),
        "settings": {
            "batch": batch,
            "repeats": repeats,
            "threads": torch.get_num_threads(),
            "malloc_keeps_freed_memory": kept,
        },
        "results": rows,
        "table": "\n".join(lines),
    }
