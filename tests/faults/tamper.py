"""Damaged and hostile checkpoint files, made from a good one: truncations, flipped bits,
files of another type, and pickles that try to run code (which would create `marker`)."""

from __future__ import annotations

import io
import os
import pickle
import random
import zipfile
from pathlib import Path

import torch


class RunsCode:
    """Unpickled, it runs a shell command that creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def tampered(good: Path, marker: Path, truncations: int, flips: int, seed: int = 0) -> dict:
    """name -> bytes of each damaged or hostile file."""
    data = good.read_bytes()
    rng = random.Random(seed)
    out: dict[str, bytes] = {}
    edges = [0, 1, 8, 64, 512, len(data) // 2, len(data) - 22, len(data) - 1]
    cuts = sorted(set(edges + [rng.randrange(1, len(data)) for _ in range(truncations)]))
    for cut in cuts:
        out[f"cut at {cut:,} of {len(data):,} bytes"] = data[:cut]
    for _ in range(flips):
        at, bit = rng.randrange(len(data)), rng.randrange(8)
        flipped = bytearray(data)
        flipped[at] ^= 1 << bit
        out[f"bit {bit} of byte {at:,} flipped"] = bytes(flipped)
    out["empty file"] = b""
    out["text file"] = b"these are not the weights you are looking for\n"
    out["a JPEG named .pt"] = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(200)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "a zip, but not torch's")
    out["a zip of something else"] = buffer.getvalue()
    buffer = io.BytesIO()
    torch.save({"format": "alexnet-checkpoint", "version": 1, "model": RunsCode(marker)}, buffer)
    out["torch.save of an object that runs code"] = buffer.getvalue()
    out["a pickle that runs code"] = pickle.dumps(RunsCode(marker))
    return out
