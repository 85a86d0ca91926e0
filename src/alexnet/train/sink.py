"""Where a run's numbers go: one line per epoch in metrics.jsonl (on disk before the
checkpoint that follows it), TensorBoard's events, and the log.

Only rank 0 writes; on the other ranks a sink takes the numbers and writes nothing.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from alexnet.train.rundir import RunDirectory
from alexnet.train.state import Progress

log = logging.getLogger("alexnet.train.trainer")


def epoch_metrics(progress: Progress, val: dict, complete: bool, **about) -> dict:
    """An epoch's line: its training sums, its validation (`val`: loss, top1_error,
    top5_error, images), and `about` it (num_classes, val_split, val_views, lr,
    images_per_s)."""
    p, sums = progress, progress.sums
    images = max(sums["images"], 1)
    return {
        "epoch": p.epoch + 1,
        "complete": complete,
        "epoch_steps": p.step,  # steps of this epoch done (fewer when the budget ran out)
        "step": p.global_step,
        "train_loss": sums["loss"] / images,
        "train_top1_error": sums["wrong"] / images,
        # each fifth of the epoch's steps in turn (null for parts not reached)
        "train_top1_error_parts": [
            w / n if n else None
            for w, n in zip(sums["part_wrong"], sums["part_images"], strict=True)
        ],
        "val_loss": val["loss"],
        "val_top1_error": val["top1_error"],
        "val_top5_error": val["top5_error"],
        "num_classes": about["num_classes"],
        "val_split": about["val_split"],
        "val_views": about["val_views"],
        "val_images": val["images"],
        "lr": about["lr"],
        "images_per_s": about["images_per_s"],
        "elapsed_s": p.elapsed,  # training steps only
        "wall_s": p.wall,  # with validation and checkpoints
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


class MetricsSink:
    def __init__(self, run_dir: Path, main: bool, global_step: int, log_every_steps: int):
        self.rundir, self.main, self.every = RunDirectory(run_dir), main, log_every_steps
        self.writer = None
        if main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(
                str(run_dir / "tensorboard"), purge_step=global_step or None
            )

    def step(self, global_step: int, loss: float) -> None:
        """A training step's mean loss, every run.log_every_steps steps."""
        if self.writer is not None and global_step % self.every == 0:
            self.writer.add_scalar("train/loss_step", loss, global_step)

    def epoch(self, metrics: dict) -> None:
        if not self.main:
            return
        self.rundir.append_metrics(metrics)
        epoch = metrics["epoch"]
        for key in ("train_loss", "train_top1_error", "val_loss", "val_top1_error"):
            self.writer.add_scalar(key.replace("_", "/", 1), metrics[key], epoch)
        self.writer.add_scalar("val/top5_error", metrics["val_top5_error"], epoch)
        self.writer.add_scalar("lr", metrics["lr"], epoch)
        self.writer.flush()
        log.info(
            "epoch %d%s: train loss %.4f, train error %.2f%%, val top-1 %.2f%%, top-5 %.2f%%, "
            "lr %g, %.0f images/s",
            epoch,
            "" if metrics["complete"] else f" (stopped after {metrics['epoch_steps']} steps)",
            metrics["train_loss"],
            100 * metrics["train_top1_error"],
            100 * metrics["val_top1_error"],
            100 * metrics["val_top5_error"],
            metrics["lr"],
            metrics["images_per_s"] or 0,
        )

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
