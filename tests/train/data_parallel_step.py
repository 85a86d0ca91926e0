"""One training step's gradient, as `alexnet train` computes it, in one process or in each
of torchrun's: `python data_parallel_step.py STORE PRECISION OUT [SET ...]`.

The trainer is built as `alexnet train` builds it (under torchrun: DistributedDataParallel
over gloo) and takes the first global batch of epoch 1; rank 0 saves every parameter's
gradient after the backward pass, which in several processes is the all-reduced average.
Run with OMP_NUM_THREADS fixed, so that each side sums in a known order.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import torch

from alexnet.data.loader import epoch_batches, make_loader
from alexnet.train.config import load_config
from alexnet.train.distributed import start_processes
from alexnet.train.trainer import Trainer

DEBUG = Path(__file__).resolve().parents[2] / "configs" / "debug.yaml"


def first_step_gradient(store: str, precision: str, out: str, *sets: str) -> None:
    config = load_config(DEBUG, [f"data.store={store}", f"run.precision={precision}", *sets])
    procs, device = start_processes("cpu")
    trainer = Trainer(config, Path(out).parent / "run", procs, device, False, "")
    batch = epoch_batches(
        trainer.data.train_indices,
        config.optim.batch_size,
        config.run.seed,
        0,
        procs.rank,
        procs.world,
    )[0]
    images, labels = next(iter(make_loader(trainer.data.train_set, batches=[batch])))
    trainer.step.forward_backward(images, labels)
    if procs.main:
        torch.save({n: p.grad for n, p in trainer.nets.plain.named_parameters()}, out)
        trainer.sink.close()


def main(*args: str) -> None:
    # The trainer (and DistributedDataParallel's reducer in it) is gone before the process
    # group is torn down, as in `alexnet.train.trainer.train`: a reducer that outlives its
    # gloo group aborts the process at exit (std::terminate).
    first_step_gradient(*args)
    gc.collect()  # DistributedDataParallel holds reference cycles
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
