"""The loops: one training step, one epoch of them, and validation, as plain functions.

Determinism: the order of images in an epoch is a function of (seed, epoch), each image's
augmentation of (seed, epoch, index) (alexnet.data.augment), and dropout's masks of
(seed, epoch, step, rank) (`dropout_seed`). So a resumed run repeats exactly what the killed
one would have done.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from alexnet.core.progress import bar as progress_bar
from alexnet.core.runtime import autocast, input_dtype, widened
from alexnet.data.loader import epoch_batches, make_loader
from alexnet.evaluate.metrics import softmax_batches, topk_correct
from alexnet.train.copies import WorkingCopies
from alexnet.train.data import RunData
from alexnet.train.distributed import Processes, all_sum
from alexnet.train.hybrid import loss_and_mistakes, reduce_conv_gradients
from alexnet.train.optim import set_lr
from alexnet.train.sink import MetricsSink
from alexnet.train.state import EPOCH_PARTS, Progress

log = logging.getLogger("alexnet.train.trainer")


class TrainingError(RuntimeError):
    """A run that had to stop; the message says why and what is kept."""


def dropout_seed(seed: int, epoch: int, step: int, rank: int) -> int:
    """Dropout's masks are drawn from this seed, so they do not depend on a resume point."""
    return (((seed * 1_000_003 + epoch) * 1_000_003 + step) * 1_009 + rank) % (2**63)


