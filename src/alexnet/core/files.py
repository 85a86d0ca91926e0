"""Writing files so that a crash or a full disk never leaves a half-written one behind, and
work that several processes share (`held`)."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def atomic_write(
    path: str | os.PathLike, write: Callable[[object], None], mode: str = "wb"
) -> None:
    """Write through `write(handle)` into a temporary file beside `path`, fsync it, then
    rename it over `path`: readers see the old file or the new one, never a mix. On any
    error (ENOSPC included) the temporary file is removed and `path` is left as it was."""
    path = Path(path)
    # the process id in the name: two processes writing one file never share a temporary
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: str | os.PathLike, value) -> None:
    atomic_write(path, lambda f: json.dump(value, f, indent=2), mode="w")


def fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def held(path: str | os.PathLike, wait: bool = False) -> Iterator[str | None]:
    """An exclusive lock on the file `path` (made if need be) for the with block. Yields None
    when this process holds it, else who does ("pid P on HOST"); with `wait`, waits for it.
    The lock is flock(2)'s: the kernel drops it when its holder exits, however it exits, so
    a killed process leaves nothing to clear. Where there is no flock (Windows), every
    process holds it."""
    try:
        import fcntl
    except ImportError:
        yield None
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            yield holder or "another process"
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield None
    finally:
        os.close(fd)
