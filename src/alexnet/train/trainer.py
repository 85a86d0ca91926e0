"""Training with the paper's recipe (section 5): resumable, on one CPU or many GPUs.

    train(config, run_dir)            a new run
    train(config, run_dir, resume=True)  continue a killed one from checkpoints/last.pt

A run directory holds the recipe, the version, metrics.jsonl, the log, TensorBoard events and
the checkpoints (`alexnet.train.rundir`).

Determinism: the order of images in an epoch is a function of (seed, epoch), each image's
augmentation of (seed, epoch, index) (alexnet.data.augment), and dropout's masks of
(seed, epoch, step, rank). So a resumed run repeats exactly what the killed one would have
done, and on CPU its final weights are bit-identical to an uninterrupted run's.

Several processes: launch with torchrun. Each rank takes its slice of every global batch of
optim.batch_size images; gradients are averaged by DistributedDataParallel (gloo on CPU,
nccl on GPU); metrics are summed over ranks; only rank 0 writes.
"""

from __future__ import annotations

import copy
import gc
import logging
import math
import os
import random
import shlex
import signal
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from alexnet.core.digest import content_digest
from alexnet.core.errors import UserError
from alexnet.core.files import fsync_dir
from alexnet.core.progress import bar as progress_bar
from alexnet.core.runtime import (
    autocast,
    input_dtype,
    keep_freed_memory,
    resolve_precision,
    widened,
)
from alexnet.core.version import __version__
from alexnet.data.dataset import StoreDataset
from alexnet.data.images import DEFAULT_FILTER
from alexnet.data.loader import (
    among,
    class_map,
    epoch_batches,
    make_loader,
    read_class_ids,
    subset,
    training_images,
)
from alexnet.data.preprocess import Preprocessing
from alexnet.data.render import DeviceRenderer
from alexnet.data.store import MANIFEST, Store, StoreError
from alexnet.evaluate.metrics import softmax_batches, topk_correct
from alexnet.models import checkpoint as ckpt
from alexnet.models.record import Classes, ModelRecord, Network, Provenance, Source
from alexnet.models.registry import VARIANTS, create_model
from alexnet.models.transfer import load_layers, sha256
from alexnet.train import resume as resume_contract
from alexnet.train.config import ConfigError, TrainConfig, load_config
from alexnet.train.distributed import Processes, all_sum, start_processes
from alexnet.train.optim import freeze_layers, make_optimizer, set_lr
from alexnet.train.rundir import RunDirectory, git_commit, version_info
from alexnet.train.schedule import make_schedule

log = logging.getLogger("alexnet.train.trainer")


class TrainingError(RuntimeError):
    """A run that had to stop; the message says why and what is kept."""


def _own_message(error: Exception) -> str:
    """An exception's message without what a DataLoader worker wraps it in ("Caught X in
    DataLoader worker process 0. Original Traceback ...": the message is the last line)."""
    text = str(error)
    if "Original Traceback" in text:
        text = text.strip().splitlines()[-1].split(": ", 1)[-1]
    return text


# ---------------------------------------------------------------------------------------
# Processes and devices


# ---------------------------------------------------------------------------------------
# What each step sees


def dropout_seed(seed: int, epoch: int, step: int, rank: int) -> int:
    """Dropout's masks are drawn from this seed, so they do not depend on a resume point."""
    return (((seed * 1_000_003 + epoch) * 1_000_003 + step) * 1_009 + rank) % (2**63)


# ---------------------------------------------------------------------------------------
# The run


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
    sums: dict = field(default_factory=lambda: epoch_sums())


#: The training error is also kept for each fifth of an epoch, as cuda-convnet reported it
#: for each of CIFAR-10's five training batches: Figure 1's curve, finer than one epoch.
EPOCH_PARTS = 5


def epoch_sums() -> dict:
    return {"loss": 0.0, "wrong": 0.0, "images": 0.0,
            "part_wrong": [0.0] * EPOCH_PARTS, "part_images": [0.0] * EPOCH_PARTS}  # fmt: skip


