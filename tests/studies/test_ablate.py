"""The ablation harness (#7): studies end to end on the debug network, epochs to threshold."""

from __future__ import annotations

import json

import pytest

from alexnet.models.alexnet import AlexNetConfig
from alexnet.studies.ablate import (
    STUDIES,
    epochs_to_threshold,
    run_study,
    summarize,
    table,
    training_curve,
    variant_config,
)
from alexnet.train.config import load_config

from fixtures import DEBUG, cli


def test_epochs_to_threshold_against_a_hand_made_curve():
    curve = [(1, 0.9), (2, 0.6), (3, 0.4), (4, 0.2), (5, 0.1)]
    # 25% lies between epoch 3 (40%) and epoch 4 (20%), three quarters of the way
    assert epochs_to_threshold(curve, 0.25) == pytest.approx(3.75)
    assert epochs_to_threshold(curve, 0.4) == 3.0  # reached exactly at an epoch
    assert epochs_to_threshold(curve, 0.95) == 1.0  # already there after the first epoch
    assert epochs_to_threshold(curve, 0.05) is None  # never
    # a curve that goes back up counts the first crossing
    assert epochs_to_threshold([(1, 0.5), (2, 0.2), (3, 0.6)], 0.3) == pytest.approx(5 / 3)
    # a start changes nothing once the first point is above the threshold
    assert epochs_to_threshold(curve, 0.7, start=0.9) == pytest.approx(1 + 2 / 3)  # 90 -> 60
    # from chance at epoch 0 (90% for 10 classes) to 60% at epoch 1: 70% at 2/3 of an epoch
    assert epochs_to_threshold([(1, 0.6)], 0.7, start=0.9) == pytest.approx(2 / 3)
    assert epochs_to_threshold([(1, 0.6)], 0.95, start=0.9) == 0.0  # chance is below it


def test_an_epoch_stopped_by_the_budget_is_placed_at_the_share_it_ran():
    records = [
        {"epoch": 1, "complete": True, "epoch_steps": 400, "train_top1_error": 0.6},
        {"epoch": 2, "complete": False, "epoch_steps": 100, "train_top1_error": 0.4,
         "train_top1_error_parts": [0.4, None, None, None, None]},
    ]  # fmt: skip
    assert training_curve(records) == [(1.0, 0.6), (1.25, 0.4)]
    # without a whole epoch to count steps by, the partial one is left out
    assert training_curve(records[1:]) == []


def test_the_training_curve_uses_each_fifth_of_an_epoch_where_recorded():
    records = [
        {"epoch": 1, "train_top1_error": 0.6, "train_top1_error_parts": [0.9, 0.7, 0.6, 0.5, 0.3]},
        {"epoch": 2, "train_top1_error": 0.2},  # a record from before parts were kept
    ]
    curve = training_curve(records)
    assert curve == [(0.2, 0.9), (0.4, 0.7), (0.6, 0.6), (0.8, 0.5), (1.0, 0.3), (2.0, 0.2)]
    # 25% is reached between 1.0 (30%) and 2.0 (20%): halfway
    assert epochs_to_threshold(curve, 0.25) == pytest.approx(1.5)
    assert epochs_to_threshold(curve, 0.55) == pytest.approx(0.7)


