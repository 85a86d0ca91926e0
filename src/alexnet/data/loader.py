"""Which images each step sees (a fixed subset, each epoch's shuffled global batches split
among ranks) and the one DataLoader factory that training, evaluation and the rest use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from alexnet.core.checks import ConfigError
from alexnet.core.errors import UserError


def subset(n: int, count: int | None, seed: int) -> np.ndarray:
    """A fixed random subset of `count` of n indices (all of them for None), sorted."""
    if count is None or count >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, 0x5EB5E7]).choice(n, size=count, replace=False))


def per_class(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Positions of `count` images of each class in `labels` (all of a class that has
    fewer), drawn with a generator of their own seeded by `seed`; sorted. The draws of a
    smaller count are the first of a larger one's, so 10 images of a class are among its 50."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"data.per_class is a number of images, 1 or more, got {count!r}")
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, 0xC1A55])
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        chosen.append(members[rng.permutation(len(members))[:count]])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def training_images(labels: np.ndarray, pool: np.ndarray, data, seed: int):
    """(train, held_out) store indices among `pool` (the images of the classes used) as a
    recipe's `data` section chooses them: `holdout` images held out (or None), then
    `train_images` of the rest (seeded by `seed`), then `per_class` of each class. The
    trainer and the transfer study's probe both choose this way."""
    held_out = None
    if data.holdout is not None:
        held_out = pool[holdout(labels[pool], data.holdout, data.holdout_seed)]
        pool = np.setdiff1d(pool, held_out)
    train = pool[subset(len(pool), data.train_images, seed)]
    if data.per_class is not None:
        train = train[per_class(labels[train], data.per_class, data.per_class_seed)]
    return train, held_out


def class_pool(labels: np.ndarray, classes) -> np.ndarray:
    """The positions of the images of the first `classes` classes (an int; None: all), or of
    the classes a label map keeps (an array: `class_map`'s, -1 for the classes left out)."""
    if classes is None:
        return np.arange(len(labels))
    if isinstance(classes, np.ndarray):
        return np.flatnonzero(classes[labels] >= 0)
    return np.flatnonzero(labels < classes)


def among(dataset, classes, count: int | None, seed: int) -> np.ndarray:
    """`subset` of the images of `classes` (see `class_pool`) of a dataset's split."""
    pool = class_pool(dataset.split.labels, classes)
    return pool[subset(len(pool), count, seed)]


def read_class_ids(value) -> list[str]:
    """Class ids from a list, or from a file of them (one per line, # comments skipped)."""
    if isinstance(value, list):
        return [str(v) for v in value]
    path = Path(value)
    if not path.is_file():
        raise ConfigError(f"data.class_ids names {value!r}, which is neither a list nor a file")
    lines = path.read_text(encoding="utf-8").splitlines()
    return [x.strip() for x in lines if x.strip() and not x.lstrip().startswith("#")]


def class_map(store_ids: list[str], chosen: list[str]) -> np.ndarray:
    """store label -> position of its id in `chosen` (-1 for a class left out)."""
    positions = {c: i for i, c in enumerate(store_ids)}
    missing = [c for c in chosen if c not in positions]
    if missing:
        raise ConfigError(f"{len(missing)} class id(s) are not in the store, e.g. {missing[:3]}")
    if len(set(chosen)) != len(chosen):
        raise ConfigError("the class ids repeat one another")
    mapping = np.full(len(store_ids), -1, dtype=np.int64)
    mapping[[positions[c] for c in chosen]] = np.arange(len(chosen))
    return mapping


def holdout(labels: np.ndarray, count: int | float, seed: int) -> np.ndarray:
    """A validation set carved from training images: `count` images (an int), or that share
    of them (a float between 0 and 1), drawn from each class in proportion to its size, with
    a generator of its own seeded by `seed`. Returns positions into `labels`, sorted.

    Each class gives floor(share * size) images, and the images still owed go to the classes
    with the largest remainders (ties to the lower label), so the total is exact.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if isinstance(count, bool) or not isinstance(count, int | float):
        raise ConfigError(f"data.holdout is a number of images or a share, got {count!r}")
    if isinstance(count, float):
        if not 0 < count < 1:
            raise ConfigError(f"data.holdout as a share must be between 0 and 1, got {count}")
        total = round(count * n)
    else:
        total = count
    classes, sizes = np.unique(labels, return_counts=True)
    if not 1 <= total < n:
        raise ConfigError(f"data.holdout of {count} makes {total} of {n} training images")
    exact = sizes * total / n
    take = np.floor(exact).astype(int)
    owed = total - take.sum()
    order = np.lexsort((classes, -(exact - take)))  # largest remainder first
    take[order[:owed]] += 1
    if (take >= sizes).any():
        emptied = classes[take >= sizes].tolist()
        raise ConfigError(
            f"data.holdout of {count} leaves no training image in class(es) {emptied[:10]}"
        )
    generator = np.random.default_rng([seed, 0x401D0])
    picked = [
        generator.choice(np.flatnonzero(labels == c), size=k, replace=False)
        for c, k in zip(classes, take, strict=True)
    ]
    return np.sort(np.concatenate(picked))


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
        raise UserError("make_loader takes batch_size or batches, one of the two")
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
