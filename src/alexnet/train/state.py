"""Where a run is (`Progress`), and its checkpoints written so that a kill loses nothing.

The checkpoint itself (what it holds, how it is read) is alexnet.models.checkpoint's; this
module writes a run's two: `last.pt` at every save, and `best.pt`, the same bytes, when the
validation error improved.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from alexnet.core.files import fsync_dir
from alexnet.models import checkpoint as ckpt

#: The training error is also kept for each fifth of an epoch, as cuda-convnet reported it
#: for each of CIFAR-10's five training batches: Figure 1's curve, finer than one epoch.
EPOCH_PARTS = 5


def epoch_sums() -> dict:
    return {"loss": 0.0, "wrong": 0.0, "images": 0.0,
            "part_wrong": [0.0] * EPOCH_PARTS, "part_images": [0.0] * EPOCH_PARTS}  # fmt: skip


@dataclass
class Progress:
    """Where a run is; saved in every checkpoint."""

    epoch: int = 0  # epochs completed
    step: int = 0  # steps completed within the current epoch
    global_step: int = 0
    elapsed: float = 0.0  # seconds of training steps so far (no validation), over all sessions
    # wall-clock seconds so far, over all sessions: training, validation and checkpoints (up
    # to the last checkpoint of a session that was killed)
    wall: float = 0.0
    best_top1: float | None = None
    bad_steps: int = 0
    # sums over the current epoch's steps so far, summed over ranks
    sums: dict = field(default_factory=epoch_sums)

    def to_dict(self) -> dict:
        return {**self.__dict__, "sums": copy.deepcopy(self.sums)}

    @classmethod
    def from_dict(cls, saved: dict) -> Progress:
        # a checkpoint from before a sum existed starts it at zero
        return cls(**{**saved, "sums": {**epoch_sums(), **saved["sums"]}})


def write_checkpoints(folder: Path, state: Callable[[], dict], best: bool) -> None:
    """`last.pt` from `state()`; with `best`, `best.pt` too, as a hard link to the same
    bytes (a copy where links are not allowed), itself renamed into place."""
    ckpt.save(folder / "last.pt", state())
    if not best:
        return
    temporary = folder / ".best.pt.tmp"
    temporary.unlink(missing_ok=True)
    try:
        os.link(folder / "last.pt", temporary)
    except OSError:
        ckpt.save(temporary, state())
    os.replace(temporary, folder / "best.pt")
    fsync_dir(folder)
