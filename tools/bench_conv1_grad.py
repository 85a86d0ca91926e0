"""conv1's forward and backward with each weight-gradient path, alternating, on this CPU.

    python tools/bench_conv1_grad.py [--batch 128] [--repeats 16]

`CeilConv2d(weight_grad="auto")` chooses between oneDNN's direct 11x11 stride-4 kernel and
space-to-depth (`alexnet.layers.image_conv2d`) by the CPU's instruction set; this measures
both on the machine at hand (docs/benchmarks.md, "On a CPU without AVX-512"). The effect is
about 1% of a training step, below what `alexnet bench model` resolves on a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from alexnet.layers import CeilConv2d


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=16)
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 224, 224)
    grad = torch.randn(args.batch, 96, 55, 55)
    modes = ("direct", "space-to-depth")
    convs = {m: CeilConv2d(3, 96, 11, stride=4, weight_grad=m) for m in modes}
    times: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(args.repeats):
        for mode, conv in convs.items():
            start = time.perf_counter()
            conv(x).backward(grad)
            times[mode].append(time.perf_counter() - start)
    print(
        f"conv1 fp32 forward and backward, batch {args.batch}, {args.repeats} repeats, "
        f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}, "
        f"{torch.get_num_threads()} threads"
    )
    for mode, seconds in times.items():
        print(
            f"  {mode:15} min {1000 * min(seconds):6.0f} ms   "
            f"median {1000 * statistics.median(seconds):6.0f} ms"
        )


if __name__ == "__main__":
    main()
