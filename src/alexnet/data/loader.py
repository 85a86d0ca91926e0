"""Which images each step sees (a fixed subset, each epoch's shuffled global batches split
among ranks) and the one DataLoader factory that training, evaluation and the rest use.
"""

from __future__ import annotations

import numpy as np
import torch

from alexnet.core.checks import ConfigError


def subset(n: int, count: int | None, seed: int) -> np.ndarray:
    """A fixed random subset of `count` of n indices (all of them for None), sorted."""
    if count is None or count >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, 0x5EB5E7]).choice(n, size=count, replace=False))


def among(dataset, classes: int | None, count: int | None, seed: int) -> np.ndarray:
    """`subset` of the images of the first `classes` classes (all for None)."""
    labels = dataset.split.labels
    pool = np.arange(len(labels)) if classes is None else np.flatnonzero(labels < classes)
    return pool[subset(len(pool), count, seed)]


def epoch_batches(
    indices: np.ndarray, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1
) -> list[list[int]]:
    """This rank's part of each global batch of one epoch; incomplete last batch dropped.

    The shuffle depends only on (seed, epoch), so every rank and a resumed run agree.
    """
    if batch_size % world:
        raise ConfigError(
            f"optim.batch_size {batch_size} must divide evenly among {world} processes"
        )
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = indices[torch.randperm(len(indices), generator=generator).numpy()]
    local = batch_size // world
    steps = len(order) // batch_size
    return [
        order[s * batch_size + rank * local : s * batch_size + (rank + 1) * local].tolist()
        for s in range(steps)
    ]


def collate_batch(batch):
    """For DataLoader(collate_fn=...): `__getitems__` already returns a whole batch."""
    return batch


def make_loader(
    dataset,
    batch_size: int | None = None,
    *,
    batches: list[list[int]] | None = None,
    shuffle: bool = False,
    sampler: torch.utils.data.Sampler | None = None,
    num_workers: int = 0,
    drop_last: bool = False,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> torch.utils.data.DataLoader:
    """A DataLoader of (images, labels) batches of a `StoreDataset`: either of `batch_size`
    images (shuffled with `seed`, or drawn by a sampler such as DistributedSampler), or
    exactly the given `batches` of indices (what training and evaluation use, from
    `epoch_batches`). `device`: pin memory for a CUDA device."""
    if (batch_size is None) == (batches is None):
        raise ValueError("make_loader takes batch_size or batches, one of the two")
    common = {
        "num_workers": num_workers,
        "collate_fn": collate_batch,
        "pin_memory": device is not None and torch.device(device).type == "cuda",
        "prefetch_factor": 2 if num_workers else None,
    }
    if batches is not None:
        # A generator of its own, so that making a loader draws nothing from torch's global RNG.
        generator = torch.Generator().manual_seed(0)
        return torch.utils.data.DataLoader(
            dataset, batch_sampler=batches, generator=generator, **common
        )
    generator = torch.Generator().manual_seed(seed + dataset.epoch) if shuffle else None
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        drop_last=drop_last,
        generator=generator,
        persistent_workers=False,
        **common,
    )
