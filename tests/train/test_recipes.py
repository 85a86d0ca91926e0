"""Every recipe in configs/ loads and builds its network, and the paper's recipe (the one a
user runs for a week of GPU time) runs end to end on a miniature ImageNet, cut only by
--set."""

from __future__ import annotations

import json
import math

import pytest

from alexnet.data.prepare import NoProgress, Settings, prepare
from alexnet.models import checkpoint as ckpt
from alexnet.models.registry import create_model
from alexnet.train.config import load_config

from fixtures import ROOT, cli, imagenet

RECIPES = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_loads_and_builds_its_network(recipe):
    config = load_config(recipe)
    channels = 1 if "fashion" in recipe.stem or "debug" in recipe.stem else 3
    model = create_model(config.model_name, num_classes=10, in_chans=channels,
                         **config.model_options)  # fmt: skip
    assert sum(p.numel() for p in model.parameters()) > 0


def test_the_recipes_in_configs_are_the_ones_tested():
    # a new recipe is picked up by the test above; this pins the list against silent loss
    assert {p.stem for p in RECIPES} >= {"paper", "fashion-mnist", "tiny-imagenet", "debug"}


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