def train(config: TrainConfig, run_dir: str | Path, resume: bool = False, command: str = ""):
    """Run (or continue) training; returns the last epoch's metrics."""
    keep_freed_memory()
    run_dir = Path(run_dir)
    # with the towers on two devices, the batch and the logits live on tower A's
    towers = config.run.tower_devices
    had_group = dist.is_initialized()
    procs, device = start_processes(towers[0] if towers else config.run.device)
    own_group = not had_group and dist.is_initialized()
    _setup_logging(run_dir, procs, resume)
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


def _setup_logging(run_dir: Path, procs: Processes, resume: bool) -> None:
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


class Trainer:
    """One run of the recipe: built in parts (`_check`, `_open_checkpoint`, `_build_data`,
    `_build_model`, `_build_optimizer`, `_build_views`), then `run`."""

    def __init__(self, config, run_dir, procs, device, resume, command):
        self.config, self.run_dir, self.procs, self.device = config, run_dir, procs, device
        self.rundir = RunDirectory(run_dir)
        # the record's provenance (model_record): made on the first save; what a resumed
        # run started from and the last validation's numbers come from its checkpoint
        self.provenance, self.started_from, self.val_metrics = None, None, {}
        config.run.precision = resolve_precision(config.run.precision, device, log)  # saved
        self._check()
        checkpoint = self._open_checkpoint(resume)
        self.resumed_changes = {}
        if checkpoint is not None:  # what the command changes, refused unless it may
            self.resumed_changes = resume_contract.changes(checkpoint["config"], config.to_dict())
            p = checkpoint["progress"]
            resume_contract.check(self.resumed_changes, p["epoch"], p["step"])
        self._build_data()
        self._build_model(checkpoint)
        self._choose_preprocessing(checkpoint)
        self._build_optimizer()
        self._build_views()
        if procs.main:
            _log_to_file(run_dir, resume)
        if checkpoint is not None:
            self._restore(checkpoint)
        else:
            self._start(command)
        if procs.main and self.held_out is not None:
            self.rundir.record_holdout(self.holdout_record())
        self.writer = None
        if procs.main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(
                str(run_dir / "tensorboard"), purge_step=self.progress.global_step or None
            )

    def _check(self) -> None:
        """Settings that do not combine, refused before anything is built."""
        run, world = self.config.run, self.procs.world
        if run.precision == "fp16" and self.device.type != "cuda":
            raise ConfigError("run.precision fp16 needs a GPU (loss scaling); on CPU use bf16")
        if world > 1 and run.tower_devices:
            raise ConfigError(
                "run.tower_devices splits one network over two devices; "
                "it does not combine with several processes"
            )
        if run.compile and run.tower_devices:
            raise ConfigError("run.compile does not combine with run.tower_devices")
        if not self.config.data.store:
            raise ConfigError("data.store is not set: prepare one with `alexnet data prepare`")

    def _open_checkpoint(self, resume: bool) -> dict | None:
        """The checkpoint to resume from; a new run refuses a directory that holds one."""
        if resume:
            if self.procs.main:
                for stale in (self.run_dir / "checkpoints").glob(".*.tmp"):
                    stale.unlink(missing_ok=True)  # what a save cut short by a kill left
                    log.info("removed %s, left by a save that was cut short", stale)
            return ckpt.load(ckpt.find(self.run_dir), map_location="cpu")
        if self.procs.main and (self.run_dir / "checkpoints" / "last.pt").exists():
            raise ConfigError(
                f"{self.run_dir} already holds a run; continue it with --resume "
                f"{self.run_dir}, or choose another --out"
            )
        return None

    def _build_data(self) -> None:
        """The store, the class count, the two splits' datasets and the images used."""
        data, run = self.config.data, self.config.run
        self.store = Store(data.store)
        self.num_classes = self.store.num_classes
        self.chosen_ids, choice = None, data.classes
        if data.class_ids is not None:
            self.chosen_ids = read_class_ids(data.class_ids)
            choice = class_map(self.store.class_ids, self.chosen_ids)
            self.num_classes = len(self.chosen_ids)
        if data.classes is not None:
            if data.classes > self.store.num_classes:
                raise ConfigError(
                    f"data.classes is {data.classes} but {data.store} holds "
                    f"{self.store.num_classes} classes"
                )
            self.num_classes = data.classes
        self.crop_size = data.crop_size or VARIANTS[self.config.model_name].input_size
        self.train_set = StoreDataset(
            self.store,
            data.train_split,
            "random",
            crop_size=self.crop_size,
            lighting=data.lighting,
            lighting_std=data.lighting_std,
            normalize=data.normalize,
            seed=run.seed,
            channels_last=run.channels_last,
            render=data.render,
            flip=data.flip,
        )
        self.val_set = StoreDataset(
            self.store,
            data.train_split if data.holdout is not None else data.val_split,
            run.eval_views,
            crop_size=self.crop_size,
            normalize=data.normalize,
            channels_last=run.channels_last,
            # ten crops are rendered by the loader, whatever data.render says
            render=data.render if run.eval_views == "center" else "cpu",
        )
        pool = among(self.train_set, choice, None, run.seed)
        self.train_indices, self.held_out = training_images(
            self.train_set.split.labels, pool, data, run.seed
        )
        if self.held_out is None:
            self.val_indices = among(self.val_set, choice, data.val_images, run.seed)
        else:
            self.val_indices = self.held_out[subset(len(self.held_out), data.val_images, run.seed)]
        if self.chosen_ids is not None:
            self.train_set.relabel(choice)
            self.val_set.relabel(choice)
        batch_size = self.config.optim.batch_size
        if len(self.train_indices) < batch_size:
            raise ConfigError(
                f"{len(self.train_indices)} training images do not make one batch of "
                f"{batch_size}; lower optim.batch_size"
            )

    def _build_model(self, checkpoint: dict | None) -> None:
        """The network (seeded), on its device(s), wrapped for several processes and
        compiled as the recipe asks: `plain` is what is saved, `model` what validates,
        `step_model` what trains."""
        config, run, device = self.config, self.config.run, self.device
        torch.manual_seed(run.seed)  # the initial weights
        # The run draws nothing from Python's or numpy's global generators (the views have
        # their own, seeded per image), but code it calls could: seeded too, so that every
        # generator a checkpoint records starts where the recipe says (a resumed run
        # restores them from the checkpoint instead)
        random.seed(run.seed)
        np.random.seed(run.seed)
        model = create_model(
            config.model_name,
            num_classes=self.num_classes,
            in_chans=self.store.channels,
            **config.model_options,
        )
        if checkpoint is not None:
            ckpt.check_same_model(checkpoint, model)
        self.init_record = self.source = None
        if checkpoint is None and run.init_from:
            self.init_record = self._init_from(model, run.init_from)
        elif config.reinit and not run.init_from:
            raise ConfigError(
                "model.reinit lists layers to start afresh, but run.init_from (--init-from) "
                "names no weights to start the others from"
            )
        try:
            frozen = freeze_layers(model, config.optim.freeze or [])
        except UserError as error:
            raise ConfigError(str(error)) from None
        self.frozen = frozen
        self.network = Network.of(model)
        model.to(device, input_dtype(run.precision))
        if run.channels_last:
            model.to(memory_format=torch.channels_last)
        if run.tower_devices:
            from alexnet.train.towers import TowerParallel

            model = TowerParallel(model, run.tower_devices)
        self.plain = self.model = model
        if self.procs.world > 1:
            self.model = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
        # The training step runs the compiled network; validation and the saved state use the
        # network itself (compiling keeps its parameters, under other names).
        self.step_model = torch.compile(self.model) if run.compile else self.model

    def _init_from(self, model, source: str) -> dict:
        """The weights of `source` in the new network, layer by layer (model.reinit: the
        layers that keep their fresh initialization); what was done, for the records."""
        loaded = ckpt.load(source)
        done = load_layers(model, loaded, self.config.reinit)
        self.source = loaded["record"]
        return {
            "source": str(source),
            "file": loaded["path"],
            "sha256": sha256(loaded["path"]),
            "network": self.source.network.name,
            **done,
        }

    def _choose_preprocessing(self, checkpoint: dict | None) -> None:
        """The mean and scale the network's inputs are made with: a fine-tuned network keeps
        its source's (torchvision's weights expect torchvision's scaling, whatever the new
        store's statistics), unless data.preprocessing says `store` on purpose; a resumed
        run keeps what it started with. The resizing is always this store's: its images
        were made so."""
        settings = self.store.manifest.get("settings", {})
        scale = self.train_set.view.scale
        store = Preprocessing(
            channels=self.store.channels,
            image_size=self.store.image_size,
            view_size=self.store.view_size,
            crop_size=self.crop_size,
            mean=torch.from_numpy(self.store.stats.mean_image.astype(np.float32)),
            scale=None if scale is None else tuple(scale.tolist()),
            filter=settings.get("filter", DEFAULT_FILTER),
            draft=settings.get("draft", True),
        )
        chosen, said = store, None
        if checkpoint is not None:
            started = checkpoint["record"].preprocessing
            chosen = replace(store, mean=started.mean, scale=started.scale)
        elif self.source is not None and self.config.data.preprocessing == "source":
            theirs = self.source.preprocessing
            if theirs.channels != store.channels:
                raise ConfigError(
                    f"the source makes {theirs.channels}-channel inputs and {self.store.root} "
                    f"holds {store.channels}-channel images: its mean and scale cannot apply "
                    "(--set data.preprocessing=store uses this store's)"
                )
            chosen = replace(store, mean=theirs.mean, scale=theirs.scale)
            kind = "color" if theirs.mean is not None and theirs.mean.ndim == 1 else "image"
            said = (f"inputs made with the source's mean {kind} and "
                    f"{'no scale' if theirs.scale is None else 'its scale per channel'} "
                    "(data.preprocessing: source; `store` takes this store's)")  # fmt: skip
        elif self.source is not None:
            said = "inputs made with this store's mean and scale (data.preprocessing: store)"
        self.preprocessing, self.preprocessing_note = chosen, said  # logged by _start
        if chosen != store:
            mean, scale = chosen.normalization(self.store.view_size)
            self.train_set.normalized_as(mean, scale)
            self.val_set.normalized_as(mean, scale)

    def _build_optimizer(self) -> None:
        """The update rule (section 5), the learning-rate schedule, the loss scaler."""
        o, s = self.config.optim, self.config.schedule
        try:
            self.optimizer = make_optimizer(
                o.name,
                self.plain,
                o.lr,
                o.momentum,
                o.weight_decay,
                o.bias_lr_mult,
                o.bias_weight_decay,
                o.layer_weight_decay,
                o.layer_lr_mult,
                o.freeze,
            )
        except UserError as error:  # a layer name the network does not have
            raise ConfigError(str(error)) from None
        self.schedule = make_schedule(
            s.kind,
            o.lr,
            factor=s.factor,
            patience=s.patience,
            max_drops=s.max_drops,
            threshold=s.threshold,
            milestones=s.milestones,
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.config.run.precision == "fp16")
        self.progress = Progress()

    def _build_views(self) -> None:
        """Renderers on the training device for the datasets that send stored pixels
        (data.render=device); None where the loader renders the views."""
        self.train_render = DeviceRenderer.of(self.train_set, self.device)
        self.val_render = DeviceRenderer.of(self.val_set, self.device)

    # -- starting and restoring -----------------------------------------------------------

    def _start(self, command: str) -> None:
        if not self.procs.main:
            return
        version = version_info(self.device, self.procs, command)
        if self.init_record is not None:
            version["init_from"] = record = self.init_record
            log.info(
                "weights from %s (sha256 %s): %d layers copied%s",
                record["file"],
                record["sha256"][:16],
                len(record["copied"]),
                f", {', '.join(record['reinit'])} started afresh" if record["reinit"] else "",
            )
        if self.preprocessing_note:
            log.info(self.preprocessing_note)
        if self.frozen:
            log.info("frozen (not trained): %s", ", ".join(self.frozen))
        self.rundir.start(self.config.to_yaml(), version)

    def weights(self) -> dict:
        """The network's weights in AlexNet's layout, however it is split over devices."""
        if hasattr(self.plain, "grouped_state_dict"):
            return self.plain.grouped_state_dict()
        return self.plain.state_dict()

    def _restore(self, checkpoint: dict) -> None:
        if hasattr(self.plain, "load_grouped_state_dict"):
            self.plain.load_grouped_state_dict(checkpoint["state_dict"])
        else:
            self.plain.load_state_dict(checkpoint["state_dict"])
        # the recipe's constants, as the groups were just built from it: the saved state
        # brings back the old ones with the velocities
        constants = [(g["momentum"], g["weight_decay"]) for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        for group, (momentum, decay) in zip(self.optimizer.param_groups, constants, strict=True):
            group["momentum"], group["weight_decay"] = momentum, decay
        self.schedule.load_state_dict(checkpoint["schedule"])
        if "optim.lr" in self.resumed_changes:
            started_at = self.resumed_changes["optim.lr"][0]
            resume_contract.continue_at(self.schedule, self.config.optim.lr, started_at)
        if self.resumed_changes and self.procs.main:
            self.rundir.update_recipe(self.config.to_yaml())
            for key, (old, new) in self.resumed_changes.items():
                log.info("%s: %r -> %r from here on (resumed with a change)", key, old, new)
        self.scaler.load_state_dict(checkpoint["scaler"])
        p = checkpoint["progress"]
        self.progress = Progress(**{**p, "sums": {**epoch_sums(), **p["sums"]}})
        ckpt.set_rng_state(checkpoint["rng"])
        provenance = checkpoint["record"].provenance
        self.started_from, self.val_metrics = provenance.init_from, dict(provenance.metrics)
        if self.procs.main:
            # metrics of epochs after the checkpoint will be written again
            self.rundir.keep_metrics_through(self.progress.epoch)
        log.info(
            "resuming %s at epoch %d, step %d (%s)",
            self.run_dir,
            self.progress.epoch + 1,
            self.progress.step,
            checkpoint["path"],
        )

    def state(self) -> dict:
        return {
            "state_dict": self.weights(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "progress": {**self.progress.__dict__, "sums": copy.deepcopy(self.progress.sums)},
            "rng": ckpt.rng_state(),
            "config": self.config.to_dict(),
            "record": self.model_record(),
            "alexnet_version": __version__,
        }

    def holdout_record(self) -> dict:
        """Which training images validate (holdout.json in the run directory)."""
        data = self.config.data
        labels = self.train_set.split.labels[self.held_out]
        classes, counts = np.unique(labels, return_counts=True)
        return {
            "split": data.train_split,
            "holdout": data.holdout,
            "seed": data.holdout_seed,
            "images": len(self.held_out),
            "per_class": {int(c): int(n) for c, n in zip(classes, counts, strict=True)},
            "indices": self.held_out.tolist(),
        }

    @property
    def val_source(self) -> str:
        """What validates: the store's val split, or images held out of the training split."""
        data = self.config.data
        return data.val_split if data.holdout is None else f"{data.train_split}-holdout"

    def _classes(self) -> Classes:
        store = self.store
        if self.chosen_ids is None:
            n = self.num_classes
            return Classes(store.class_ids[:n], store.class_names[:n])
        names = dict(zip(store.class_ids, store.class_names, strict=True))
        return Classes(self.chosen_ids, [names[c] for c in self.chosen_ids])

    def model_record(self) -> ModelRecord:
        """The network as it stands: what it is, its classes, how a photo becomes its
        input, and where it came from (alexnet.models.record)."""
        if self.provenance is None:  # made once: the git call and the manifest's digest
            source = self.init_record
            self.provenance = Provenance(
                package_version=__version__,
                git_commit=git_commit(),
                recipe_sha256=content_digest(self.config.to_dict()),
                store=str(self.store.root),
                store_sha256=sha256(self.store.root / MANIFEST),
                init_from=self.started_from
                if source is None
                else Source(source["source"], source["sha256"], source["network"]),
            )
        return ModelRecord(
            network=self.network,
            classes=self._classes(),
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
        if not self.procs.main:
            return
        folder = self.run_dir / "checkpoints"
        ckpt.save(folder / "last.pt", self.state())
        if best:
            # the same bytes: a hard link, itself renamed into place
            temporary = folder / ".best.pt.tmp"
            temporary.unlink(missing_ok=True)
            try:
                os.link(folder / "last.pt", temporary)
            except OSError:
                ckpt.save(temporary, self.state())
            os.replace(temporary, folder / "best.pt")
            fsync_dir(folder)

    # -- the loop -------------------------------------------------------------------------

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
            if self.writer is not None:
                self.writer.close()

    def _request_stop(self, signum, frame) -> None:
        if self.stop_requested:
            raise KeyboardInterrupt
        self.stop_requested = True
        log.warning("stopping after this step; saving a checkpoint (again to stop at once)")

    def _run(self) -> dict | None:
        config, p = self.config, self.progress
        lr = self.schedule.lr
        set_lr(self.optimizer, lr)
        metrics = None
        log.info(
            "training %s on %s, %d images, %d classes, %d epochs, batch %d, %s, into %s",
            config.model_name,
            self.device,
            len(self.train_indices),
            self.num_classes,
            config.run.epochs,
            config.optim.batch_size,
            config.run.precision,
            self.run_dir,
        )
        if self.held_out is None:
            log.info(
                "validating on the %s split, which also picks best.pt and drives the schedule: "
                "its errors are not test errors (data.holdout holds images out of training "
                "to validate on instead)",
                config.data.val_split,
            )
        else:
            log.info(
                "validating on %d of %d images held out of the %s split (holdout.json); "
                "the %s split is not looked at in training",
                len(self.val_indices),
                len(self.held_out),
                config.data.train_split,
                config.data.val_split,
            )
        if p.epoch >= config.run.epochs:
            log.warning(
                "%s has already run its %d epochs; to train longer: alexnet train --resume %s "
                "--set run.epochs=MORE",
                self.run_dir,
                config.run.epochs,
                self.run_dir,
            )
        while p.epoch < config.run.epochs:
            if self.converged():
                break
            finished = self.train_epoch()
            val = self.validate()
            metrics = self.epoch_metrics(val, complete=finished)
            self.val_metrics = {f"val_{k}": v for k, v in val.items()}
            if not finished:  # out of budget: keep where we are, report, stop
                self.write_metrics(metrics)
                self.save()
                log.info(
                    "budget of %s minutes used; stopped (to go on: alexnet train --resume %s "
                    "--set run.budget_minutes=MORE)",
                    config.run.budget_minutes,
                    self.run_dir,
                )
                break
            improved = p.best_top1 is None or val["top1_error"] < p.best_top1
            if improved:
                p.best_top1 = val["top1_error"]
            lr = self.schedule.step(p.epoch, val["top1_error"])
            set_lr(self.optimizer, lr)
            p.epoch += 1
            p.step = 0
            p.sums = epoch_sums()
            self.write_metrics(metrics)
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

    def converged(self) -> bool:
        """schedule.early_stop: the plateau rule has made its last drop and the error has
        not improved for `patience` epochs since (the paper: the rate "reduced three times
        prior to termination")."""
        if not (self.config.schedule.early_stop and getattr(self.schedule, "exhausted", False)):
            return False
        log.info(
            "stopping after epoch %d: the rate was dropped %d times and the validation error "
            "has not improved for %d epochs since (schedule.early_stop)",
            self.progress.epoch,
            self.schedule.drops,
            self.schedule.patience,
        )
        return True

    def train_epoch(self) -> bool:
        """Train the rest of the current epoch; False if the time budget ran out first."""
        config, p, procs = self.config, self.progress, self.procs
        run = config.run
        batches = epoch_batches(
            self.train_indices,
            config.optim.batch_size,
            run.seed,
            p.epoch,
            procs.rank,
            procs.world,
        )
        self.train_set.set_epoch(p.epoch)
        loader = make_loader(
            self.train_set, batches=batches[p.step :], num_workers=config.data.workers,
            device=self.device,
        )  # fmt: skip
        self.model.train()
        bar = _bar(len(batches), p.step, f"epoch {p.epoch + 1}/{run.epochs}", procs)
        last_save = started = tick = time.monotonic()
        seen = 0
        budget = run.budget_minutes * 60 if run.budget_minutes is not None else math.inf
        finished = True
        for images, labels in loader:
            if p.elapsed >= budget:
                finished = False
                break
            torch.manual_seed(dropout_seed(run.seed, p.epoch, p.step, procs.rank))
            loss, wrong = self.forward_backward(images, labels)
            # summed over ranks before deciding, so that every rank steps or none does
            totals = all_sum([loss * len(labels), wrong, len(labels)], procs, self.device)
            if math.isfinite(totals[0]):
                self.update()
                p.bad_steps = 0
                for key, value in zip(("loss", "wrong", "images"), totals, strict=True):
                    p.sums[key] += value
                part = p.step * EPOCH_PARTS // len(batches)
                p.sums["part_wrong"][part] += totals[1]
                p.sums["part_images"][part] += totals[2]
            else:
                self.non_finite(totals[0])
            p.step += 1
            p.global_step += 1
            seen += totals[2]
            bar.set_postfix(
                loss=f"{p.sums['loss'] / max(p.sums['images'], 1):.3f}",
                lr=f"{self.schedule.lr:g}",
                img_s=f"{seen / max(time.monotonic() - started, 1e-9):.0f}",
            )
            bar.update(1)
            if self.writer is not None and p.global_step % run.log_every_steps == 0:
                self.writer.add_scalar("train/loss_step", totals[0] / totals[2], p.global_step)
            now = time.monotonic()
            p.elapsed += now - tick
            tick = now
            due = (run.checkpoint_steps and p.step % run.checkpoint_steps == 0) or (
                now - last_save >= 60 * run.checkpoint_minutes
            )
            if self.stop_requested:
                self.save()
                log.warning("saved %s; continue with --resume", self.run_dir)
                raise KeyboardInterrupt
            if due and p.step < len(batches) and not p.bad_steps:
                self.save()
                last_save = tick = time.monotonic()
        bar.close()
        self.images_per_s = seen / max(time.monotonic() - started, 1e-9) if seen else None
        return finished

    def forward_backward(self, images, labels) -> tuple[float, int]:
        """The loss and gradients of one batch; returns (mean loss, top-1 mistakes)."""
        device, run = self.device, self.config.run
        if self.train_render is not None:
            images = self.train_render(images)
        images = images.to(device, input_dtype(run.precision), non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        if run.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(device, run.precision):
            logits = self.step_model(images)
            loss = F.cross_entropy(widened(logits), labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        return float(loss.detach()), int((logits.argmax(dim=1) != labels).sum())

    def update(self) -> None:
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def non_finite(self, value: float) -> None:
        p, limit = self.progress, self.config.run.max_bad_steps
        p.bad_steps += 1
        log.warning(
            "step %d: loss is %s; update skipped (%d of %d allowed in a row)",
            p.global_step + 1,
            value,
            p.bad_steps,
            limit,
        )
        if p.bad_steps >= limit:
            last = self.run_dir / "checkpoints" / "last.pt"
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

    def validate(self) -> dict:
        config = self.config
        batches = [
            self.val_indices[i : i + config.optim.batch_size].tolist()
            for i in range(0, len(self.val_indices), config.optim.batch_size)
        ][self.procs.rank :: self.procs.world]
        loader = make_loader(
            self.val_set, batches=batches, num_workers=config.data.workers, device=self.device
        )
        model = self.model.module if self.procs.world > 1 else self.model
        counts = [0.0, 0.0, 0.0, 0.0]  # loss sum, top-1 hits, top-5 hits, images
        for probs, labels in softmax_batches(
            [model],
            loader,
            self.device,
            config.run.precision,
            config.run.channels_last,
            render=self.val_render,
        ):
            hits = topk_correct(probs, labels)
            picked = probs.gather(1, labels[:, None]).clamp_min(1e-12)
            counts[0] += float(-picked.log().sum())
            counts[1] += hits[1]
            counts[2] += hits[5]
            counts[3] += len(labels)
        loss, top1, top5, n = all_sum(counts, self.procs, self.device)
        return {
            "loss": loss / n,
            "top1_error": 1 - top1 / n,
            "top5_error": 1 - top5 / n,
            "images": int(n),
        }

    def epoch_metrics(self, val: dict, complete: bool) -> dict:
        self.tick_wall()
        p, sums = self.progress, self.progress.sums
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
            "num_classes": self.num_classes,
            "val_split": self.val_source,
            "val_views": self.config.run.eval_views,
            "val_images": val["images"],
            "lr": self.schedule.lr,
            "images_per_s": getattr(self, "images_per_s", None),
            "elapsed_s": p.elapsed,  # training steps only
            "wall_s": p.wall,  # with validation and checkpoints
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }

    def write_metrics(self, metrics: dict) -> None:
        if not self.procs.main:
            return
        self.rundir.append_metrics(metrics)
        for key in ("train_loss", "train_top1_error", "val_loss", "val_top1_error"):
            self.writer.add_scalar(key.replace("_", "/", 1), metrics[key], metrics["epoch"])
        self.writer.add_scalar("val/top5_error", metrics["val_top5_error"], metrics["epoch"])
        self.writer.add_scalar("lr", metrics["lr"], metrics["epoch"])
        self.writer.flush()
        log.info(
            "epoch %d%s: train loss %.4f, train error %.2f%%, val top-1 %.2f%%, top-5 %.2f%%, "
            "lr %g, %.0f images/s",
            metrics["epoch"],
            "" if metrics["complete"] else f" (stopped after {metrics['epoch_steps']} steps)",
            metrics["train_loss"],
            100 * metrics["train_top1_error"],
            100 * metrics["val_top1_error"],
            100 * metrics["val_top5_error"],
            metrics["lr"],
            metrics["images_per_s"] or 0,
        )


def _bar(total: int, initial: int, desc: str, procs: Processes):
    return progress_bar(total, desc, "step", show=procs.main, initial=initial,
                        dynamic_ncols=True, leave=False)  # fmt: skip


def run_from_args(config_path, overrides, out, resume) -> dict | None:
    """What `alexnet train` does: read the recipe (or the run's own), then train."""
    if resume:
        saved = Path(resume) / "config.yaml"
        if not saved.is_file():
            raise ckpt.CheckpointError(
                f"{resume} is not a run directory (no config.yaml); start a new run with "
                "`alexnet train --config ...`"
            )
        config = load_config(saved, overrides)
        run_dir = Path(resume)
    else:
        config = load_config(config_path, overrides)
        stem = Path(config_path).stem if config_path else "run"
        run_dir = Path(out) if out else Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    command = "alexnet " + shlex.join(sys.argv[1:])
    return train(config, run_dir, resume=bool(resume), command=command), run_dir
