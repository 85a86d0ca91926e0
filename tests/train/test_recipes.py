"""Every recipe in configs/ loads and builds its network, and the paper's recipe (the one a
user runs for a week of GPU time) runs end to end on a miniature ImageNet, cut only by
--set."""

from __future__ import annotations

import json
import math

import pytest
import torch

from alexnet.data.loader import read_class_ids
from alexnet.data.prepare import NoProgress, Settings, prepare
from alexnet.models import checkpoint as ckpt
from alexnet.models.registry import VARIANTS, create_model
from alexnet.train.config import load_config

from fixtures import ROOT, cli, imagenet

RECIPES = sorted((ROOT / "configs").glob("*.yaml"))


#: What each recipe's data holds, by hand from the datasets (ILSVRC-2012: 1000 classes of
#: RGB photos; CIFAR-10: 10, RGB; Fashion-MNIST and the tests' debug store: 10, gray; Tiny
#: ImageNet: 200, RGB) and the recipe's choice of classes (data.classes, or the ids in
#: data.class_ids: the halves A and B of Tiny ImageNet hold 100 each).
RECIPE_DATA = {
    "ablate-tiny-imagenet": (10, 3),  # data.classes: 10
    "cifar-local": (10, 3),
    "cifar4": (10, 3),
    "debug": (10, 1),
    "fashion-mnist": (10, 1),
    "finetune-folder": (5, 3),  # a folder of photos: any number of classes, RGB
    "imagenet-8k": (1000, 3),
    "paper": (1000, 3),
    "released": (1000, 3),
    "tiny-imagenet": (200, 3),
    "tiny-imagenet-a": (100, 3),
    "tiny-imagenet-b": (100, 3),
}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_builds_its_network_for_its_own_data(recipe):
    config = load_config(recipe)
    classes, channels = RECIPE_DATA[recipe.stem]
    if config.data.classes is not None:
        assert config.data.classes == classes
    if config.data.class_ids is not None:
        assert len(read_class_ids(str(ROOT / config.data.class_ids))) == classes
    model = create_model(config.model_name, num_classes=classes, in_chans=channels,
                         **config.model_options)  # fmt: skip
    side = config.data.crop_size or VARIANTS[config.model_name].input_size
    with torch.no_grad():
        assert model.eval()(torch.zeros(1, channels, side, side)).shape == (1, classes)


def test_the_recipes_in_configs_are_the_ones_tested():
    # a new recipe must say what data it is for in the table above
    assert {p.stem for p in RECIPES} == set(RECIPE_DATA)


def test_the_papers_recipe_runs_end_to_end_on_a_miniature_imagenet(tmp_path):
    imagenet(tmp_path / "ilsvrc", classes=1000)
    prepare(Settings("imagenet", str(tmp_path / "ilsvrc"), 256), tmp_path / "store", workers=2,
            progress=NoProgress)  # fmt: skip
    run = tmp_path / "run"
    budget = ["data.workers=0", "data.train_images=16", "optim.batch_size=8",
              "run.epochs=2", "schedule.patience=1", "run.device=cpu"]  # fmt: skip
    result = cli("train", "--config", str(ROOT / "configs" / "paper.yaml"), "--out", str(run),
                 "--set", f"data.store={tmp_path / 'store'}",
                 *[a for s in budget for a in ("--set", s)], "--test")  # fmt: skip
    assert result.returncode == 0, result.stderr
    saved = load_config(run / "config.yaml")
    # the recipe as written, but for the budget
    assert saved.model == {"name": "alexnet2012", "init": "paper"}
    assert (saved.optim.name, saved.optim.lr, saved.optim.momentum) == ("paper", 0.01, 0.9)
    assert (saved.optim.weight_decay, saved.schedule.kind) == (0.0005, "plateau")
    assert saved.data.lighting == "released" and saved.run.precision == "fp32"
    last = ckpt.load(run / "checkpoints" / "last.pt")
    assert last["record"].network.config["num_classes"] == 1000
    assert last["state_dict"]["fc8.weight"].shape == (1000, 4096)
    pre = last["record"].preprocessing
    assert pre.crop_size == 224 and pre.view_size == 256
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [2, 4]
    assert all(math.isfinite(m["train_loss"]) and math.isfinite(m["val_loss"]) for m in lines)
    # the plateau rule with patience 1: the rate drops after an epoch that did not improve
    # ("lr" in metrics is the rate each epoch trained at; the checkpoint holds the next)
    assert [m["lr"] for m in lines] == [0.01, 0.01]
    improved = lines[1]["val_top1_error"] < lines[0]["val_top1_error"]
    assert last["schedule"]["lr"] == pytest.approx(0.01 if improved else 0.001)
    for views in ("center", "ten-crop"):
        record = json.loads((run / f"test-val-{views}" / "eval.json").read_text())
        assert (record["views"], record["images"], record["split"]) == (views, 6, "val")
