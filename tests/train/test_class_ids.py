"""Class subsets by id: `alexnet data split-classes`, `data.class_ids`, and what eval and
features make of a network trained on them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from alexnet.data.store import Store
from alexnet.evaluate.eval import evaluate_checkpoints
from alexnet.evaluate.features import features
from alexnet.models import checkpoint as ckpt
from alexnet.train.config import ConfigError, load_config
from alexnet.train.trainer import train

from fixtures import DEBUG, cli


@pytest.fixture
def halves(store, tmp_path):
    done = cli("data", "split-classes", store, "--seed", "3", "--out", tmp_path / "split")
    assert done.returncode == 0, done.stderr
    return tmp_path / "split"


def ids(path) -> list[str]:
    return path.read_text().split()


def test_the_classes_split_into_two_disjoint_seeded_halves(store, halves, tmp_path):
    a, b = ids(halves / "A.txt"), ids(halves / "B.txt")
    everything = Store(store).class_ids
    assert len(a) == len(b) == 5 and set(a) | set(b) == set(everything) and not set(a) & set(b)
    assert a == [c for c in everything if c in a]  # in the store's order
    again = cli("data", "split-classes", store, "--seed", "3", "--out", tmp_path / "again")
    assert again.returncode == 0 and ids(tmp_path / "again" / "A.txt") == a
    other = cli("data", "split-classes", store, "--seed", "4", "--out", tmp_path / "other")
    assert other.returncode == 0 and ids(tmp_path / "other" / "A.txt") != a
    assert json.loads((halves / "split.json").read_text())["seed"] == 3


def test_a_network_trained_on_a_half_learns_only_its_classes(store, halves, tmp_path):
    import alexnet.train.loop as trainer  # where the epoch's batches are drawn

    a = ids(halves / "A.txt")
    run = tmp_path / "a"
    config = load_config(DEBUG, [f"data.store={store}", "run.epochs=1",
                                 f"data.class_ids={halves / 'A.txt'}"])  # fmt: skip
    seen = []
    original = trainer.epoch_batches

    def recording(indices, *args, **kwargs):
        seen.extend(indices.tolist())
        return original(indices, *args, **kwargs)

    trainer.epoch_batches, restore = recording, trainer.epoch_batches
    try:
        train(config, run)
    finally:
        trainer.epoch_batches = restore
    s = Store(store)
    train_labels = s.split("train").labels
    chosen = [s.class_ids.index(c) for c in a]
    assert seen and set(train_labels[seen].tolist()) <= set(chosen)
    assert len(seen) == int(np.isin(train_labels, chosen).sum())
    last = ckpt.load(run / "checkpoints" / "last.pt")
    assert last["state_dict"]["fc8.weight"].shape[0] == 5 and list(last["record"].classes.ids) == a
    # eval: only the images of A's classes, labelled by position in A, as trained
    result = evaluate_checkpoints([str(run / "checkpoints" / "last.pt")], str(store),
                                  workers=0, progress=False)  # fmt: skip
    val = s.split("val")
    keep = np.flatnonzero(np.isin(val.labels, chosen))
    assert result["images"] == len(keep)
    from alexnet.data.dataset import StoreDataset

    data = StoreDataset(store, "val", "center", crop_size=224)
    data.normalized_as(*last["record"].preprocessing.normalization(s.view_size))
    x, _ = data.__getitems__(keep.tolist())
    with torch.no_grad():
        guess = ckpt.load_model(last)(x).argmax(1).numpy()
    truth = np.array([chosen.index(int(label)) for label in val.labels[keep]])
    assert result["top1_error"] == pytest.approx(float((guess != truth).mean()), abs=1e-12)
    # features of the other half's images, labelled by position in B
    out = features(str(run), tmp_path / "fb", ["fc7"], data=str(store), split="val",
                   class_ids=str(halves / "B.txt"), progress=False)  # fmt: skip
    labels = np.load(tmp_path / "fb" / "labels.npy")
    assert out["images"] == len(labels) == int(np.isin(val.labels, [s.class_ids.index(c)
                                                for c in ids(halves / "B.txt")]).sum())  # fmt: skip
    assert set(labels.tolist()) <= set(range(5))


def test_class_ids_that_do_not_fit_are_refused(store, halves, tmp_path):
    with pytest.raises(ConfigError, match="not in the store"):
        train(load_config(DEBUG, [f"data.store={store}", "data.class_ids=[nope, T-shirt]"]),
              tmp_path / "a")  # fmt: skip
    with pytest.raises(ConfigError, match="both choose classes"):
        load_config(DEBUG, [f"data.store={store}", "data.classes=3",
                            f"data.class_ids={halves / 'A.txt'}"])  # fmt: skip


def test_per_class_trains_on_that_many_images_of_each_class(store, tmp_path):
    from alexnet.train.config import load_config
    from alexnet.train.distributed import Processes
    from alexnet.train.trainer import Trainer

    from fixtures import DEBUG

    config = load_config(DEBUG, [f"data.store={store}", "data.per_class=3", "data.holdout=20"])
    trainer = Trainer(config, tmp_path / "run", Processes(), torch.device("cpu"), False, "")
    labels = trainer.data.train_set.split.labels
    counts = np.bincount(labels[trainer.data.train_indices], minlength=10)
    assert counts.tolist() == [3] * 10  # 3 of each of the 10 classes, by hand
    assert not set(trainer.data.train_indices) & set(trainer.data.held_out)  # none of the held out
    trainer.sink.close()
