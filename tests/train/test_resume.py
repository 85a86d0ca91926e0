"""The resume contract: what `--resume --set` may change, applied for real; the rest refused."""

from __future__ import annotations

import json

import pytest
import yaml

from alexnet.models import checkpoint as ckpt
from alexnet.train.config import ConfigError, load_config
from alexnet.train.resume import RESUMABLE
from alexnet.train.trainer import train

from fixtures import DEBUG, cli


def recipe(store, *overrides):
    return load_config(DEBUG, [f"data.store={store}", "data.train_images=32",
                               "data.val_images=8", *overrides])  # fmt: skip


def resumed(run, *overrides):
    return load_config(run / "config.yaml", list(overrides))


def groups(path) -> list[dict]:
    return ckpt.load(path)["optimizer"]["param_groups"]


def test_a_new_rate_momentum_and_decay_act_from_the_resumed_step_on(store, tmp_path):
    run = tmp_path / "run"
    sets = ["schedule.kind=milestones", "schedule.milestones=[2]", "run.epochs=1"]
    train(recipe(store, *sets), run)
    assert {(g["lr"], g["momentum"], g["weight_decay"]) for g in groups(run / "checkpoints" /
            "last.pt")} == {(0.01, 0.9, 0.0005)}  # fmt: skip
    changed = ["run.epochs=3", "optim.lr=0.005", "optim.momentum=0.8", "optim.weight_decay=0.001"]
    train(resumed(run, *changed), run, resume=True)
    last = run / "checkpoints" / "last.pt"
    # epoch 2 at the new rate; the milestone after it divides the new rate, not the old
    lrs = [json.loads(x)["lr"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert lrs == pytest.approx([0.01, 0.005, 0.0005])  # the rate each epoch trained at
    assert {(g["momentum"], g["weight_decay"]) for g in groups(last)} == {(0.8, 0.001)}
    assert [g["lr"] for g in groups(last)] == pytest.approx([0.0005] * len(groups(last)))
    # the run's recipe now says so, and a plain resume changes nothing back
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert (saved["optim"]["lr"], saved["optim"]["momentum"]) == (0.005, 0.8)
    assert "optim.lr: 0.01 -> 0.005 from here on" in (run / "train.log").read_text()
    train(resumed(run, "run.epochs=4"), run, resume=True)
    assert {(g["momentum"], g["weight_decay"]) for g in groups(last)} == {(0.8, 0.001)}


def test_a_resume_that_would_make_another_run_is_refused_in_one_line(store, tmp_path):
    run = tmp_path / "run"
    train(recipe(store, "run.epochs=1"), run)
    for change, named in (
        ("run.seed=1", "run.seed (0 -> 1)"),
        ("data.normalize=none", "data.normalize ('std' -> 'none')"),
        (f"data.store={tmp_path}", "data.store"),
        ("schedule.kind=constant", "schedule.kind"),
    ):
        with pytest.raises(ConfigError, match="a resumed run cannot change") as refused:
            train(resumed(run, "run.epochs=2", change), run, resume=True)
        assert named in str(refused.value)
    done = cli("train", "--resume", run, "--set", "run.seed=7")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "cannot change run.seed (0 -> 7)" in done.stderr
    assert ckpt.load(run / "checkpoints" / "last.pt")["progress"]["epoch"] == 1  # untouched
    assert "data.store" not in RESUMABLE and "run.epochs" in RESUMABLE


def test_the_batch_size_changes_only_at_an_epochs_end(store, tmp_path):
    run = tmp_path / "run"
    # stopped after the first of the epoch's 4 steps (the budget counts training time)
    train(recipe(store, "run.epochs=1", "run.budget_minutes=1e-9"), run)
    progress = ckpt.load(run / "checkpoints" / "last.pt")["progress"]
    assert progress["epoch"] == 0 and progress["step"] > 0
    with pytest.raises(ConfigError, match=r"only at an epoch's end; this checkpoint is at step"):
        train(resumed(run, "optim.batch_size=4", "run.budget_minutes=null"), run, resume=True)
    train(resumed(run, "run.budget_minutes=null"), run, resume=True)  # the epoch finished
    train(resumed(run, "optim.batch_size=4", "run.epochs=2"), run, resume=True)
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch_steps"] for m in lines] == [32 // 8, 32 // 4]
