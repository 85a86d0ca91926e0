"""A run's data: the store, the classes it learns, the images it trains and validates on,
and the two splits' datasets, as a recipe's `data` section chooses them.

`build_data(config)` is what `alexnet train` builds; `choose_images` is the choice alone
(which classes, which training images, which held out), which the transfer study's probe
makes again to fit on exactly the images a training cell of the same N and seed sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from alexnet.core.checks import ConfigError
from alexnet.data.dataset import StoreDataset
from alexnet.data.images import DEFAULT_FILTER
from alexnet.data.loader import (
    among,
    class_map,
    class_pool,
    read_class_ids,
    subset,
    training_images,
)
from alexnet.data.preprocess import Preprocessing
from alexnet.data.store import Store
from alexnet.models.record import Classes
from alexnet.models.registry import VARIANTS


@dataclass(frozen=True)
class Choice:
    """The classes a run learns and the images it trains and validates on."""

    num_classes: int
    class_ids: list[str] | None  # data.class_ids read, in label order; None: by position
    label_map: np.ndarray | int | None  # store label -> run label (class_map), or first N
    train: np.ndarray  # store indices of the training images
    held_out: np.ndarray | None  # store indices held out of the training split to validate


def choose_images(store: Store, data, seed: int) -> Choice:
    """The classes and training images a recipe's `data` section chooses from `store`
    (`seed`: run.seed, which draws data.train_images)."""
    num_classes, class_ids, label_map = store.num_classes, None, data.classes
    if data.class_ids is not None:
        class_ids = read_class_ids(data.class_ids)
        label_map = class_map(store.class_ids, class_ids)
        num_classes = len(class_ids)
    if data.classes is not None:
        if data.classes > store.num_classes:
            raise ConfigError(
                f"data.classes is {data.classes} but {data.store} holds {store.num_classes} classes"
            )
        num_classes = data.classes
    labels = store.split(data.train_split).labels
    train, held_out = training_images(labels, class_pool(labels, label_map), data, seed)
    return Choice(num_classes, class_ids, label_map, train, held_out)


@dataclass
class RunData:
    store: Store
    choice: Choice
    crop_size: int
    train_set: StoreDataset  # random views: crops, reflections, lighting
    val_set: StoreDataset  # run.eval_views of the validation images
    val_indices: np.ndarray
    val_source: str  # the store's val split, or "TRAIN_SPLIT-holdout"

    @property
    def num_classes(self) -> int:
        return self.choice.num_classes

    @property
    def train_indices(self) -> np.ndarray:
        return self.choice.train

    @property
    def held_out(self) -> np.ndarray | None:
        return self.choice.held_out

    def classes(self) -> Classes:
        """The run's classes in the order of its outputs."""
        store, ids = self.store, self.choice.class_ids
        if ids is None:
            n = self.num_classes
            return Classes(store.class_ids[:n], store.class_names[:n])
        names = dict(zip(store.class_ids, store.class_names, strict=True))
        return Classes(ids, [names[c] for c in ids])

    def preprocessing(self) -> Preprocessing:
        """How this store's images become inputs, a photo's too: its sizes, its filter and
        decoding, its mean image, and the scale data.normalize chose."""
        settings = self.store.manifest.get("settings", {})
        scale = self.train_set.view.scale
        return Preprocessing(
            channels=self.store.channels,
            image_size=self.store.image_size,
            view_size=self.store.view_size,
            crop_size=self.crop_size,
            mean=torch.from_numpy(self.store.stats.mean_image.astype(np.float32)),
            scale=None if scale is None else tuple(scale.tolist()),
            filter=settings.get("filter", DEFAULT_FILTER),
            draft=settings.get("draft", True),
        )

    def normalize_as(self, preprocessing: Preprocessing) -> None:
        """Make both splits' inputs with another mean and scale (a fine-tuned source's)."""
        mean, scale = preprocessing.normalization(self.store.view_size)
        self.train_set.normalized_as(mean, scale)
        self.val_set.normalized_as(mean, scale)

    def holdout_record(self, data) -> dict:
        """Which training images validate (holdout.json in the run directory)."""
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


def build_data(config) -> RunData:
    """The store, the classes, the two splits' datasets and the images used."""
    data, run = config.data, config.run
    store = Store(data.store)
    choice = choose_images(store, data, run.seed)
    crop_size = data.crop_size or VARIANTS[config.model_name].input_size
    train_set = StoreDataset(
        store,
        data.train_split,
        "random",
        crop_size=crop_size,
        lighting=data.lighting,
        lighting_std=data.lighting_std,
        normalize=data.normalize,
        seed=run.seed,
        channels_last=run.channels_last,
        render=data.render,
        flip=data.flip,
    )
    val_set = StoreDataset(
        store,
        data.train_split if data.holdout is not None else data.val_split,
        run.eval_views,
        crop_size=crop_size,
        normalize=data.normalize,
        channels_last=run.channels_last,
        # ten crops are rendered by the loader, whatever data.render says
        render=data.render if run.eval_views == "center" else "cpu",
    )
    if choice.held_out is None:
        val_indices = among(val_set, choice.label_map, data.val_images, run.seed)
        val_source = data.val_split
    else:
        val_indices = choice.held_out[subset(len(choice.held_out), data.val_images, run.seed)]
        val_source = f"{data.train_split}-holdout"
    if choice.class_ids is not None:
        train_set.relabel(choice.label_map)
        val_set.relabel(choice.label_map)
    if len(choice.train) < config.optim.batch_size:
        raise ConfigError(
            f"{len(choice.train)} training images do not make one batch of "
            f"{config.optim.batch_size}; lower optim.batch_size"
        )
    return RunData(store, choice, crop_size, train_set, val_set, val_indices, val_source)
