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
