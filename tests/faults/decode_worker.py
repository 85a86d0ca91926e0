"""Decode each file of a folder as `alexnet data prepare` does, under a memory limit, and
report each one's outcome, time and peak memory: `python decode_worker.py FOLDER LIMIT_MIB`.

The limit (RLIMIT_DATA: the heap and private mappings, what a decoder allocates) is set
LIMIT_MIB above what the process holds once its imports are done; the peak of each file is
measured from the resident memory before it (the kernel's peak is reset between files)."""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from alexnet.data.images import BadImage, decode


def status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def main(folder: str, limit_mib: str) -> None:
    extra = int(limit_mib) << 20
    resource.setrlimit(resource.RLIMIT_DATA, (status("VmData") + extra, resource.RLIM_INFINITY))
    rows = []
    for path in sorted(Path(folder).iterdir()):
        Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again here
        before = status("VmRSS")
        start = time.perf_counter()
        try:
            pixels = decode(path.read_bytes(), 256)
            outcome, reason = "decoded", f"{pixels.shape}"
        except BadImage as error:
            outcome, reason = "refused", str(error)
        except BaseException as error:  # what the test exists to catch
            outcome, reason = "uncaught", f"{type(error).__name__}: {error}"
        rows.append({
            "file": path.name, "outcome": outcome, "reason": reason[:200],
            "seconds": round(time.perf_counter() - start, 4),
            "peak_mib": round((status("VmHWM") - before) / 2**20, 1),
        })  # fmt: skip
    print(json.dumps(rows))


if __name__ == "__main__":
    main(*sys.argv[1:])
