"""The CUDA paths against the paths the CPU tests check: run on a machine with a GPU.

    python tests/kernels/cuda_checks.py

`alexnet.kernels.lrn_triton` compiled for the GPU against the torch path of
`alexnet.kernels.lrn` on the same GPU (the torch path equals the paper's formula in the CPU
tests), and TowerConv2d one call per tower against one grouped call. test_kernels.py runs
this in a process without TRITON_INTERPRET when CUDA is available. Prints one line per
check; exits 1 on a failure.
"""

from __future__ import annotations

import sys

import torch

from alexnet.nn.conv import TowerConv2d
from alexnet.nn.lrn import local_response_norm

FAILURES: list[str] = []


def check(name: str, ok: bool, detail: str) -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    if not ok:
        FAILURES.append(name)


def lrn_pair(x, grad, groups, backend):
    x = x.clone().requires_grad_()
    out = local_response_norm(x, 5, 1e-4, 0.75, 2.0, groups, backend=backend)
    out.backward(grad)
    return out.detach(), x.grad


def lrn_checks(device: torch.device) -> None:
    gen = torch.Generator(device).manual_seed(0)
    for shape, groups in (((8, 96, 55, 55), 2), ((8, 256, 27, 27), 2), ((4, 12, 7, 5), 1)):
        x64 = (torch.randn(shape, generator=gen, device=device, dtype=torch.float64) * 60).relu()
        g64 = torch.randn(shape, generator=gen, device=device, dtype=torch.float64)
        for layout in (torch.contiguous_format, torch.channels_last):
            x, g = x64.contiguous(memory_format=layout), g64.contiguous(memory_format=layout)
            ref = lrn_pair(x, g, groups, "torch")
            ours = lrn_pair(x, g, groups, "triton")
            nhwc = layout == torch.channels_last
            tag = f"{tuple(shape)} groups {groups} {'NHWC' if nhwc else 'NCHW'}"
            err = ((ours[0] - ref[0]).abs() / ref[0].abs().clamp_min(1e-6)).max().item()
            check(f"LRN float64 forward {tag}", err < 1e-12, f"max rel err {err:.2e}")
            # the gradient is a difference of two terms: errors relative to its scale
            err = ((ours[1] - ref[1]).abs().max() / ref[1].abs().max()).item()
            check(f"LRN float64 backward {tag}", err < 1e-12, f"max err / max |grad| {err:.2e}")
            # float32 and bf16 against float64 of the same rounded inputs
            for dtype, bound in ((torch.float32, 1e-5), (torch.bfloat16, 2**-8)):
                xr = x.to(dtype)
                ours = lrn_pair(xr, g.to(dtype), groups, "triton")
                exact = lrn_pair(xr.double(), g.to(dtype).double(), groups, "torch")
                err = ((ours[0].double() - exact[0]).abs() / exact[0].abs().clamp_min(1e-6)).max()
                check(f"LRN {dtype} forward {tag}", err.item() <= bound * 1.0001,
                      f"max rel err {err.item():.2e} (bound {bound:.1e})")  # fmt: skip
                scale = exact[1].abs().max()
                gerr = ((ours[1].double() - exact[1]).abs().max() / scale).item()
                check(f"LRN {dtype} backward {tag}", gerr <= 4 * bound,
                      f"max err / max |grad| {gerr:.2e}")  # fmt: skip


def tower_conv_checks(device: torch.device) -> None:
    torch.manual_seed(0)
    for maps, out, k in ((96, 256, 5), (384, 384, 3), (384, 256, 3)):
        convs = [
            TowerConv2d(maps, out, k, padding=k // 2, groups=2, mode=mode)
            for mode in ("grouped", "split")
        ]
        convs[1].load_state_dict(convs[0].state_dict())
        x = torch.randn(8, maps, 13, 13, dtype=torch.float64, device=device)
        grad = torch.randn(8, out, 13, 13, dtype=torch.float64, device=device)
        results = []
        for conv in convs:
            conv.to(device, torch.float64)
            xi = x.clone().requires_grad_()
            y = conv(xi)
            y.backward(grad)
            results.append((y, xi.grad, conv.weight.grad))
        errs = [((a - b).abs().max() / b.abs().max()).item() for a, b in zip(*results, strict=True)]
        detail = ", ".join(f"{e:.1e}" for e in errs)
        check(f"TowerConv2d split = grouped, {maps}->{out} k{k}", max(errs) < 1e-12,
              f"max err / max value of output, input grad, weight grad: {detail}")  # fmt: skip


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device")
        return 2
    device = torch.device("cuda")
    print(torch.__version__, torch.cuda.get_device_name(device))
    lrn_checks(device)
    tower_conv_checks(device)
    print(f"{len(FAILURES)} failed" if FAILURES else "all passed")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