def test_variants_are_compared_seed_by_seed_with_the_first(tmp_path):
    # hand-made final records: seed 2 of the variant without LRN never ran
    finals = {("with-lrn", 0): 0.30, ("with-lrn", 1): 0.34, ("with-lrn", 2): 0.32,
              ("without-lrn", 0): 0.31, ("without-lrn", 1): 0.37}  # fmt: skip
    for (variant, seed), error in finals.items():
        run = tmp_path / variant / f"seed-{seed}"
        run.mkdir(parents=True)
        record = {"epoch": 1, "val_top1_error": error, "val_top5_error": 0.1,
                  "train_top1_error": 0.2, "val_images": 400}  # fmt: skip
        (run / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    result = summarize("lrn", tmp_path, seeds=3)
    first, other = result["variants"]
    assert first["val_top1_vs_first"]["by_seed"] == [0.0, 0.0, 0.0]
    paired = other["val_top1_vs_first"]
    assert paired["by_seed"] == pytest.approx([0.01, 0.03])  # seeds 0 and 1 only
    assert paired["mean"] == pytest.approx(0.02) and paired["n"] == 2
    assert paired["std"] == pytest.approx(2**0.5 * 0.01)  # stdev of 0.01 and 0.03
    *_, last_row, noise = table(result).splitlines()
    assert "2.00 +- 1.41" in last_row
    # the first variant's mean 32% on 400 images: sqrt(0.32 * 0.68 / 400) = 2.33 points
    assert first["val_top1_binomial_se"] == pytest.approx((0.32 * 0.68 / 400) ** 0.5)
    assert "400 images, one image 0.25 points" in noise and "error of 2.33 points" in noise


def changed_keys(recipe, config) -> list[str]:
    """section.key of every setting that differs between two recipes."""
    a, b = recipe.to_dict(), config.to_dict()
    return [f"{section}.{key}" for section in b for key in set(a[section]) | set(b[section])
            if a[section].get(key) != b[section].get(key)]  # fmt: skip


def test_every_study_changes_only_what_it_names():
    recipe = load_config(DEBUG)
    for name, study in STUDIES.items():
        configs = [variant_config(recipe, change, 3, 1.5) for change in study.variants.values()]
        base = configs[0]
        for config in configs:
            assert config.run.seed == 3 and config.run.budget_minutes == 1.5
        if name == "relu-tanh":  # Figure 1: the activation, and no weight decay in both
            assert [c.model["activation"] for c in configs] == ["relu", "tanh"]
            named = {"model.activation", "optim.weight_decay", "optim.layer_weight_decay"}
            assert all(c.optim.weight_decay == 0 for c in configs)
        else:
            assert base.model == recipe.model and base.data == recipe.data, name  # the paper's
            # the network's options, and the PCA lighting study's data.lighting
            named = {f"model.{k}" for c in configs for k in c.model} | {"data.lighting"}
        for config in configs:
            changed = set(changed_keys(recipe, config)) - {"run.seed", "run.budget_minutes"}
            assert changed <= named, (name, changed - named)
            assert config.optim == recipe.optim or name == "relu-tanh", name
            assert config.schedule == recipe.schedule, name
        assert len({json.dumps(c.to_dict(), sort_keys=True) for c in configs}) == len(configs)
    # the paper's one-GPU net: conv1-conv4 halved, conv5 kept
    towers = STUDIES["towers"].variants["one tower, half the kernels in conv1-4"]
    paper = variant_config(load_config(), towers, 0, None)
    assert paper.model["towers"] == 1 and paper.model["widths"] == [48, 128, 192, 192, 256]
    assert list(AlexNetConfig().widths) == [96, 256, 384, 384, 256]
    # no weight decay means none in any layer, fc10's wc=1 in cifar4's recipe included
    cifar = load_config("configs/cifar4.yaml")
    assert cifar.optim.layer_weight_decay == {"fc10": 1.0}
    for change in STUDIES["relu-tanh"].variants.values():
        optim = variant_config(cifar, change, 0, None).optim
        assert optim.weight_decay == 0 and optim.layer_weight_decay is None


def test_a_study_runs_end_to_end_and_resumes(store, tmp_path):
    recipe = load_config(DEBUG, [f"data.store={store}", "run.epochs=2"])
    lines = []
    result = run_study("pooling", recipe, tmp_path / "s", seeds=2, budget_minutes=None,
                       log=lines.append)  # fmt: skip
    assert [row["variant"] for row in result["variants"]] == list(STUDIES["pooling"].variants)
    for row in result["variants"]:
        assert row["runs"] == 2 and row["epochs"]["mean"] == 2
        assert 0 <= row["val_top1_error"]["mean"] <= 1 and row["val_top1_error"]["std"] >= 0
    assert (tmp_path / "s" / "non-overlapping-2-2" / "seed-1" / "checkpoints" / "last.pt").is_file()
    # each seed is its own run, with the recipe's settings but the seed
    saved = (tmp_path / "s" / "overlapping-3-2" / "seed-1" / "config.yaml").read_text()
    assert "seed: 1" in saved and "pool_size" not in saved
    assert (
        "pool_size: 2"
        in (tmp_path / "s" / "non-overlapping-2-2" / "seed-0" / "config.yaml").read_text()
    )
    # again: nothing is trained, the table is the same
    lines.clear()
    again = run_study("pooling", recipe, tmp_path / "s", seeds=2, budget_minutes=None,
                      log=lines.append)  # fmt: skip
    assert all("kept" in line for line in lines) and len(lines) == 4
    assert again["variants"] == result["variants"]


def test_a_run_another_study_finished_is_copied_not_trained_again(store, tmp_path):
    sets = ["run.epochs=1", "data.train_images=16", "data.val_images=8", f"data.store={store}"]
    recipe = load_config(DEBUG, sets)
    first = run_study("pooling", recipe, tmp_path / "pooling", seeds=1, budget_minutes=None,
                      log=lambda line: None)  # fmt: skip
    lines = []
    second = run_study("dropout", recipe, tmp_path / "dropout", seeds=1, budget_minutes=None,
                       log=lines.append)  # fmt: skip
    # the paper's network under the same recipe and seed: the pooling study's run, copied
    source = tmp_path / "pooling" / "overlapping-3-2" / "seed-0"
    assert lines[0] == f"dropout: dropout 0.5, seed 0: the same run finished in {source}; copied"
    assert lines[1].startswith("dropout: no dropout, seed 0: training")
    copy = tmp_path / "dropout" / "dropout-0-5" / "seed-0"
    assert (copy / "config.yaml").read_text() == (source / "config.yaml").read_text()
    assert (copy / "checkpoints" / "last.pt").is_file()
    assert second["variants"][0]["val_top1_error"] == first["variants"][0]["val_top1_error"]
    # the copy's logs are its own: appending to them leaves the source's as they were
    before = (source / "metrics.jsonl").read_text()
    with open(copy / "metrics.jsonl", "a") as f:
        f.write("{}\n")
    assert (source / "metrics.jsonl").read_text() == before
    # another recipe (two epochs) is another run: trained, not copied
    lines.clear()
    longer = load_config(DEBUG, [*sets, "run.epochs=2"])
    run_study("dropout", longer, tmp_path / "dropout-2", seeds=1, budget_minutes=None,
              log=lines.append)  # fmt: skip
    assert not any("copied" in line for line in lines)


def test_ablate_command_writes_table_plot_and_json(store, tmp_path):
    done = cli("ablate", "dropout", "--data", store, "--seeds", "1", "--recipe", DEBUG,
               "--set", "run.epochs=1", "--budget", "none", "--out", tmp_path / "d")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "no dropout" in done.stdout and "dropout 0.5" in done.stdout
    result = json.loads((tmp_path / "d" / "ablate.json").read_text())
    assert result["study"] == "dropout" and result["command"].startswith("alexnet ablate")
    assert result["variants"][0]["val_top1_error"]["std"] is None  # one seed: no spread
    assert (tmp_path / "d" / "ablate.png").stat().st_size > 5_000
    listed = cli("ablate", "list")
    assert all(name in listed.stdout for name in STUDIES)
    bad = cli("ablate", "colour", "--data", store)
    assert bad.returncode == 2 and "no study 'colour'" in bad.stderr


def test_relu_tanh_runs_the_four_layer_net_and_counts_epochs_to_the_threshold(store32, tmp_path):
    done = cli("ablate", "relu-tanh", "--data", store32, "--seeds", "1",
               "--set", "run.epochs=2", "--set", "optim.batch_size=10", "--set", "run.device=cpu",
               "--threshold", "0.95", "--budget", "none", "--out", tmp_path / "rt")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "fashion-mnist at 32x32" in done.stdout and "epochs to 95%" in done.stdout
    result = json.loads((tmp_path / "rt" / "ablate.json").read_text())
    assert result["data"].startswith("fashion-mnist at 32x32") and result["threshold"] == 0.95
    relu, tanh = result["variants"]
    assert (relu["variant"], tanh["variant"]) == ("ReLU", "tanh")
    # 10 classes: chance is 90% error, already below 95% at epoch 0; the ratio of 0 to 0
    # is left undefined
    assert result["chance_error"] == pytest.approx(0.9)
    assert relu["epochs_to_threshold_vs_first"] is None
    for row in (relu, tanh):
        assert len(row["train_curves"][0]) == 10  # two epochs of five parts
        assert row["epochs_to_threshold"]["mean"] == 0.0
        # without the start at chance, the first fifth of an epoch that got there
        assert epochs_to_threshold(row["train_curves"][0], 0.95) in (0.2, 0.4, 0.6, 0.8, 1.0)
    saved = (tmp_path / "rt" / "tanh" / "seed-0" / "config.yaml").read_text()
    assert "name: cifar4" in saved and "activation: tanh" in saved


def test_a_class_subset_trains_and_evaluates_on_its_classes_only(store, tmp_path):
    from alexnet.data.store import Store
    from alexnet.models import checkpoint as ckpt

    run = tmp_path / "three"
    done = cli("train", "--config", DEBUG, "--set", f"data.store={store}", "--set", "run.epochs=1",
               "--set", "data.classes=3", "--out", run)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert ", 3 classes," in done.stderr
    saved = ckpt.load(run / "checkpoints" / "last.pt")
    assert saved["record"].network.config["num_classes"] == 3
    labels = Store(store).split("val").labels
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["val_images"] == int((labels < 3).sum()) < len(labels)
    assert list(saved["record"].classes.ids) == Store(store).class_ids[:3]
    evaluated = cli("eval", "--checkpoint", run / "checkpoints" / "last.pt", "--data", store,
                    "--out", tmp_path / "eval")  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert result["images"] == record["val_images"]
    refused = cli("figures", "predictions", "--checkpoint", run / "checkpoints" / "last.pt",
                  "--data", store, "--out", tmp_path / "fig")  # fmt: skip
    assert refused.returncode == 2 and "first 3 of" in refused.stderr
    too_many = cli("train", "--config", DEBUG, "--set", f"data.store={store}",
                   "--set", "data.classes=11", "--out", tmp_path / "eleven")  # fmt: skip
    assert too_many.returncode == 2 and "holds 10 classes" in too_many.stderr


@pytest.mark.parametrize("name", [n for n in STUDIES if n != "relu-tanh"])
def test_every_study_of_the_2012_network_runs_end_to_end_on_the_debug_network(
    name, store, tmp_path
):
    sets = ["run.epochs=1", "data.train_images=16", "data.val_images=8", f"data.store={store}"]
    recipe = load_config(DEBUG, sets)
    result = run_study(name, recipe, tmp_path / name, seeds=1, budget_minutes=None,
                       log=lambda line: None)  # fmt: skip
    assert [row["variant"] for row in result["variants"]] == list(STUDIES[name].variants)
    assert all(row["runs"] == 1 and row["epochs"]["mean"] == 1 for row in result["variants"])
    # four lines of header, a row per variant, the validation set's noise
    lines = table(result).splitlines()
    assert len(lines) == 4 + len(STUDIES[name].variants) + 1
    assert lines[-1].startswith("validation: 8 images, one image 12.50 points")