@dataclass
class Step:
    """The training step (section 5): what it runs, updates and where."""

    model: nn.Module  # what trains: compiled, DistributedDataParallel, or the network
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    device: torch.device
    precision: str
    channels_last: bool
    render: Callable | None  # the device renderer of data.render=device batches
    accumulate: int = 1  # micro-batches a step (optim.accumulate)
    synced: nn.Module | None = None  # the DistributedDataParallel network, when there is one
    # run.parallel: hybrid: every rank's logits come back (fc8 gathers them), the loss is the
    # whole batch's, and the convolutional layers' gradients are summed after the last part
    hybrid: bool = False
    # bf16 on a CPU: the forward pass on the weights' bf16 copies (alexnet.train.copies)
    copies: WorkingCopies | None = None

    def forward_backward(self, images, labels) -> tuple[float, int]:
        """The loss and gradients of one batch; returns (mean loss, top-1 mistakes).

        In `accumulate` micro-batches of equal size, each loss divided by their number, so
        that the summed gradients are the whole batch's mean loss's; under DDP the
        gradients are reduced across ranks once, after the last (`no_sync` before it)."""
        device = self.device
        if self.render is not None:
            images = self.render(images)
        images = images.to(device, input_dtype(self.precision), non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        self.optimizer.zero_grad(set_to_none=True)
        k = self.accumulate
        total, wrong = 0.0, 0
        parts = list(zip(images.chunk(k), labels.chunk(k), strict=True))
        for i, (x, y) in enumerate(parts):
            quiet = self.synced is not None and i < len(parts) - 1
            with self.synced.no_sync() if quiet else contextlib.nullcontext():
                with autocast(device, self.precision):
                    logits = (self.copies or self.model)(x)
                    if self.hybrid:
                        loss, mistakes = loss_and_mistakes(widened(logits), y)
                    else:
                        loss = F.cross_entropy(widened(logits), y)
                        mistakes = int((logits.argmax(dim=1) != y).sum())
                self.scaler.scale(loss / len(parts) if len(parts) > 1 else loss).backward()
            total += float(loss.detach()) / len(parts)
            wrong += mistakes
        if self.hybrid:
            reduce_conv_gradients(self.model)
        return total, wrong

    def update(self) -> None:
        self.scaler.step(self.optimizer)
        self.scaler.update()


def train_one_epoch(
    step: Step,
    data: RunData,
    progress: Progress,
    config,
    procs: Processes,
    sink: MetricsSink,
    save: Callable[[], None],
    stopping: Callable[[], bool],
    last_checkpoint: Path,
    lr: float,
    warmup=None,
) -> tuple[bool, float | None]:
    """Train the rest of the current epoch: (whether it finished before the time budget
    ran out, images/s). `save()` writes the run's state (every run.checkpoint_minutes or
    run.checkpoint_steps within the epoch); `stopping()` says Ctrl-C or SIGTERM came, which
    saves and raises KeyboardInterrupt after the step. `warmup` (schedule.Warmup): the rate
    of each step while it lasts, `lr` (the schedule's) after."""
    p, run = progress, config.run
    batches = epoch_batches(
        data.train_indices, config.optim.batch_size, run.seed, p.epoch, procs.rank, procs.world
    )
    data.train_set.set_epoch(p.epoch)
    loader = make_loader(
        data.train_set,
        batches=batches[p.step :],
        num_workers=config.data.workers,
        device=step.device,
    )
    step.model.train()
    bar = progress_bar(
        len(batches),
        f"epoch {p.epoch + 1}/{run.epochs}",
        "step",
        show=procs.main,
        initial=p.step,
        dynamic_ncols=True,
        leave=False,
    )
    last_save = started = tick = time.monotonic()
    seen = 0
    budget = run.budget_minutes * 60 if run.budget_minutes is not None else math.inf
    finished = True
    for images, labels in loader:
        if p.elapsed >= budget:
            finished = False
            break
        if warmup is not None:
            rate = warmup.rate(p.epoch, p.step, len(batches))
            set_lr(step.optimizer, lr if rate is None else rate)
        torch.manual_seed(dropout_seed(run.seed, p.epoch, p.step, procs.rank))
        loss, wrong = step.forward_backward(images, labels)
        # summed over ranks before deciding, so that every rank steps or none does
        totals = all_sum([loss * len(labels), wrong, len(labels)], procs, step.device)
        if math.isfinite(totals[0]):
            step.update()
            p.bad_steps = 0
            for key, value in zip(("loss", "wrong", "images"), totals, strict=True):
                p.sums[key] += value
            part = p.step * EPOCH_PARTS // len(batches)
            p.sums["part_wrong"][part] += totals[1]
            p.sums["part_images"][part] += totals[2]
        else:
            non_finite(p, totals[0], run.max_bad_steps, last_checkpoint)
        p.step += 1
        p.global_step += 1
        seen += totals[2]
        bar.set_postfix(
            loss=f"{p.sums['loss'] / max(p.sums['images'], 1):.3f}",
            lr=f"{lr:g}",
            img_s=f"{seen / max(time.monotonic() - started, 1e-9):.0f}",
        )
        bar.update(1)
        sink.step(p.global_step, totals[0] / totals[2])
        now = time.monotonic()
        p.elapsed += now - tick
        tick = now
        due = (run.checkpoint_steps and p.step % run.checkpoint_steps == 0) or (
            now - last_save >= 60 * run.checkpoint_minutes
        )
        if stopping():
            save()
            log.warning("saved %s; continue with --resume", last_checkpoint.parent.parent)
            raise KeyboardInterrupt
        if due and p.step < len(batches) and not p.bad_steps:
            save()
            last_save = tick = time.monotonic()
    bar.close()
    return finished, (seen / max(time.monotonic() - started, 1e-9) if seen else None)


def non_finite(p: Progress, value: float, limit: int, last: Path) -> None:
    """A step whose loss is not finite: skipped, and after `limit` in a row, the end."""
    p.bad_steps += 1
    log.warning(
        "step %d: loss is %s; update skipped (%d of %d allowed in a row)",
        p.global_step + 1,
        value,
        p.bad_steps,
        limit,
    )
    if p.bad_steps >= limit:
        kept = (
            f"the last good checkpoint, {last}, is intact"
            if last.exists()
            else "no checkpoint had been written yet"
        )
        raise TrainingError(
            f"training diverged: {limit} non-finite losses in a row (last at epoch "
            f"{p.epoch + 1}, step {p.step + 1}); {kept}. Lower optim.lr (or, from the paper's "
            "initialization, use model.init=kaiming with data.normalize=std), then start "
            "again or --resume"
        )


def validate(
    model: nn.Module, data: RunData, config, procs: Processes, device, render=None
) -> dict:
    """Loss, top-1 and top-5 error on the validation images, summed over ranks."""
    size = config.optim.batch_size
    indices = data.val_indices
    batches = [indices[i : i + size].tolist() for i in range(0, len(indices), size)]
    loader = make_loader(
        data.val_set,
        batches=batches[procs.rank :: procs.world],
        num_workers=config.data.workers,
        device=device,
    )
    counts = [0.0, 0.0, 0.0, 0.0]  # loss sum, top-1 hits, top-5 hits, images
    for probs, labels in softmax_batches(
        [model], loader, device, config.run.precision, config.run.channels_last, render=render
    ):
        hits = topk_correct(probs, labels)
        picked = probs.gather(1, labels[:, None]).clamp_min(1e-12)
        counts[0] += float(-picked.log().sum())
        counts[1] += hits[1]
        counts[2] += hits[5]
        counts[3] += len(labels)
    loss, top1, top5, n = all_sum(counts, procs, device)
    return {
        "loss": loss / n,
        "top1_error": 1 - top1 / n,
        "top5_error": 1 - top5 / n,
        "images": int(n),
    }
