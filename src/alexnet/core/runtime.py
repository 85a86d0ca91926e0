"""Where a network runs and in what precision, and the process settings that make CPU
training fast: shared by training, evaluation and the benchmarks.

- `resolve_device`: "auto", "cpu", "cuda", "cuda:1" to a torch.device.
- `resolve_precision`, `auto_precision`, `autocast`, `input_dtype`: fp32, bf16, fp16, fp64,
  and "auto" (bf16 where the hardware computes in bf16).
- `keep_freed_memory`: glibc's malloc hands every block over 32 MiB (and, by default,
  anything over 128 KiB) to the kernel with mmap and returns it with munmap when freed. A
  training step allocates and frees gigabytes of activations, so every step page-faults them
  in afresh, a large share of a CPU step in kernel time (docs/benchmarks.md, "Keeping freed
  memory"). This tells glibc to serve all blocks from its heap and keep what is freed for the
  next step, as the allocators PyTorch's performance guides recommend (jemalloc, tcmalloc)
  do. Memory then stays at the peak of a step instead of being returned between steps. Set
  ALEXNET_MALLOC=system to leave glibc's defaults alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import sys

import torch

from alexnet.core.checks import ConfigError

# mallopt parameters, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse; True if it did (False elsewhere, or when
    ALEXNET_MALLOC=system). Idempotent; affects the whole process."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("ALEXNET_MALLOC", "keep") == "system" or not sys.platform.startswith("linux"):
        return _applied
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return _applied
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    # No mmap for big blocks; never trim the heap's top back to the kernel.
    _applied = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    return _applied


# The CPU flags (as /proc/cpuinfo names them, x86 and Arm) of bf16 matrix instructions.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_has_bf16(cpuinfo: str | None = None) -> bool | None:
    """Whether this CPU has bf16 matrix instructions, from /proc/cpuinfo (or the given text);
    None where it cannot tell. Without them torch's bf16 matrix products run many times
    slower than float32 (docs/benchmarks.md, "On a CPU without AVX-512")."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return None
    flags = set()
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            flags.update(value.split())
    return bool(flags & BF16_FLAGS) if flags else None


def cpu_name() -> str:
    """The processor's model name (/proc/cpuinfo), for the records: float arithmetic, and so
    a run's numbers, differ in their last bits from one processor to another."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def auto_precision(device) -> tuple[str, str]:
    """What `precision: auto` runs on `device` (a torch.device), and why: bf16 autocast
    where the hardware computes bf16 products natively (GPUs that support it; CPUs with
    AVX-512-BF16, AMX or Arm's bf16), fp32 everywhere else, including where it cannot tell."""
    import torch

    if device.type == "cuda":
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return "bf16", "this GPU computes in bf16"
        return "fp32", "this GPU has no native bf16"
    if device.type == "cpu":
        has = cpu_has_bf16()
        if has:
            return "bf16", "this CPU has bf16 instructions"
        if has is False:
            return "fp32", "this CPU has no bf16 instructions: bf16 would be many times slower"
        return "fp32", "cannot tell whether this CPU has bf16 instructions"
    return "fp32", f"no bf16 rule for {device.type} devices"


def resolve_precision(precision: str, device, log: logging.Logger) -> str:
    """`precision` itself, or for "auto" the precision `auto_precision` picks; logs the
    choice, and warns of bf16 asked for by name on a CPU without bf16 instructions."""
    if precision == "auto":
        chosen, why = auto_precision(device)
        log.info("precision auto: %s (%s)", chosen, why)
        return chosen
    if precision == "bf16" and device.type == "cpu" and cpu_has_bf16() is False:
        log.warning(
            "this CPU has no bf16 instructions: bf16 runs many times slower than fp32 here; "
            "fp32 (or auto) is faster"
        )
    return precision


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"run.device is {name} but this torch has no CUDA device")
        if device.index is None:
            device = torch.device("cuda", local_rank or 0)
        torch.cuda.set_device(device)
    return device


