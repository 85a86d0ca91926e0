"""conv1 computed each way the backend might run faster, alternating, on one device.

    python tools/bench_conv1.py [--device cpu|cuda] [--dtype fp32|bf16] [--ways ...]
                                [--batch 128] [--repeats 16]

conv1 (`CeilConv2d(3, 96, 11, stride=4)` on 224x224 images) is the one layer whose shape
backends handle badly: 3 input maps and an 11x11 kernel at stride 4. Each way below computes
the same sums of products (`check` compares them in float64); only the kernels the backend
picks differ. Forward and backward (the weight gradient; the image needs none), timed:

- direct: the layer as it is, one 11x11 stride-4 convolution.
- space-to-depth-grad: the forward direct, the weight gradient as a 3x3 convolution over
  the image cut into 4x4 blocks (`alexnet.nn.conv.image_conv2d`, which `CeilConv2d` uses
  on AVX-512 CPUs in float32).
- space-to-depth: forward and backward both as that 3x3 stride-1 convolution over 48 maps,
  the kernel zero-padded to 12x12. On a GPU, 48 maps reach tensor-core kernels that 3 do
  not (docs/benchmarks.md: cuDNN ran conv1 in bf16 without them).
- pad4, pad8: the image and the kernels padded with zero maps to 4 or 8, for the same reason.

Only `direct` and `space-to-depth-grad` are wired into the network; the others are measured
here first, and kept in `CeilConv2d` only where they pay.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
import torch.nn.functional as F

from alexnet.nn.conv import CeilConv2d, image_conv2d, space_to_depth

WAYS = ("direct", "space-to-depth-grad", "space-to-depth", "pad4", "pad8")
STRIDE = 4


def space_to_depth_conv2d(x, weight, bias, stride: int):
    """F.conv2d(x, weight, bias, stride) as a stride-1 convolution over x cut into
    stride x stride blocks, each block's pixels as maps, the kernel zero-padded to whole
    blocks. x must already give whole outputs (CeilConv2d's padding)."""
    k = weight.shape[-1]
    blocks = -(-k // stride)
    ho, wo = (x.shape[2] - k) // stride + 1, (x.shape[3] - k) // stride + 1
    x = space_to_depth(x, stride, ho - 1 + blocks, wo - 1 + blocks)
    # the kernel cut the same way: tap (dy, dx) of block (by, bx) meets pixel (dy, dx) of
    # the input block the window's (by, bx)-th block covers
    blocked = space_to_depth(weight, stride, blocks, blocks)
    return F.conv2d(x, blocked, bias)


def padded_maps_conv2d(x, weight, bias, stride: int, maps: int):
    """F.conv2d(x, weight, bias, stride) with x and the kernels padded by zero maps to
    `maps` input maps."""
    extra = maps - x.shape[1]
    return F.conv2d(F.pad(x, (0, 0, 0, 0, 0, extra)), F.pad(weight, (0, 0, 0, 0, 0, extra)),
                    bias, stride)  # fmt: skip


def conv1(way: str, conv: CeilConv2d, x: torch.Tensor) -> torch.Tensor:
    """conv1's output computed `way` (WAYS) with conv's weights, x the 224x224 images."""
    if way == "direct":
        return conv(x)
    x = conv.pad(x)
    w, b = conv.weight, conv.bias
    if way == "space-to-depth-grad":
        return image_conv2d(x, w, b, STRIDE)
    if way == "space-to-depth":
        return space_to_depth_conv2d(x, w, b, STRIDE)
    if way.startswith("pad"):
        return padded_maps_conv2d(x, w, b, STRIDE, int(way[3:]))
    raise ValueError(f"unknown way {way!r}; choose from {', '.join(WAYS)}")


def check(device: torch.device, ways=WAYS) -> dict[str, float]:
    """Each way's output and weight gradient against direct in float64: the largest
    difference over the largest value, per way."""
    torch.manual_seed(0)
    conv = CeilConv2d(3, 96, 11, stride=STRIDE, weight_grad="direct").to(device, torch.float64)
    x = torch.randn(2, 3, 224, 224, dtype=torch.float64, device=device)
    grad = torch.randn(2, 96, 55, 55, dtype=torch.float64, device=device)
    results = {}
    for way in ways:
        conv.zero_grad()
        out = conv1(way, conv, x)
        out.backward(grad)
        results[way] = (out.detach(), conv.weight.grad.clone(), conv.bias.grad.clone())
    ref = results["direct"]
    return {
        way: max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(r, ref, strict=True))
        for way, r in results.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--dtype", choices=("fp32", "bf16"), default="fp32", help="bf16: under autocast"
    )
    parser.add_argument(
        "--ways",
        help=f"comma-separated, of {', '.join(WAYS)} (default: all on CUDA; "
        "direct and space-to-depth-grad on CPU)",
    )
    parser.add_argument(
        "--channels-last", action="store_true", help="the image and the kernels in channels_last"
    )
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=16)
    args = parser.parse_args()
    device = torch.device(args.device)
    cpu = device.type == "cpu"
    ways = args.ways.split(",") if args.ways else (WAYS[:2] if cpu else WAYS)
    if "direct" not in ways:
        ways = ["direct", *ways]
    errors = check(device, ways)
    torch.manual_seed(0)
    conv = CeilConv2d(3, 96, 11, stride=STRIDE, weight_grad="direct").to(device)
    x = torch.randn(args.batch, 3, 224, 224, device=device)
    grad = torch.randn(args.batch, 96, 55, 55, device=device)
    if args.channels_last:
        conv = conv.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
        grad = grad.contiguous(memory_format=torch.channels_last)
    if args.dtype == "bf16":
        grad = grad.bfloat16()  # the dtype of conv1's output under autocast
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if args.dtype == "bf16"
        else contextlib.nullcontext()
    )
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    times: dict[str, list[float]] = {way: [] for way in ways}
    for repeat in range(args.repeats + 1):  # the first round warms up (cuDNN's choice)
        for way in ways:
            sync()
            start = time.perf_counter()
            with autocast:
                out = conv1(way, conv, x)
            out.backward(grad)
            sync()
            if repeat:
                times[way].append(time.perf_counter() - start)
            conv.zero_grad()
    what = (
        torch.cuda.get_device_name(device) if not cpu else torch.backends.cpu.get_cpu_capability()
    )
    print(
        f"conv1 {args.dtype}{', channels_last' if args.channels_last else ''}, forward and "
        f"backward, batch {args.batch}, {args.repeats} repeats, "
        f"torch {torch.__version__}, {what}, {torch.get_num_threads()} threads"
    )
    for way, seconds in times.items():
        print(
            f"  {way:20} min {1000 * min(seconds):8.2f} ms   "
            f"median {1000 * statistics.median(seconds):8.2f} ms   "
            f"float64 max diff vs direct {errors[way]:.1e}"
        )


if __name__ == "__main__":
    main()
