"""Training with the paper's recipe (section 5): resumable, on one CPU or many GPUs.

    train(config, run_dir)            a new run
    train(config, run_dir, resume=True)  continue a killed one from checkpoints/last.pt

`train` is the linear story: the processes, then a `Trainer`, whose parts each live in a
module of their own: the data (alexnet.train.data), the network (alexnet.train.network),
the update rule and schedule (alexnet.train.optim, alexnet.train.schedule), the loops
(alexnet.train.loop), where the numbers go (alexnet.train.sink), where the run is and its
checkpoints (alexnet.train.state), and what a resume may change (alexnet.train.resume).
The `Trainer` holds what they share for one run and saves and restores it.

A run directory holds the recipe, the version, metrics.jsonl, the log, TensorBoard events and
the checkpoints (`alexnet.train.rundir`). A resumed run repeats exactly what the killed one
would have done (alexnet.train.loop), and on CPU its final weights are bit-identical to an
uninterrupted run's.

Several processes: launch with torchrun. Each rank takes its slice of every global batch of
optim.batch_size images; gradients are averaged by DistributedDataParallel (gloo on CPU,
nccl on GPU); metrics are summed over ranks; only rank 0 writes.
"""

from __future__ import annotations

import gc
import logging
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist

from alexnet.core.checks import ConfigError
from alexnet.core.digest import content_digest
from alexnet.core.runtime import keep_freed_memory, resolve_precision
from alexnet.core.version import __version__
from alexnet.data.render import DeviceRenderer
from alexnet.data.store import MANIFEST, StoreError
from alexnet.models import checkpoint as ckpt
from alexnet.models.record import ModelRecord, Provenance
from alexnet.models.transfer import sha256
from alexnet.train import copies as working_copies
from alexnet.train import resume as resume_contract
from alexnet.train.config import TrainConfig
from alexnet.train.data import build_data
from alexnet.train.distributed import Processes, start_processes
from alexnet.train.loop import Step, TrainingError, train_one_epoch, validate
from alexnet.train.network import build_network
from alexnet.train.optim import make_optimizer, scaled_lr, set_lr
from alexnet.train.rundir import RunDirectory, git_commit, version_info
from alexnet.train.schedule import Warmup, make_schedule
from alexnet.train.sink import MetricsSink, epoch_metrics
from alexnet.train.state import Progress, epoch_sums, write_checkpoints

__all__ = ["Trainer", "TrainingError", "train"]

log = logging.getLogger("alexnet.train.trainer")


def _own_message(error: Exception) -> str:
    """An exception's message without what a DataLoader worker wraps it in ("Caught X in
    DataLoader worker process 0. Original Traceback ...": the message is the last line)."""
    text = str(error)
    if "Original Traceback" in text:
        text = text.strip().splitlines()[-1].split(": ", 1)[-1]
    return text


def train(config: TrainConfig, run_dir: str | Path, resume: bool = False, command: str = ""):
    """Run (or continue) training; returns the last epoch's metrics."""
    keep_freed_memory()
    run_dir = Path(run_dir)
    # with the towers on two devices, the batch and the logits live on tower A's
    towers = config.run.tower_devices
    had_group = dist.is_initialized()
    procs, device = start_processes(towers[0] if towers else config.run.device)
    own_group = not had_group and dist.is_initialized()
    _setup_logging(procs)
    try:
        metrics = Trainer(config, run_dir, procs, device, resume, command).run()
        if own_group:
            # DistributedDataParallel's reducer sits in reference cycles: collected now, while
            # its process group exists, and not at exit, where destroying it after the group
            # aborts the process (std::terminate)
            gc.collect()
            dist.barrier()  # no rank tears down gloo while another still talks to it
        return metrics
    finally:
        logging.getLogger("alexnet").handlers.clear()
        if own_group:
            # Left to the interpreter's exit, gloo's threads can be destroyed while
            # joinable, which aborts the process (std::terminate) after a finished run.
            dist.destroy_process_group()


