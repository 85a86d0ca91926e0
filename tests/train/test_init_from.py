"""Starting from trained weights: --init-from, model.reinit, optim.freeze, layer_lr_mult."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
import torch.nn.functional as F

from alexnet.data.loader import epoch_batches
from alexnet.models import checkpoint as ckpt
from alexnet.models.registry import create_model
from alexnet.train.config import ConfigError, OptimConfig, load_config
from alexnet.train.data import build_data
from alexnet.train.loop import dropout_seed
from alexnet.train.optim import make_optimizer
from alexnet.train.trainer import train

from fixtures import DEBUG, cli

CONV = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"]


def recipe(store, *overrides):
    return load_config(DEBUG, [f"data.store={store}", "run.epochs=1", *overrides])


def test_fine_tuning_a_new_head_keeps_the_frozen_layers_and_records_the_source(
    store, debug_run, tmp_path
):
    source = debug_run / "checkpoints" / "last.pt"
    before = ckpt.load(source)["state_dict"]
    run = tmp_path / "tuned"
    sets = [f"run.init_from={debug_run}", "data.classes=3", "model.reinit=[fc8]",
            f"optim.freeze={json.dumps(CONV)}", "data.train_images=32"]  # fmt: skip
    train(recipe(store, *sets), run)
    after = ckpt.load(run / "checkpoints" / "last.pt")["state_dict"]
    for key, value in after.items():
        if key.startswith("fc8"):
            assert value.shape[0] == 3  # the new head, three classes
        else:
            assert torch.equal(value, before[key]), key  # copied, then frozen
    version = json.loads((run / "version.json").read_text())
    record = version["init_from"]
    assert record["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert record["file"] == str(source) and record["reinit"] == ["fc8"]
    assert record["copied"] == CONV
    assert "weights from" in (run / "train.log").read_text()
    from alexnet.studies.report import write_report

    assert record["sha256"] in write_report(run, device="cpu").read_text()


def test_unfrozen_layers_start_from_the_source_and_then_learn(store, debug_run, tmp_path):
    # one step (8 images, batch 8): the weights are the source's moved by exactly one update
    # of section 5's rule from a zero velocity, w - lr * decay * w - lr * dL/dw, the gradient
    # taken here by hand on the run's first batch with its dropout masks
    run = tmp_path / "tuned"
    config = recipe(store, f"run.init_from={debug_run}", "data.train_images=8")
    train(config, run)
    source = ckpt.load(debug_run / "checkpoints" / "last.pt")
    before, after = source["state_dict"], ckpt.load(run / "checkpoints" / "last.pt")["state_dict"]
    data = build_data(config)
    (batch,) = epoch_batches(data.train_indices, 8, config.run.seed, 0)
    data.train_set.set_epoch(0)
    images, labels = data.train_set.__getitems__(batch)
    model = ckpt.load_model(source).train()
    torch.manual_seed(dropout_seed(config.run.seed, 0, 0, 0))
    F.cross_entropy(model(images), labels).backward()
    lr, decay = config.optim.lr, config.optim.weight_decay
    for name, p in model.named_parameters():
        expected = before[name] - lr * decay * before[name] - lr * p.grad
        torch.testing.assert_close(after[name], expected, rtol=1e-5, atol=1e-7, msg=name)
        assert not torch.equal(after[name], before[name]), name  # it learned


def test_layers_that_do_not_fit_are_listed_and_bad_names_refused(store, debug_run, tmp_path):
    with pytest.raises(ckpt.CheckpointError, match=r"fc8: \(10, 32\) there, \(3, 32\) here"):
        train(recipe(store, f"run.init_from={debug_run}", "data.classes=3"), tmp_path / "a")
    with pytest.raises(ckpt.CheckpointError, match=r"model\.reinit names fc9, not layers"):
        train(recipe(store, f"run.init_from={debug_run}", "model.reinit=[fc9]"), tmp_path / "b")
    with pytest.raises(ConfigError, match=r"optim\.freeze names 'conv9'.*conv1, conv2"):
        train(recipe(store, "optim.freeze=[conv9]"), tmp_path / "c")
    with pytest.raises(ConfigError, match="names no weights"):
        train(recipe(store, "model.reinit=[fc8]"), tmp_path / "d")
    owt = ["--set", "model.name=alexnet_owt", "--init-from", debug_run, "--out", tmp_path / "e"]
    other = cli("train", "--config", DEBUG, "--set", f"data.store={store}", *owt)
    assert other.returncode == 2 and "holds alexnet2012" in other.stderr
    assert "Traceback" not in other.stderr
    both = cli("train", "--resume", debug_run, "--init-from", debug_run)
    assert both.returncode == 2 and "--init-from starts a new run" in both.stderr


def test_a_layers_rate_multiplier_scales_its_step_and_only_its_step():
    # one step of the paper's rule from zero velocity is -lr (g + decay w): with fc10's
    # rate doubled, fc10's step doubles (weights and biases), every other layer's is the same
    torch.manual_seed(0)
    base = create_model("cifar4", num_classes=10).double()
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    steps = []
    for mult in (None, {"fc10": 2.0}):
        model = create_model("cifar4", num_classes=10).double()
        model.load_state_dict(base.state_dict())
        optim = OptimConfig(lr=0.01, momentum=0.9, weight_decay=5e-4, layer_lr_mult=mult)
        optimizer = make_optimizer(model, optim)
        model(x).square().sum().backward()
        optimizer.step()
        steps.append({k: p.detach() - base.state_dict()[k] for k, p in model.named_parameters()})
    plain, doubled = steps
    for key in plain:
        factor = 2.0 if key.startswith("fc10") else 1.0
        torch.testing.assert_close(doubled[key], factor * plain[key], rtol=1e-9, atol=1e-15)
