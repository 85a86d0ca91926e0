"""The docs' table functions against tables worked by hand from small records written
here: the arithmetic (differences seed by seed, ratios, means, shares, durations) and the
formatting a reader sees."""

from __future__ import annotations

import json

import pytest

from alexnet.records import tables


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "ROOT", tmp_path)
    return tmp_path


def write(root, name, data):
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(d) + "\n" for d in data))
    else:
        path.write_text(json.dumps(data))
    return name


def spread(mean, std, n=2):
    return {"mean": mean, "std": std, "n": n}


def test_a_table_aligns_numbers_right_text_left_and_writes_none_as_a_dash(root):
    rows = [{"a": "x", "b": 0.5, "c": None}, {"a": "y", "b": 0.25, "c": 3}]
    text = tables.table(rows, [("name", "a", "{}"), ("share", "b", "{:.1%}"), ("n", "c", "{}")])
    assert text.splitlines() == [
        "| name | share | n |",
        "| --- | ---: | ---: |",
        "| x | 50.0% | - |",
        "| y | 25.0% | 3 |",
    ]


def test_an_ablation_row_differs_from_the_first_variant_seed_by_seed(root):
    def variant(name, by_seed, top5, train):
        return {"variant": name, "val_top1_error_by_seed": by_seed,
                "val_top1_error": spread(sum(by_seed.values()) / 2, 0.01),
                "val_top5_error": spread(top5, 0.0), "train_top1_error": spread(train, 0.02),
                "epochs_to_threshold": spread(None, None, 0), "epochs": spread(12, 0)}  # fmt: skip

    write(root, "study/ablate.json", {"variants": [
        variant("a", {"0": 0.456, "1": 0.450}, 0.054, 0.44),
        variant("b", {"0": 0.454, "1": 0.470}, 0.058, 0.48),
    ]})  # fmt: skip
    text = tables.ablation("study", {"top-1": "top1", "per seed": "seeds", "minus": "minus",
                                     "reach": "reach"})  # fmt: skip
    # by hand: b - a = 45.4 - 45.6 = -0.2 and 47.0 - 45.0 = +2.0 points
    assert text.splitlines()[2:] == [
        "| a | 45.30 +- 1.00% | 45.6, 45.0 | | not reached |",
        "| b | 46.20 +- 1.00% | 45.4, 47.0 | -0.2, +2.0 | not reached |",
    ]


def test_bench_rows_carry_the_ratio_to_torchvision_measured_in_the_same_run(root):
    def result(model, mode, dtype, median):
        return {"model": model, "mode": mode, "dtype": dtype,
                "images_per_s": {"median": median, "min": median - 1, "max": median + 1},
                "fraction_of_limit": 0.5}  # fmt: skip

    write(root, "bench.json", {"results": [
        result("alexnet2012", "train", "fp32", 72.0),
        result("alexnet_owt", "train", "fp32", 80.0),
        result("alexnet2012", "infer", "fp32", 2400.0),
        result("alexnet_owt", "infer", "fp32", 1600.0),
    ]})  # fmt: skip
    cells = [("train", "fp32"), ("infer", "fp32"), ("train", "bf16")]
    text = tables.bench_versus([("host", "bench.json")], "run", cells=cells)
    # 72 / 80 = 0.90, 2400 / 1600 = 1.50; bf16 was not measured
    assert text.splitlines()[2] == "| host | 72.0 (0.90x) | 2,400 (1.50x) | - |"
    assert (
        "| alexnet2012 | train | fp32 | 72.0 | 71.0 | 73.0 | 0.90x | 50% |"
        in tables.bench_model("bench.json")
    )


def test_an_epoch_cut_by_the_budget_is_labelled_with_the_share_it_ran():
    # 3 whole epochs of 781 steps, then 173 steps: 3 + 173 / 781 = 3.22
    line = {"epoch": 4, "complete": False, "epoch_steps": 173, "step": 3 * 781 + 173}
    assert tables.epoch_label(line) == "3.2 (budget)"
    assert tables.epoch_label({"epoch": 2, "complete": True}) == "2"


