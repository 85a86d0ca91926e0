"""What every benchmark shares: timing rounds into a median and spread, and describing the
machine measured.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time

import torch

from alexnet.core.runtime import cpu_name
from alexnet.core.version import __version__


def measure(run, count: int, repeats: int) -> dict:
    """Per-second rates of `run()` (which handles `count` items), one warm-up excluded."""
    run()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        rates.append(count / (time.perf_counter() - start))
    return {
        "median": statistics.median(rates),
        "min": min(rates),
        "max": max(rates),
        "repeats": repeats,
    }


def machine() -> dict:
    return {
        "cpu": cpu_name(),
        "cores_given": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "alexnet": __version__,
    }


def device_name(device: torch.device, cpu: str) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu}, {torch.get_num_threads()} threads"


def tool_record(rows: list, **settings) -> dict:
    """The record a script under tools/ writes: this machine, torch's threads, the script's
    settings and rows, and the command that ran it."""
    return {"machine": machine(), "threads": torch.get_num_threads(), **settings, "rows": rows,
            "command": " ".join(["python", *sys.argv])}  # fmt: skip
