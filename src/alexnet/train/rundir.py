"""A run directory, written and read here (section 5's training, as a folder on disk):

config.yaml         the resolved recipe
version.json        package, git commit, torch, machine, command
metrics.jsonl       one line per epoch: loss, errors, lr, images/s, time
train.log           the log
tensorboard/        TensorBoard events
checkpoints/last.pt the latest state (also written within epochs, see run.checkpoint_*)
checkpoints/best.pt the state after the epoch with the lowest validation top-1 error
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
from pathlib import Path

import torch

from alexnet.core.checks import ConfigError
from alexnet.core.errors import UserError
from alexnet.core.files import atomic_write
from alexnet.core.runtime import cpu_name
from alexnet.core.version import __version__
from alexnet.train.distributed import Processes


def git_commit() -> str | None:
    """`git describe --always --dirty` of the package's tree, None outside a checkout."""
    root = Path(__file__).resolve().parents[3]
    commit = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=40"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    return commit or None


def version_info(device: torch.device, procs: Processes, command: str) -> dict:
    commit = git_commit()
    return {
        "alexnet": __version__,
        "git": commit or None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "host": platform.node(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "world_size": procs.world,
        "command": command,
    }


def read_metrics(run_dir: Path, missing_ok: bool = False) -> list[dict]:
    """The epochs of metrics.jsonl (the last record of each epoch, if a resume repeated it);
    with `missing_ok`, none for a run that has not written one yet."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        if missing_ok:
            return []
        raise UserError(f"{run_dir} has no metrics.jsonl: is it a run directory?")
    epochs: dict[int, dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            if "epoch" in record:
                epochs[record["epoch"]] = record
    return [epochs[e] for e in sorted(epochs)]


class RunDirectory:
    """The files of one run that the trainer writes and the report and studies read."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.metrics_path = self.root / "metrics.jsonl"

    def start(self, config_yaml: str, version: dict) -> None:
        """A new run: its recipe, its version record and an empty metrics log."""
        (self.root / "checkpoints").mkdir(parents=True, exist_ok=True)
        atomic_write(self.root / "config.yaml", lambda f: f.write(config_yaml), "w")
        atomic_write(self.root / "version.json", lambda f: json.dump(version, f, indent=2), "w")
        self.metrics_path.write_text("")

    def update_recipe(self, config_yaml: str) -> None:
        """A resumed run's recipe with the changes it took (alexnet.train.resume), so that
        the next resume starts from it."""
        atomic_write(self.root / "config.yaml", lambda f: f.write(config_yaml), "w")

    def record_holdout(self, record: dict) -> None:
        """The validation images held out of the training split (holdout.json): written when
        the run starts; a resumed run must draw the same ones, or it refuses."""
        path = self.root / "holdout.json"
        if path.exists():
            kept = json.loads(path.read_text(encoding="utf-8"))
            if kept["indices"] != record["indices"]:
                raise ConfigError(
                    f"{path} lists other held-out images than this recipe and store draw "
                    f"({len(kept['indices'])} saved, {len(record['indices'])} now): the "
                    "store or data.holdout changed since the run started"
                )
            return
        atomic_write(path, lambda f: json.dump(record, f), "w")

    def append_metrics(self, metrics: dict) -> None:
        """One epoch's line, on disk before the checkpoint that follows it is written."""
        with open(self.metrics_path, "a") as handle:
            handle.write(json.dumps(metrics) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def keep_metrics_through(self, epoch: int) -> None:
        """Drop the lines of epochs after `epoch`: a resumed run writes them again."""
        path = self.metrics_path
        lines = path.read_text().splitlines() if path.exists() else []
        kept = [line for line in lines if json.loads(line)["epoch"] <= epoch]
        atomic_write(path, lambda f: f.write("".join(f"{x}\n" for x in kept)), "w")