def _setup_logging(procs: Processes) -> None:
    logger = logging.getLogger("alexnet")
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.INFO if procs.main else logging.WARNING)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(console)


def _log_to_file(run_dir: Path, resume: bool) -> None:
    """Also log into the run directory (rank 0, once the run is known to be valid)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run_dir / "train.log", mode="a" if resume else "w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logging.getLogger("alexnet").addHandler(handler)


def check_settings(config: TrainConfig, device: torch.device, procs: Processes) -> None:
    """Settings that do not combine, refused before anything is built."""
    run = config.run
    if run.precision == "fp16" and device.type != "cuda":
        raise ConfigError("run.precision fp16 needs a GPU (loss scaling); on CPU use bf16")
    if procs.world > 1 and run.tower_devices:
        raise ConfigError(
            "run.tower_devices splits one network over two devices; "
            "it does not combine with several processes"
        )
    if run.compile and run.tower_devices:
        raise ConfigError("run.compile does not combine with run.tower_devices")
    if run.parallel == "hybrid" and procs.world == 1:
        raise ConfigError("run.parallel: hybrid splits fc6-fc8 over several processes; "
                          "launch with torchrun --nproc-per-node=2 or more")  # fmt: skip
    if run.parallel == "hybrid" and (run.compile or run.tower_devices):
        raise ConfigError("run.parallel: hybrid does not combine with run.compile or "
                          "run.tower_devices")  # fmt: skip
    if not config.data.store:
        raise ConfigError("data.store is not set: prepare one with `alexnet data prepare`")
    batch, world, parts = config.optim.batch_size, procs.world, config.optim.accumulate
    if batch < world:
        raise ConfigError(f"optim.batch_size {batch} is fewer images a step than the "
                          f"{world} processes")  # fmt: skip
    if batch % world == 0 and (batch // world) % parts:
        raise ConfigError(f"optim.batch_size {batch} over {world} processes is "
                          f"{batch // world} images each; optim.accumulate {parts} must divide "
                          "it")  # fmt: skip


def open_checkpoint(run_dir: Path, resume: bool, procs: Processes) -> dict | None:
    """The checkpoint to resume from; a new run refuses a directory that holds one."""
    if resume:
        if procs.main:
            for stale in (run_dir / "checkpoints").glob(".*.tmp"):
                stale.unlink(missing_ok=True)  # what a save cut short by a kill left
                log.info("removed %s, left by a save that was cut short", stale)
        return ckpt.load(ckpt.find(run_dir), map_location="cpu")
    if procs.main and (run_dir / "checkpoints" / "last.pt").exists():
        raise ConfigError(
            f"{run_dir} already holds a run; continue it with --resume {run_dir}, or choose "
            "another --out"
        )
    return None


class Trainer:
    """One run of the recipe: its data, network, update rule, schedule, progress and sink,
    saved together in each checkpoint; `run` trains it to its end."""

    def __init__(self, config, run_dir, procs, device, resume, command):
        self.config, self.run_dir, self.procs, self.device = config, run_dir, procs, device
        self.rundir = RunDirectory(run_dir)
        config.run.precision = resolve_precision(config.run.precision, device, log)  # saved
        check_settings(config, device, procs)
        checkpoint = open_checkpoint(run_dir, resume, procs)
        self.resumed_changes = {}
        if checkpoint is not None:  # what the command changes, refused unless it may
            self.resumed_changes = resume_contract.changes(checkpoint["config"], config.to_dict())
            p = checkpoint["progress"]
            resume_contract.check(self.resumed_changes, p["epoch"], p["step"])
        self.data = build_data(config)
        self.nets = build_network(
            config, self.data.num_classes, self.data.store.channels, checkpoint, device, procs
        )
        self.preprocessing, note = self._choose_preprocessing(checkpoint)
        self.optimizer = make_optimizer(self.nets.plain, config.optim)
        self.schedule = make_schedule(config.schedule, scaled_lr(config.optim))
        self.warmup = (Warmup(config.optim.lr, scaled_lr(config.optim),
                              config.schedule.warmup_epochs)
                       if config.schedule.warmup_epochs else None)  # fmt: skip
        self.scaler = torch.amp.GradScaler("cuda", enabled=config.run.precision == "fp16")
        self.progress = Progress()
        # the record's provenance (model_record): made on the first save; what a resumed
        # run started from and the last validation's numbers come from its checkpoint
        self.provenance, self.started_from, self.val_metrics = None, self.nets.started_from, {}
        self.train_render = DeviceRenderer.of(self.data.train_set, device)
        self.val_render = DeviceRenderer.of(self.data.val_set, device)
        self.step = Step(
            self.nets.step_model,
            self.optimizer,
            self.scaler,
            device,
            config.run.precision,
            config.run.channels_last,
            self.train_render,
            config.optim.accumulate,
            self.nets.model if procs.world > 1 and not self.nets.hybrid else None,
            self.nets.hybrid,
            copies=(working_copies.WorkingCopies(self.nets.plain, self.optimizer)
                    if working_copies.applies(config, device, procs.world) else None),
        )  # fmt: skip
        if procs.main:
            _log_to_file(run_dir, resume)
        if checkpoint is not None:
            self._restore(checkpoint)
        else:
            self._start(command, note)
        if procs.main and self.data.held_out is not None:
            self.rundir.record_holdout(self.data.holdout_record(config.data))
        self.sink = MetricsSink(
            run_dir, procs.main, self.progress.global_step, config.run.log_every_steps
        )

    def _choose_preprocessing(self, checkpoint: dict | None):
        """The mean and scale the network's inputs are made with, and what to log about it:
        a fine-tuned network keeps its source's (torchvision's weights expect torchvision's
        scaling, whatever the new store's statistics), unless data.preprocessing says
        `store` on purpose; a resumed run keeps what it started with. The resizing is
        always this store's: its images were made so."""
        store, source = self.data.preprocessing(), self.nets.source
        chosen, said = store, None
        if checkpoint is not None:
            started = checkpoint["record"].preprocessing
            chosen = replace(store, mean=started.mean, scale=started.scale)
        elif source is not None and self.config.data.preprocessing == "source":
            theirs = source.preprocessing
            if theirs.channels != store.channels:
                raise ConfigError(
                    f"the source makes {theirs.channels}-channel inputs and "
                    f"{self.data.store.root} holds {store.channels}-channel images: its mean "
                    "and scale cannot apply (--set data.preprocessing=store uses this store's)"
                )
            chosen = replace(store, mean=theirs.mean, scale=theirs.scale)
            kind = "color" if theirs.mean is not None and theirs.mean.ndim == 1 else "image"
            said = (
                f"inputs made with the source's mean {kind} and "
                f"{'no scale' if theirs.scale is None else 'its scale per channel'} "
                "(data.preprocessing: source; `store` takes this store's)"
            )
        elif source is not None:
            said = "inputs made with this store's mean and scale (data.preprocessing: store)"
        if chosen != store:
            self.data.normalize_as(chosen)
        return chosen, said

    # -- starting, saving and restoring ---------------------------------------------------

    def _start(self, command: str, note: str | None) -> None:
        if not self.procs.main:
            return
        version = version_info(self.device, self.procs, command)
        init = self.nets.init
        if init is not None:
            version["init_from"] = init
            log.info(
                "weights from %s (sha256 %s): %d layers copied%s",
                init["file"],
                init["sha256"][:16],
                len(init["copied"]),
                f", {', '.join(init['reinit'])} started afresh" if init["reinit"] else "",
            )
        if note:
            log.info(note)
        if self.nets.frozen:
            log.info("frozen (not trained): %s", ", ".join(self.nets.frozen))
        self.rundir.start(self.config.to_yaml(), version)

    def _restore(self, checkpoint: dict) -> None:
        self.nets.load_weights(checkpoint["state_dict"])
        # the recipe's constants, as the groups were just built from it: the saved state
        # brings back the old ones with the velocities
        constants = [(g["momentum"], g["weight_decay"]) for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.nets.shard_optimizer_state(self.optimizer)
        for group, (momentum, decay) in zip(self.optimizer.param_groups, constants, strict=True):
            group["momentum"], group["weight_decay"] = momentum, decay
        self.schedule.load_state_dict(checkpoint["schedule"])
        changed = self.resumed_changes
        if "optim.lr" in changed:
            # in the run's scaled rates (optim.lr_scaling), the batch being the one it goes on at
            scale = scaled_lr(self.config.optim) / self.config.optim.lr
            resume_contract.continue_at(self.schedule, scaled_lr(self.config.optim),
                                        changed["optim.lr"][0] * scale)  # fmt: skip
        self.scaler.load_state_dict(checkpoint["scaler"])
        self.progress = Progress.from_dict(checkpoint["progress"])
        ckpt.set_rng_state(checkpoint["rng"])
        provenance = checkpoint["record"].provenance
        self.started_from, self.val_metrics = provenance.init_from, dict(provenance.metrics)
        if self.procs.main:
            # metrics of epochs after the checkpoint will be written again
            self.rundir.keep_metrics_through(self.progress.epoch)
            if changed:
                self.rundir.update_recipe(self.config.to_yaml())
            for key, (old, new) in changed.items():
                log.info("%s: %r -> %r from here on (resumed with a change)", key, old, new)
        log.info(
            "resuming %s at epoch %d, step %d (%s)",
            self.run_dir,
            self.progress.epoch + 1,
            self.progress.step,
            checkpoint["path"],
        )

    def state(self) -> dict:
        return {
            "state_dict": self.nets.weights(),
            "optimizer": self.nets.optimizer_state(self.optimizer),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "progress": self.progress.to_dict(),
            "rng": ckpt.rng_state(),
            "config": self.config.to_dict(),
            "record": self.model_record(),
            "alexnet_version": __version__,
        }

    def model_record(self) -> ModelRecord:
        """The network as it stands: what it is, its classes, how a photo becomes its
        input, and where it came from (alexnet.models.record)."""
        if self.provenance is None:  # made once: the git call and the manifest's digest
            store = self.data.store
            self.provenance = Provenance(
                package_version=__version__,
                git_commit=git_commit(),
                recipe_sha256=content_digest(self.config.to_dict()),
                store=str(store.root),
                store_sha256=sha256(store.root / MANIFEST),
                init_from=self.started_from,
            )
        return ModelRecord(
            network=self.nets.network,
            classes=self.data.classes(),
            preprocessing=self.preprocessing,
            provenance=replace(
                self.provenance, epoch=self.progress.epoch, metrics=dict(self.val_metrics)
            ),
        )

    def tick_wall(self) -> None:
        """Add the wall-clock time since the last call to progress.wall."""
        now = time.monotonic()
        self.progress.wall += now - self.wall_mark
        self.wall_mark = now

    def save(self, best: bool = False) -> None:
        self.tick_wall()
        if self.nets.hybrid:  # every rank sends its slices; the main one writes them whole
            state = self.state()
            if self.procs.main:
                write_checkpoints(self.run_dir / "checkpoints", lambda: state, best)
        elif self.procs.main:
            write_checkpoints(self.run_dir / "checkpoints", self.state, best)

    # -- the run --------------------------------------------------------------------------

    def run(self) -> dict | None:
        """Train to the last epoch (or the budget). Ctrl-C or SIGTERM finishes the step,
        saves `last` and raises KeyboardInterrupt; a second one stops at once."""
        self.stop_requested = False
        self.wall_mark = time.monotonic()
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, self._request_stop)
        try:
            return self._run()
        except StoreError as error:  # its files changed under the run: stop, say which
            raise TrainingError(_own_message(error)) from None
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.sink.close()

    def _request_stop(self, signum, frame) -> None:
        if self.stop_requested:
            raise KeyboardInterrupt
        self.stop_requested = True
        log.warning("stopping after this step; saving a checkpoint (again to stop at once)")

    def _run(self) -> dict | None:
        config, p, data = self.config, self.progress, self.data
        set_lr(self.optimizer, self.schedule.lr)
        metrics = None
        self._say_what_runs()
        while p.epoch < config.run.epochs:
            if self.converged():
                break
            finished, images_per_s = train_one_epoch(
                self.step,
                data,
                p,
                config,
                self.procs,
                self.sink,
                self.save,
                lambda: self.stop_requested,
                self.run_dir / "checkpoints" / "last.pt",
                self.schedule.lr,
                self.warmup,
            )
            val = validate(self.nets.for_validation(), data, config, self.procs, self.device,
                           self.val_render)  # fmt: skip
            self.tick_wall()
            metrics = epoch_metrics(
                p,
                val,
                finished,
                num_classes=data.num_classes,
                val_split=data.val_source,
                val_views=config.run.eval_views,
                lr=self.schedule.lr,
                images_per_s=images_per_s,
            )
            self.val_metrics = {f"val_{k}": v for k, v in val.items()}
            if not finished:  # out of budget: keep where we are, report, stop
                self.sink.epoch(metrics)
                self.save()
                log.info(
                    "budget of %s minutes used; stopped (to go on: alexnet train --resume "
                    "%s --set run.budget_minutes=MORE)",
                    config.run.budget_minutes,
                    self.run_dir,
                )
                break
            improved = p.best_top1 is None or val["top1_error"] < p.best_top1
            if improved:
                p.best_top1 = val["top1_error"]
            set_lr(self.optimizer, self.schedule.step(p.epoch, val["top1_error"]))
            p.epoch += 1
            p.step = 0
            p.sums = epoch_sums()
            self.sink.epoch(metrics)
            self.save(best=improved)
        if metrics is not None:
            log.info(
                "done: epoch %d, val top-1 error %.2f%%, top-5 %.2f%%; checkpoints in %s",
                metrics["epoch"],
                100 * metrics["val_top1_error"],
                100 * metrics["val_top5_error"],
                self.run_dir / "checkpoints",
            )
        return metrics

    def _say_what_runs(self) -> None:
        config, data, p = self.config, self.data, self.progress
        log.info(
            "training %s on %s, %d images, %d classes, %d epochs, batch %d, %s, into %s",
            config.model_name,
            self.device,
            len(data.train_indices),
            data.num_classes,
            config.run.epochs,
            config.optim.batch_size,
            config.run.precision,
            self.run_dir,
        )
        if self.step.copies is not None:
            log.info("bf16: the forward pass reads bf16 copies of the weights that the "
                     "update writes (autocast's numbers, without its casts)")  # fmt: skip
        if self.nets.hybrid:
            log.info("hybrid parallelism: conv1-conv5 data parallel over %d processes, "
                     "fc6-fc8 split over them (run.parallel)", self.procs.world)  # fmt: skip
        if data.held_out is None:
            log.info(
                "validating on the %s split, which also picks best.pt and drives the "
                "schedule: its errors are not test errors (data.holdout holds images out "
                "of training to validate on instead)",
                config.data.val_split,
            )
        else:
            log.info(
                "validating on %d of %d images held out of the %s split (holdout.json); "
                "the %s split is not looked at in training",
                len(data.val_indices),
                len(data.held_out),
                config.data.train_split,
                config.data.val_split,
            )
        if p.epoch >= config.run.epochs:
            log.warning(
                "%s has already run its %d epochs; to train longer: alexnet train "
                "--resume %s --set run.epochs=MORE",
                self.run_dir,
                config.run.epochs,
                self.run_dir,
            )

    def converged(self) -> bool:
        """schedule.early_stop: the plateau rule has made its last drop and the error has
        not improved for `patience` epochs since (the paper: the rate "reduced three times
        prior to termination")."""
        if not (self.config.schedule.early_stop and getattr(self.schedule, "exhausted", False)):
            return False
        log.info(
            "stopping after epoch %d: the rate was dropped %d times and the validation "
            "error has not improved for %d epochs since (schedule.early_stop)",
            self.progress.epoch,
            self.schedule.drops,
            self.schedule.patience,
        )
        return True
