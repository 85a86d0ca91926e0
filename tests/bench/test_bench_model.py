"""`alexnet bench model` and the process settings it applies."""

import json
import sys

import pytest
import torch

import alexnet.bench.model
import alexnet.core.runtime as runtime
from alexnet.bench.model import ModelBench, bench_model, matmul_limit
from alexnet.cli import main

from fixtures import DEBUG, ROOT


@pytest.fixture(autouse=True)
def small_limit(monkeypatch):
    # The limit's 2048^3 products take seconds each on a 2-core CPU; these tests check what
    # is reported, not the machine
    monkeypatch.setattr(alexnet.bench.model, "LIMIT_SIZE", {"cpu": 256, "cuda": 256})


def test_model_benchmark_reports_rates_ratios_and_fractions(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["bench", "model", "--batch", "2", "--repeats", "2", "--dtypes", "fp32"]
    assert main([*args, "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "vs alexnet_owt" in printed and "GFLOP/s" in printed
    result = json.loads(out.read_text())
    cases = {(e["model"], e["mode"], e["dtype"]): e for e in result["results"]}
    assert set(cases) == {
        (m, mode, "fp32") for m in ("alexnet2012", "alexnet_owt") for mode in ("train", "infer")
    }
    for entry in cases.values():
        rate = entry["images_per_s"]
        assert 0 < rate["min"] <= rate["median"] <= rate["max"]
        assert entry["fraction_of_limit"] > 0
        assert entry["page_faults_per_step"] >= 0
    assert "faults/step" in printed
    assert cases[("alexnet_owt", "train", "fp32")]["ratio_to_reference"] == 1.0
    ours = cases[("alexnet2012", "infer", "fp32")]
    owt = cases[("alexnet_owt", "infer", "fp32")]
    ratio = ours["images_per_s"]["median"] / owt["images_per_s"]["median"]
    assert ours["ratio_to_reference"] == pytest.approx(ratio)
    # The multiply-adds are the layer table's: 724,406,816 for the paper's network at 224.
    assert ours["forward_macs_per_image"] == 724_406_816
    # A training step: forward, every weight gradient, every input gradient but conv1's
    # (55 x 55 outputs x 96 kernels x 3 x 11 x 11 multiply-adds, by hand)
    conv1 = {"alexnet2012": 55 * 55 * 96 * 3 * 11 * 11, "alexnet_owt": 55 * 55 * 64 * 3 * 11 * 11}
    for (model, mode, dtype), entry in cases.items():
        forward = entry["forward_macs_per_image"]
        step = forward if mode == "infer" else 3 * forward - conv1[model]
        assert entry["step_macs_per_image"] == step
        limit = result["matmul_flops_per_s"][dtype]["median"]
        share = entry["images_per_s"]["median"] * 2 * step / limit
        assert entry["fraction_of_limit"] == pytest.approx(share, rel=1e-12)
    assert cases[("alexnet2012", "train", "fp32")]["step_macs_per_image"] == 2_067_805_248
    assert "but the first" in result["counting"]
    assert result["settings"]["fuse"] and result["settings"]["lrn_backend"] == "auto"
    assert result["settings"]["processes"] == "one per model and dtype"


def test_bf16_is_measured_only_where_the_hardware_has_it(tmp_path, capsys, monkeypatch):
    import alexnet.core.runtime
    from alexnet.bench.model import auto_dtypes

    monkeypatch.setattr(alexnet.core.runtime, "cpu_has_bf16", lambda: True)
    assert auto_dtypes("cpu") == (("fp32", "bf16"), None)
    monkeypatch.setattr(alexnet.core.runtime, "cpu_has_bf16", lambda: False)
    out = tmp_path / "bench.json"
    args = ["bench", "model", "--batch", "2", "--repeats", "1", "--modes", "infer"]
    assert main([*args, "--in-process", "--output", str(out)]) == 0
    assert "bf16 left out: this CPU has no bf16 instructions" in capsys.readouterr().err
    assert {e["dtype"] for e in json.loads(out.read_text())["results"]} == {"fp32"}


def test_channels_last_can_be_chosen_per_model(capsys):
    args = ["bench", "model", "--batch", "1", "--repeats", "1", "--dtypes", "fp32", "--json"]
    assert main([*args, "--modes", "infer", "--channels-last", "alexnet2012", "--in-process"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["settings"]["channels_last"] == ["alexnet2012"]
    assert "channels_last: alexnet2012" in result["table"]
    assert result["settings"]["processes"] == "this one"


def test_compile_can_be_chosen_per_model(capsys, monkeypatch):
    compiled = []  # which networks went through torch.compile (recorded, not compiled: quick)
    monkeypatch.setattr(torch, "compile", lambda model: compiled.append(model.config) or model)
    args = ["bench", "model", "--batch", "1", "--repeats", "1", "--dtypes", "fp32", "--json"]
    assert main([*args, "--modes", "infer", "--compile", "alexnet2012", "--in-process"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["settings"]["compile"] == ["alexnet2012"]
    assert "torch.compile: alexnet2012" in result["table"]
    assert [c.towers for c in compiled] == [2]  # the paper's network, not the reference


def test_a_failing_benchmark_process_is_reported():
    # an LRN backend that does not exist fails at the first step, inside the worker process;
    # the error comes back with its traceback
    with pytest.raises(RuntimeError, match=r"(?s)a benchmark process failed.*LRN backend"):
        bench_model(ModelBench(batch=1, repeats=1, models=("alexnet2012",), dtypes=("fp32",),
                               modes=("infer",), fuse=False, lrn_backend="fastest"))  # fmt: skip
    with pytest.raises(ValueError, match="batch"):
        bench_model(ModelBench(batch=0))


def test_a_network_can_be_measured_with_config_options(capsys):
    # the paper's network without its LRN layers, beside it and the reference: what the LRN
    # costs (docs/benchmarks.md)
    models = "alexnet2012,alexnet2012:lrn=False,alexnet_owt"
    args = ["bench", "model", "--batch", "1", "--repeats", "1", "--dtypes", "fp32", "--json"]
    assert main([*args, "--modes", "infer", "--models", models, "--in-process"]) == 0
    result = json.loads(capsys.readouterr().out)
    entries = {e["model"]: e for e in result["results"]}
    assert list(entries) == models.split(",")
    # the same multiply-adds: LRN is not counted as multiply-adds by the layer table
    assert entries["alexnet2012:lrn=False"]["forward_macs_per_image"] == 724_406_816
    assert "alexnet2012:lrn=False infer" in result["table"]  # the column widens to fit
    with pytest.raises(ValueError, match="unknown option 'lrm'"):
        bench_model(ModelBench(models=("alexnet2012:lrm=False",)))
    with pytest.raises(ValueError, match="lrn must be bool"):
        bench_model(ModelBench(models=("alexnet2012:lrn=maybe",)))


def test_model_specs_split_on_commas_outside_brackets():
    from alexnet.models.registry import parse_spec, split_specs

    text = "alexnet2012, alexnet2012:widths=(48, 128, 192, 192, 256):towers=1"
    assert split_specs(text) == (
        "alexnet2012",
        "alexnet2012:widths=(48, 128, 192, 192, 256):towers=1",
    )
    assert parse_spec(split_specs(text)[1]) == (
        "alexnet2012",
        {"widths": [48, 128, 192, 192, 256], "towers": 1},
    )
    with pytest.raises(ValueError, match="expected NAME:KEY=VALUE"):
        parse_spec("alexnet2012:lrn")
    with pytest.raises(ValueError, match="unknown model"):
        parse_spec("alexnet3000:lrn=False")


def test_matmul_limit_takes_the_faster_way():
    import torch

    limit = matmul_limit("fp32", torch.device("cpu"), repeats=1, n=256)
    assert limit["median"] == max(limit["mm"]["median"], limit["conv1x1"]["median"])
    assert limit["way"] in ("mm", "conv1x1")


def test_bench_model_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown model"):
        bench_model(ModelBench(models=("alexnet3000",)))
    with pytest.raises(ValueError, match="unknown dtype"):
        bench_model(ModelBench(dtypes=("fp8",)))


def test_keep_freed_memory_can_be_turned_off(monkeypatch):
    monkeypatch.setattr(runtime, "_applied", None)
    monkeypatch.setenv("ALEXNET_MALLOC", "system")
    assert runtime.keep_freed_memory() is False
    monkeypatch.setattr(runtime, "_applied", None)
    monkeypatch.delenv("ALEXNET_MALLOC")
    applied = runtime.keep_freed_memory()
    assert applied is True or not runtime.sys.platform.startswith("linux")
    assert runtime.keep_freed_memory() is applied  # idempotent


def test_bench_train_times_the_store_against_synthetic_input(store):
    from alexnet.bench.train import bench_train
    from alexnet.train.config import load_config

    config = load_config(DEBUG, [f"data.store={store}"])
    result = bench_train(config, steps=2, rounds=2, warmup=1)
    assert len(result["real_images_per_s"]) == len(result["synthetic_images_per_s"]) == 2
    assert result["ratio"] == result["real_median"] / result["synthetic_median"]
    assert "from the store" in result["table"] and result["batch"] == 8
    # timed as training runs, with glibc keeping freed memory (where there is glibc)
    linux = sys.platform.startswith("linux")
    assert result["malloc_keeps_freed_memory"] is True or not linux
    with pytest.raises(ValueError, match="fewer than"):
        bench_train(config, steps=50, rounds=2)


def test_page_faults_count_fresh_memory():
    import mmap

    from alexnet.bench.model import page_faults

    size = 64 * 2**20
    with mmap.mmap(-1, size) as fresh:  # new anonymous pages, not malloc's reused ones
        before = page_faults()
        for offset in range(0, size, 4096):
            fresh[offset] = 1  # the first write to each page faults it in
        assert page_faults() - before >= 1000  # 16,384 with 4 KiB pages, fewer if huge


def test_bench_fused_times_both_blocks_and_dtypes(tmp_path, capsys):
    out = tmp_path / "fused.json"
    main(["bench", "fused", "--batch", "2", "--repeats", "1", "--output", str(out)])
    table = capsys.readouterr().out
    assert "conv1  2x96x55x55" in table and "conv2  2x256x27x27" in table
    result = json.loads(out.read_text())
    assert [(r["block"], r["dtype"]) for r in result["results"]] == [
        ("conv1", "fp32"),
        ("conv1", "bf16"),
        ("conv2", "fp32"),
        ("conv2", "bf16"),
    ]
    assert all(r["forward_ms"] > 0 and r["backward_ms"] > 0 for r in result["results"])


def test_bench_profile_lists_each_networks_operations(tmp_path, capsys):
    out, traces = tmp_path / "profile.json", tmp_path / "traces"
    args = ["bench", "profile", "--batch", "2", "--steps", "2", "--warmup", "1", "--top", "50"]
    assert main([*args, "--dtype", "fp32", "--trace", str(traces), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert set(result["profiles"]) == {"alexnet2012", "alexnet_owt"}
    for name, p in result["profiles"].items():
        ops = {r["op"]: r for r in p["ops"]}
        assert "aten::convolution_backward" in ops, name  # a training step: the backward ran
        times = [r["ms_per_step"] for r in p["ops"]]
        assert times == sorted(times, reverse=True) and min(times) > 0
        assert sum(r["share"] for r in p["ops"]) <= 1 + 1e-9
        assert (traces / f"{name}-train-fp32.json").stat().st_size > 0
        assert f"{name}: " in printed
    # our fused ReLU-LRN-pool is named in the profile, where the reference has max-pooling
    ours = {r["op"]: r for r in result["profiles"]["alexnet2012"]["ops"]}
    # two steps recorded: the fused block runs once per step in each of conv1 and conv2
    assert ours["alexnet::relu_lrn_pool"]["calls_per_step"] == 2
    assert ours["alexnet::relu_lrn_pool_backward"]["calls_per_step"] == 2


def test_bench_profile_by_shape_tells_the_layers_apart():
    from alexnet.bench.profile import bench_profile

    result = bench_profile(("alexnet2012",), "infer", "fp32", batch=2, steps=1, warmup=1,
                           top=100, by_shape=True)  # fmt: skip
    convs = [r for r in result["profiles"]["alexnet2012"]["ops"] if "convolution" in r["op"]]
    shapes = " ".join(r["shapes"] for r in convs)
    assert "[96, 3, 11, 11]" in shapes and "[256, 48, 5, 5]" in shapes  # conv1, conv2's towers


@pytest.mark.parametrize(
    "record", sorted((ROOT / "docs" / "bench").glob("bench-model*.json")), ids=lambda p: p.stem
)
def test_recorded_shares_of_the_limit_follow_the_counting_rule(record):
    from alexnet.bench.model import step_macs

    result = json.loads(record.read_text())
    for entry in result["results"]:
        macs = step_macs(entry["model"])[entry["mode"]]
        limit = result["matmul_flops_per_s"][entry["dtype"]]["median"]
        share = entry["images_per_s"]["median"] * 2 * macs / limit
        assert entry["fraction_of_limit"] == pytest.approx(share, rel=1e-9), entry["model"]


def test_runtimes_are_timed_beside_the_package_on_the_same_network(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    small = "alexnet2012:fc_width=32"  # the paper's convolutions, small fc layers
    out = tmp_path / "bench.json"
    args = ["bench", "model", "--batch", "2", "--repeats", "1", "--dtypes", "fp32,bf16",
            "--modes", "infer", "--models", small, "--onnxruntime", "--openvino",
            "--in-process"]  # fmt: skip
    assert main([*args, "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = {(r["model"], r["dtype"], r["batch"]): r for r in result["runtimes"]}
    assert set(rows) == {(small, d, b) for d in ("fp32", "bf16") for b in (1, 8, 2)}
    for (_, dtype, _), row in rows.items():
        ours = row["package_images_per_s"]
        assert 0 < ours["min"] <= ours["median"] <= ours["max"]
        # ONNX Runtime's CPU provider runs fp32 only; OpenVINO both
        assert ("onnxruntime_images_per_s" in row) == (dtype == "fp32")
        for name in ("onnxruntime", "openvino") if dtype == "fp32" else ("openvino",):
            theirs = row[f"{name}_images_per_s"]["median"]
            assert row[f"{name}_vs_package"] == pytest.approx(theirs / ours["median"])
        assert row["threads"] == torch.get_num_threads()
    printed = capsys.readouterr().out
    assert "onnxruntime" in printed and "openvino" in printed


def test_predict_over_a_folder_is_timed_against_inference_on_prepared_inputs(
    debug_run, tmp_path, capsys
):
    from fixtures import encode, photo, write

    for k in range(6):
        write(tmp_path / "photos" / f"{k}.jpg", encode(photo(k)))
    out = tmp_path / "bench.json"
    args = ["bench", "predict", str(tmp_path / "photos"), "--checkpoint", str(debug_run),
            "--batch", "4", "--repeats", "2", "--output", str(out)]  # fmt: skip
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert result["settings"]["images"] == 6 and result["settings"]["batch"] == 4
    ours, bare = result["predict_images_per_s"], result["inference_images_per_s"]
    assert 0 < ours["min"] <= ours["median"] <= ours["max"]
    assert result["predict_vs_inference"] == pytest.approx(ours["median"] / bare["median"])
    assert "predict / inference" in capsys.readouterr().out


def test_features_are_timed_against_inference_on_prepared_inputs(debug_run, store, tmp_path):
    out = tmp_path / "bench.json"
    args = ["bench", "features", str(store), "--checkpoint", str(debug_run), "--batch", "4",
            "--images", "8", "--repeats", "2", "--layers", "conv5,fc7"]  # fmt: skip
    args += ["--output", str(out)]
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert result["settings"]["layers"] == ["conv5", "fc7"]
    ours, bare = result["features_images_per_s"], result["inference_images_per_s"]
    assert 0 < ours["min"] <= ours["median"] <= ours["max"]
    assert result["features_vs_inference"] == pytest.approx(ours["median"] / bare["median"])
