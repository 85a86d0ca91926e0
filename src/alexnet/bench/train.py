"""`alexnet bench train`: is data ever the bottleneck of training?

Runs the training step of a recipe (its model, precision, optimizer and batch) two ways in
alternating rounds: fed by the real loader from the store (decoding nothing: the store holds
pixels; cropping, reflecting, lighting, mean subtraction, upscaling for small datasets, in
`data.workers` processes), and fed one batch that is already in memory (synthetic input). The
ratio of the two is the share of training speed the data path keeps.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from alexnet.bench.common import machine
from alexnet.core.errors import UserError
from alexnet.core.runtime import keep_freed_memory, resolve_device
from alexnet.data.loader import epoch_batches, make_loader
from alexnet.train.config import TrainConfig
from alexnet.train.distributed import Processes
from alexnet.train.trainer import Trainer


def bench_train(config: TrainConfig, steps: int = 20, rounds: int = 3, warmup: int = 3) -> dict:
    # the step as `alexnet train` runs it, which keeps freed memory (without, each step's
    # activations page-fault afresh: 18% fewer images/s on one of the project's hosts)
    kept = keep_freed_memory()
    device = resolve_device(config.run.device)
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(config, Path(folder), Processes(), device, False, "bench")
        trainer.nets.model.train()
        batch = config.optim.batch_size
        batches = epoch_batches(trainer.data.train_indices, batch, config.run.seed, 0)
        needed = rounds * (warmup + steps)
        if len(batches) < needed:
            raise UserError(
                f"the store's {len(batches)} batches are fewer than the {needed} this "
                "benchmark reads; lower --steps or --rounds"
            )
        trainer.data.train_set.set_epoch(0)
        fixed = trainer.data.train_set.__getitems__(batches[0])
        if device.type == "cuda":
            # pinned, as the loader's batches are: an unpinned one is copied synchronously
            fixed = _pinned(fixed)
        real, synthetic = [], []
        for r in range(rounds):
            part = batches[r * (warmup + steps) : (r + 1) * (warmup + steps)]
            loader = make_loader(
                trainer.data.train_set, batches=part, num_workers=config.data.workers, device=device
            )
            real.append(_rate(trainer, iter(loader), warmup, steps, batch))
            synthetic.append(_rate(trainer, _repeat(fixed), warmup, steps, batch))
        trainer.sink.close()
    median_real, median_synthetic = statistics.median(real), statistics.median(synthetic)
    result = {
        "model": config.model_name,
        "store": config.data.store,
        "precision": config.run.precision,
        "batch": batch,
        "workers": config.data.workers,
        "threads": torch.get_num_threads(),
        "steps": steps,
        "rounds": rounds,
        "real_images_per_s": real,
        "synthetic_images_per_s": synthetic,
        "real_median": median_real,
        "synthetic_median": median_synthetic,
        "ratio": median_real / median_synthetic,
        "malloc_keeps_freed_memory": kept,
        "machine": machine(),
        "torch": torch.__version__,
    }
    result["table"] = (
        f"{config.model_name}, {config.run.precision}, batch {batch}, data.workers "
        f"{config.data.workers}, {steps} steps x {rounds} rounds\n"
        f"  from the store: {median_real:7.1f} images/s  "
        f"({min(real):.1f}-{max(real):.1f})\n"
        f"  synthetic:      {median_synthetic:7.1f} images/s  "
        f"({min(synthetic):.1f}-{max(synthetic):.1f})\n"
        f"  ratio:          {result['ratio']:.3f}"
    )
    return result


def _repeat(batch):
    while True:
        yield batch


def _rate(trainer: Trainer, batches, warmup: int, steps: int, batch: int) -> float:
    """Images per second over `steps` training steps after `warmup` untimed ones; the time
    includes waiting for each batch."""
    for _ in range(warmup):
        trainer.step.forward_backward(*next(batches))
        trainer.step.update()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step.forward_backward(*next(batches))
        trainer.step.update()
    return steps * batch / (time.perf_counter() - start)


def _pinned(batch):
    """A batch (a tensor, or a tuple or NamedTuple of them) in pinned memory."""
    if isinstance(batch, torch.Tensor):
        return batch.pin_memory()
    parts = [_pinned(part) for part in batch]
    return type(batch)(*parts) if hasattr(batch, "_fields") else type(batch)(parts)
