"""A listing: every image of a dataset by a *locator* a worker process can open without the
others, with its label and a name for reports, and what opens them (`Reader`).

Locators: ("file", path), ("tar", path, offset, size) for a member stored in a tar (nested
tars included: ILSVRC-2012's training tar of per-class tars), ("zip", path, member), or
("array", index) for datasets that ship as pixel arrays (Fashion-MNIST, CIFAR-10). The
listers of each dataset are alexnet.data.sources'.
"""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from alexnet.core.errors import UserError


class SourceError(UserError):
    """The source is not what it should be; the message says what was expected."""


@dataclass
class Split:
    locators: list[tuple] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # shown in reports: path inside the source

    def add(self, locator: tuple, label: int, name: str) -> None:
        self.locators.append(locator)
        self.labels.append(label)
        self.names.append(name)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Listing:
    source: str
    class_ids: list[str]
    class_names: list[str]
    splits: dict[str, Split]
    channels: int = 3
    native_size: int | None = None  # small-image datasets are stored at this size
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # split -> (N, H, W, C) uint8
    provenance: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# Reading a locator


class Reader:
    """Opens locators, keeping archives open across calls (one Reader per process)."""

    def __init__(self) -> None:
        self._files: dict[str, io.BufferedReader] = {}
        self._zips: dict[str, zipfile.ZipFile] = {}

    def read(self, locator: tuple) -> bytes:
        kind = locator[0]
        if kind == "file":
            return Path(locator[1]).read_bytes()
        if kind == "tar":
            _, path, offset, size = locator
            if path not in self._files:
                self._files[path] = open(path, "rb")  # noqa: SIM115 - kept open on purpose
            handle = self._files[path]
            handle.seek(offset)
            return handle.read(size)
        if kind == "zip":
            _, path, member = locator
            if path not in self._zips:
                self._zips[path] = zipfile.ZipFile(path)
            return self._zips[path].read(member)
        raise UserError(f"unknown locator {locator!r}")

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        for archive in self._zips.values():
            archive.close()
        self._files.clear()
        self._zips.clear()


def is_hidden(name: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in Path(name).parts)


def files_under(directory: Path) -> list[Path]:
    """Every regular, non-hidden file below `directory`, sorted, so listings are reproducible."""
    found = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not is_hidden(d))
        found.extend(Path(root) / f for f in sorted(files) if not is_hidden(f))
    return found


def tar_members(path: Path, handle=None) -> list[tarfile.TarInfo]:
    """The regular members of a plain (uncompressed) tar; offsets are absolute in the file."""
    try:
        if handle is None:
            with tarfile.open(path, mode="r:") as archive:
                return [m for m in archive if m.isfile()]
        with tarfile.open(fileobj=handle, mode="r:") as archive:
            return [m for m in archive if m.isfile()]
    except tarfile.ReadError as error:
        raise SourceError(
            f"{path} is not an uncompressed tar archive ({error}); ILSVRC-2012 ships its "
            "images as plain .tar files"
        ) from None


def array_split(labels: np.ndarray, prefix: str) -> Split:
    split = Split()
    split.labels = [int(x) for x in labels]
    split.locators = [("array", i) for i in range(len(labels))]
    split.names = [f"{prefix}[{i}]" for i in range(len(labels))]
    return split
