"""Process settings that make CPU training fast, applied by the commands that run a network.

glibc's malloc hands every block over 32 MiB (and, by default, anything over 128 KiB) to
the kernel with mmap and returns it with munmap when freed. A training step of this network
allocates and frees gigabytes of activations, so every step page-faults them in afresh: on
the project's 2-core machine that is 0.5-0.7 million page faults and over a second of kernel
time per step, a quarter of the step. `keep_freed_memory` tells glibc to serve all blocks
from its heap and keep what is freed for the next step, as the allocators PyTorch's
performance guides recommend (jemalloc, tcmalloc) do. Memory then stays at the peak of a step
instead of being returned between steps.

Set ALEXNET_MALLOC=system to leave glibc's defaults alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

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
    None where it cannot tell. Without them torch's bf16 matrix products run about 30x slower
    than float32 (docs/benchmarks.md, "On a CPU without AVX-512")."""
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