def autocast(device: torch.device, precision: str):
    """The autocast context of a precision setting (fp32, fp64: none)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp16":
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def input_dtype(precision: str) -> torch.dtype | None:
    """The dtype a precision setting feeds the network (None: as the loader made it)."""
    return torch.float64 if precision == "fp64" else None


def widened(logits: torch.Tensor) -> torch.Tensor:
    """Logits in float32 at least, for the softmax and the loss."""
    return logits if logits.dtype == torch.float64 else logits.float()


class InferenceNetwork(torch.nn.Module):
    """A network made ready to answer in `precision` on `device`, as predict, eval and serve
    run it. bf16: the weights cast once, which computes what autocast computes (in one
    memory format the same logits bit for bit: conv, linear, pooling and the LRN all run on
    bf16 tensors under autocast too) without casting every weight again for each batch
    (5x the images/s at batch 1 on a 2-core CPU, docs/benchmarks.md). fp16 keeps autocast.
    On a CPU the weights are in channels_last memory: oneDNN's convolutions and pooling
    are faster there (1.5x for torchvision's architecture at batch 128), their sums in
    another order (logits within 1e-6 of NCHW's in fp32, within bf16's rounding in bf16);
    the fully connected layers run oneDNN's inner product on weights laid out for it once
    (`PackedLinear`), and the convolutions oneDNN's convolution likewise (`PackedConv2d`).
    The network is copied, so the one given stays as it was, unless `copy` is False (a
    server's one copy: its weights are then this one's)."""

    def __init__(self, network: torch.nn.Module, device: torch.device, precision: str,
                 copy: bool = True) -> None:  # fmt: skip
        super().__init__()
        import copy as copying

        self.device, self.precision = device, precision
        self.dtype = {"bf16": torch.bfloat16, "fp64": torch.float64}.get(precision)
        if copy:
            network = copying.deepcopy(network)
        network = network.eval().to(device, self.dtype)
        if device.type == "cpu":
            network = network.to(memory_format=torch.channels_last)
            _pack_layers(network)
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, self.dtype or x.dtype)
        with autocast(self.device, "fp16" if self.precision == "fp16" else "fp32"):
            return self.network(x)


class PackedLinear(torch.nn.Module):
    """A fully connected layer for inference on a CPU: oneDNN's inner product on the
    weights reordered once into its blocked layout (the op Inductor's CPU freezing uses),
    faster than `F.linear` at every batch on the project's CPUs (docs/benchmarks.md). The
    sums run in another order: within float rounding of F.linear's."""

    #: the batch the layout is chosen for; measured best of 1, 8 and 128 at every batch
    BATCH_HINT = 8

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach()
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, self.BATCH_HINT)
        self.bias = None if linear.bias is None else linear.bias.detach()
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape, rows = x.shape[:-1], x.reshape(-1, self.in_features).contiguous()
        out = torch.ops.mkldnn._linear_pointwise(rows, self.packed, self.bias, "none", [], "")
        return out.reshape(*shape, self.out_features)


class PackedConv2d(torch.nn.Module):
    """A convolution for inference on a CPU: oneDNN's convolution on the weights reordered
    once into its blocked layout (as Inductor's CPU freezing does), where `F.conv2d` in eager
    mode reorders them again on every call. The same kernel runs, so the outputs are the
    same bits; a forward pass of alexnet2012 at batch 1 is faster by what the reorders cost
    (docs/benchmarks-runtimes.md). A convolution that pads its input itself first (conv1
    counted as the released code counts it: a `pad` method) still does."""

    #: the batch the layout is chosen for (with the maps' size of the first input seen)
    BATCH_HINT = 8

    def __init__(self, conv: torch.nn.Conv2d) -> None:
        super().__init__()
        self.padding, self.stride = list(conv.padding), list(conv.stride)
        self.dilation, self.groups = list(conv.dilation), conv.groups
        self.weight: torch.Tensor | None = conv.weight.detach()  # until packed
        self.packed: torch.Tensor | None = None
        self.bias = None if conv.bias is None else conv.bias.detach()
        self.pad = getattr(conv, "pad", None)
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels

    def _pack(self, x: torch.Tensor) -> torch.Tensor:
        """The weights reordered for maps shaped like x's. Without the input's shape oneDNN
        chose a layout that sent alexnet2012's conv4 in bf16 to a slow kernel (19 ms at
        batch 1, against 0.3); a layout chosen for one shape serves every other."""
        with torch.inference_mode(False):  # a plain tensor, usable outside inference mode
            return torch.ops.mkldnn._reorder_convolution_weight(
                self.weight, self.padding, self.stride, self.dilation, self.groups,
                [self.BATCH_HINT, *x.shape[1:]],
            )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            x = self.pad(x)
        # in the layout the weights are packed for: an NCHW input (the image) took a slow
        # path in bf16
        x = x.contiguous(memory_format=torch.channels_last)
        if self.packed is None:
            self.packed, self.weight = self._pack(x), None  # the packed copy serves all
        return torch.ops.mkldnn._convolution_pointwise(
            x, self.packed, self.bias, self.padding, self.stride, self.dilation, self.groups,
            "none", [], "",
        )  # fmt: skip


def _packable_conv(module: torch.nn.Module) -> bool:
    """A 2-D convolution oneDNN runs as one call: zero padding given in pixels, and (for the
    towers' TowerConv2d) the grouped call, not one call per tower."""
    return (
        isinstance(module, torch.nn.Conv2d)
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
        and getattr(module, "mode", "grouped") in ("auto", "grouped")
    )


def _pack_layers(network: torch.nn.Module) -> None:
    """Each nn.Linear of `network` as a PackedLinear and each convolution as a PackedConv2d,
    in float32 and bf16, where this torch has oneDNN's ops (a CPU build with mkldnn); a
    layer stays as it is otherwise."""
    if not torch.backends.mkldnn.is_available():
        return
    for parent in list(network.modules()):
        for name, child in list(parent.named_children()):
            if getattr(child, "weight", None) is None or child.weight.dtype not in (
                torch.float32,
                torch.bfloat16,
            ):
                continue
            packed = (
                PackedLinear
                if type(child) is torch.nn.Linear
                else PackedConv2d
                if _packable_conv(child)
                else None
            )
            if packed is not None:
                try:
                    setattr(parent, name, packed(child))
                except RuntimeError:  # an op this build lacks: the layer as it was
                    return