DURATIONS = [(41, "41 s"), (341.4, "5 min 41 s"), (12_454.4, "3 h 28 min"), (3_600, "1 h 00 min")]


@pytest.mark.parametrize("seconds, text", DURATIONS)
def test_durations_read_as_hours_minutes_and_seconds(seconds, text):
    assert tables.minutes(seconds) == text


def test_evaluations_give_accuracy_as_one_minus_the_top1_error(root):
    write(root, "eval.json", {"top1_error": 0.0717, "top5_error": 0.0005, "images": 10_000})
    assert tables.evaluations([("ten crops", "eval.json")]).splitlines()[2] == (
        "| ten crops | 7.17% | 0.05% | 92.83% | 10,000 |"
    )


def test_the_large_batch_rows_average_the_seeds_they_name(root):
    runs = [
        {"run": "b128-s0", "test_top1_error": 0.1554, "best_held_out_top1_error": 0.152},
        {"run": "b128-s1", "test_top1_error": 0.1613, "best_held_out_top1_error": 0.1564},
        {"run": "b128-s2", "test_top1_error": 0.9, "best_held_out_top1_error": 0.9},
    ]
    write(root, "summary.json", {"runs": runs})
    row = tables.large_batch("summary.json", [("b128", ["b128-s0", "b128-s1"])]).splitlines()[2]
    # (15.54 + 16.13) / 2 = 15.835 -> 15.83 or 15.84 by rounding of the float; (15.20 + 15.64) / 2
    assert row.startswith("| b128 | s0: 15.54%, s1: 16.13% | 15.8")
    assert row.endswith("| 15.42% |")


def test_parameters_are_counted_on_the_network_and_shared_out_of_the_whole():
    text = tables.parameters("alexnet2012", ["conv1", "fc6"])
    # by hand: conv1 96 x 3 x 11 x 11 + 96 = 34,944; fc6 9216 x 4096 + 4096 = 37,752,832,
    # of the network's 60,965,224
    assert "| conv1 | 34,944 | 0.06% |" in text
    assert "| fc6 | 37,752,832 | 61.93% |" in text


def test_the_reach_ratio_interpolates_each_curve_where_it_crosses(root):
    # chance 0.9 at epoch 0; variant a crosses 0.5 at epoch 1 exactly; b at 1.5 (between
    # 0.6 at 1 and 0.4 at 2): b takes 1.5 times a's epochs
    write(root, "s/ablate.json", {"chance_error": 0.9, "variants": [
        {"variant": "a", "train_curves": [[[1, 0.5], [2, 0.3]]]},
        {"variant": "b", "train_curves": [[[1, 0.6], [2, 0.4]]]},
    ]})  # fmt: skip
    assert tables.reach_ratio("s", 0.5) == pytest.approx(1.5)


def test_the_packing_rows_say_the_ratio_and_whether_the_logits_were_the_same(root):
    write(root, "packing.json", {"rows": [
        {"model": "alexnet2012", "dtype": "fp32", "batch": 1, "same_logits": True,
         "packed_images_per_s": 84.34, "eager_images_per_s": 75.2, "ratio": 1.1215},
        {"model": "alexnet_owt", "dtype": "bf16", "batch": 128, "same_logits": False,
         "packed_images_per_s": 463.1, "eager_images_per_s": 470.0, "ratio": 0.98532},
    ]})  # fmt: skip
    assert tables.inference_packing("packing.json").splitlines()[2:] == [
        "| `alexnet2012` | fp32 | 1 | 84.3 | 75.2 | 1.12x | yes |",
        "| `alexnet_owt` | bf16 | 128 | 463.1 | 470.0 | 0.99x | no |",
    ]
