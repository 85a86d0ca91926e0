"""Training runs on configs/debug.yaml: run directories, exact resume, several processes,
divergence, and each kind of bad input."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import alexnet
import alexnet.core.files
from alexnet.data.dataset import StoreDataset
from alexnet.data.loader import epoch_batches, subset
from alexnet.models import checkpoint as ckpt
from alexnet.models.record import ModelRecord, Network
from alexnet.models.registry import create_model, parse_spec
from alexnet.train.config import ConfigError, load_config
from alexnet.train.trainer import TrainingError, train

from fixtures import DEBUG, ROOT, cli

ENV = {**os.environ, "ALEXNET_PROGRESS": "0", "PYTHONUNBUFFERED": "1"}


def config(store, *overrides):
    return load_config(DEBUG, [f"data.store={store}", *overrides])


def weights(path) -> dict:
    return ckpt.load(path)["state_dict"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_run_directory_holds_everything_the_issue_lists(store, tmp_path):
    run = tmp_path / "run"
    train(config(store), run)
    assert {p.name for p in run.iterdir()} >= {
        "config.yaml", "version.json", "metrics.jsonl", "train.log", "tensorboard", "checkpoints",
    }  # fmt: skip
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]
    for key in ("train_loss", "train_top1_error", "val_top1_error", "val_top5_error", "lr",
                "images_per_s", "elapsed_s"):  # fmt: skip
        assert key in lines[0]
    assert lines[0]["step"] == 160 // 8
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tensorboard").iterdir())
    # the saved recipe is the resolved one, and it loads back to the same recipe
    saved = load_config(run / "config.yaml")
    assert saved == config(store)
    last = ckpt.load(run / "checkpoints" / "last.pt")
    assert last["progress"]["epoch"] == 2 and last["progress"]["step"] == 0
    assert last["record"].classes.names[0] == "T-shirt/top"
    assert last["config"] == saved.to_dict()
    assert (run / "checkpoints" / "best.pt").is_file()
    version = json.loads((run / "version.json").read_text())
    assert version["torch"] == torch.__version__
    # the processor and threads: runs on two processors differ in their last bits
    assert version["threads"] == torch.get_num_threads()
    named = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    assert version["cpu"] == (named.group(1).strip() if named else version["machine"])


def test_checkpoints_load_without_unpickling_objects(store, tmp_path):
    run = tmp_path / "run"
    train(config(store, "run.epochs=1"), run)
    # weights_only=True refuses any pickled class; this is what ckpt.load uses
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    state["record"] = ModelRecord.from_state(state["record"])  # plain values and tensors
    model = ckpt.load_model(state)
    assert model.name == "alexnet2012" and model.config.widths == (8, 16, 16, 16, 16)


def test_epochs_see_each_image_at_most_once_and_ranks_split_each_batch():
    indices = subset(100, None, 0)
    one = epoch_batches(indices, 8, seed=3, epoch=1)
    assert len(one) == 12 and len({i for b in one for i in b}) == 96
    ranks = [epoch_batches(indices, 8, 3, 1, rank, 2) for rank in (0, 1)]
    assert [a + b for a, b in zip(*ranks, strict=True)] == one
    assert epoch_batches(indices, 8, 3, 2) != one  # reshuffled each epoch
    assert sorted(subset(100, 10, 0)) == list(subset(100, 10, 0)) and len(subset(100, 10, 0)) == 10


def _wait_for_mid_epoch_checkpoint(process, path: Path, timeout=120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return
        if process.poll() is not None:
            pytest.fail(f"training ended before a checkpoint: {process.stderr.read()}")
        time.sleep(0.005)
    pytest.fail("no checkpoint appeared")


def test_a_run_killed_mid_epoch_resumes_to_bit_identical_weights(store, tmp_path):
    sets = [f"data.store={store}", "run.epochs=3", "run.checkpoint_steps=3"]
    args = ["train", "--config", DEBUG] + [x for s in sets for x in ("--set", s)]
    whole = cli(*args, "--out", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr

    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "alexnet", *map(str, args), "--out", str(killed)],
        env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _wait_for_mid_epoch_checkpoint(process, killed / "checkpoints" / "last.pt")
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    at = ckpt.load(killed / "checkpoints" / "last.pt")["progress"]
    assert at["epoch"] < 3, "the run finished before it was killed; the test proves nothing"
    assert at["step"] > 0, "the kill landed at an epoch's end, not in the middle of one"

    resumed = cli("train", "--resume", killed)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    assert_same_weights(
        weights(whole_path := tmp_path / "whole" / "checkpoints" / "last.pt"),
        weights(killed / "checkpoints" / "last.pt"),
    )
    a = ckpt.load(whole_path)
    b = ckpt.load(killed / "checkpoints" / "last.pt")
    for key in a["optimizer"]["state"]:
        assert torch.equal(a["optimizer"]["state"][key]["velocity"],
                           b["optimizer"]["state"][key]["velocity"])  # fmt: skip
    # and every generator ends where the uninterrupted run's does
    ra, rb = a["rng"], b["rng"]
    assert torch.equal(ra["torch"], rb["torch"])
    assert torch.equal(ra["numpy"]["key"], rb["numpy"]["key"])
    assert ra["numpy"]["pos"] == rb["numpy"]["pos"] and ra["python"] == rb["python"]
    lines = lambda run: [  # noqa: E731
        {k: v for k, v in json.loads(x).items() if k in ("epoch", "train_loss", "val_loss")}
        for x in (run / "metrics.jsonl").read_text().splitlines()
    ]
    assert lines(killed) == lines(tmp_path / "whole")


def test_interrupt_saves_a_checkpoint_and_resume_continues(store, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--config", DEBUG, "--set", f"data.store={store}", "--set", "run.epochs=50"]
    process = subprocess.Popen(
        [sys.executable, "-m", "alexnet", *map(str, args), "--out", str(run)],
        env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _wait_for_mid_epoch_checkpoint(process, run / "checkpoints" / "last.pt")  # epoch 1's
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "--resume" in err
    assert ckpt.load(run / "checkpoints" / "last.pt")["progress"]["epoch"] < 50


# Data parallelism must give the gradient of the whole global batch. Both sides run in
# processes of their own with one thread each, so neither depends on how many threads the
# test's worker has: the same run with 1 and 2 threads sums in other orders and ends 2e-3
# apart in float32 after two epochs. One gradient sums the batch's 16 images, the other two
# sums of 8, so the two differ by rounding: each entry may differ by its relative tolerance,
# or by 100 units in the last place of the layer's largest entry (an entry near zero is the
# difference of large terms; on an Intel Xeon one conv1 entry of 968 was 1.07x the former
# alone). A lost or doubled all-reduce differs by a factor of 2, beyond either.
ONE_THREAD = {**ENV, "OMP_NUM_THREADS": "1"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


@pytest.mark.parametrize(("precision", "rtol"), [("fp32", 1e-5), ("fp64", 1e-12)])
def test_the_all_reduced_gradient_of_two_processes_is_the_one_process_gradient(
    store, tmp_path, precision, rtol
):
    step = Path(__file__).with_name("data_parallel_step.py")
    sets = ["optim.batch_size=16", "model.dropout=0.0"]
    one, two = tmp_path / "one" / "grad.pt", tmp_path / "two" / "grad.pt"
    for out, launcher in ((one, [sys.executable]), (two, TORCHRUN)):
        out.parent.mkdir()
        done = subprocess.run(
            [*launcher, str(step), str(store), precision, str(out), *sets],
            env=ONE_THREAD, cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
    a, b = torch.load(one), torch.load(two)
    assert a.keys() == b.keys() and len(a) == 16  # conv1..fc8, weights and biases
    for key in a:
        assert a[key].dtype == (torch.float64 if precision == "fp64" else torch.float32)
        assert a[key].abs().sum() > 0, key  # a gradient reached every layer
        atol = 100 * torch.finfo(a[key].dtype).eps * a[key].abs().max().item()
        torch.testing.assert_close(
            b[key], a[key], rtol=rtol, atol=atol, msg=lambda m, key=key: f"{key}: {m}"
        )


def test_two_gloo_processes_train_as_one_process_with_the_same_global_batch_in_float64(
    store, tmp_path
):
    """Two epochs of `alexnet train` (20 steps, validation, the plateau rule) in float64:
    two processes of 8 images each end where one process of 16 does."""
    sets = [f"data.store={store}", "run.epochs=2", "model.dropout=0.0", "optim.batch_size=16",
            "run.precision=fp64"]  # fmt: skip
    args = ["--config", str(DEBUG)] + [x for s in sets for x in ("--set", s)]
    for run, launcher in (("one", [sys.executable]), ("two", TORCHRUN)):
        done = subprocess.run(
            [*launcher, "-m", "alexnet", "train", *args, "--out", str(tmp_path / run)],
            env=ONE_THREAD, cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
    a = weights(tmp_path / "one" / "checkpoints" / "last.pt")
    b = weights(tmp_path / "two" / "checkpoints" / "last.pt")
    for key in a:
        assert a[key].dtype == torch.float64, key
        torch.testing.assert_close(b[key], a[key], rtol=1e-9, atol=1e-12, msg=key)
    metrics = [
        [json.loads(x) for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        for run in ("one", "two")
    ]
    assert len(metrics[0]) == 2
    for m1, m2 in zip(*metrics, strict=True):
        assert m1["val_images"] == m2["val_images"] == 24
        assert m1["train_loss"] == pytest.approx(m2["train_loss"], rel=1e-9)
        assert m1["val_loss"] == pytest.approx(m2["val_loss"], rel=1e-9)
        assert m1["val_top1_error"] == m2["val_top1_error"]


def test_an_injected_nan_stops_the_run_and_keeps_the_last_good_checkpoint(
    store, tmp_path, monkeypatch
):
    original = StoreDataset.__getitems__
    calls = {"n": 0}

    def poisoned(self, indices):
        images, labels = original(self, indices)
        if self.views == "random":
            calls["n"] += 1
            if calls["n"] > 4:  # from the fifth training batch on
                images = images * float("nan")
        return images, labels

    monkeypatch.setattr(StoreDataset, "__getitems__", poisoned)
    run = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"3 non-finite losses in a row.*is intact"):
        train(config(store, "run.checkpoint_steps=2", "run.max_bad_steps=3"), run)
    last = ckpt.load(run / "checkpoints" / "last.pt")
    assert last["progress"]["step"] == 4  # saved after the 4th (good) step, not since
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values())


def test_bad_recipes_say_which_key_is_wrong(store):
    with pytest.raises(ConfigError, match=r"unknown key optim\.lrate; optim has: name, lr"):
        config(store, "optim.lrate=0.1")
    with pytest.raises(ConfigError, match=r"optim\.lr must be float"):
        config(store, "optim.lr=fast")
    with pytest.raises(ConfigError, match="unknown section"):
        load_config(None, ["optimizer.lr=0.1"])
    with pytest.raises(ConfigError, match=r"unknown key model\.dropuot"):
        config(store, "model.dropuot=0.1")
    with pytest.raises(ConfigError, match="dropout is a probability"):
        config(store, "model.dropout=2.0")
    with pytest.raises(ConfigError, match=r"run\.precision must be one of"):
        config(store, "run.precision=fp8")
    with pytest.raises(ConfigError, match=r"data\.render must be one of cpu, device"):
        config(store, "data.render=gpu")
    with pytest.raises(ConfigError, match="no recipe at"):
        load_config("configs/nope.yaml")
    with pytest.raises(ConfigError, match=r"layer_weight_decay must be a mapping of names"):
        config(store, "optim.layer_weight_decay=[0.1]")
    with pytest.raises(ConfigError, match=r"layer_weight_decay\.fc8 must be float"):
        config(store, "optim.layer_weight_decay={fc8: none}")
    with pytest.raises(ConfigError, match="'fc9', which is not a learned layer"):
        train(config(store, "optim.layer_weight_decay={fc9: 0.0}"), store.parent / "bad")


def test_bad_input_on_the_command_line_gives_one_message(store, tmp_path):
    result = cli("train", "--config", DEBUG, "--set", "run.epochs=many")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "alexnet train: error: run.epochs must be int, got 'many' (str)"
    )
    result = cli("train", "--resume", tmp_path)
    assert result.returncode == 2 and "not a run directory" in result.stderr
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"data": {"store": str(store)}}))
    result = cli("train", "--resume", tmp_path)
    assert result.returncode == 2
    assert "holds no checkpoint" in result.stderr and "Traceback" not in result.stderr
    result = cli("train", "--config", DEBUG, "--set", f"data.store={tmp_path}")
    assert result.returncode == 2 and "is not a prepared store" in result.stderr


def test_resuming_into_another_network_is_refused(store, tmp_path):
    run = tmp_path / "run"
    train(config(store, "run.epochs=1"), run)
    result = cli("train", "--resume", run, "--set", "model.lrn=false")
    assert result.returncode == 2
    assert "differing settings" in result.stderr and "'lrn': (True, False)" in result.stderr


def test_a_corrupt_checkpoint_is_named_with_what_to_do(store, tmp_path):
    run = tmp_path / "run"
    train(config(store, "run.epochs=1"), run)
    path = run / "checkpoints" / "last.pt"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ckpt.CheckpointError, match="truncated or corrupt"):
        ckpt.load(path)
    result = cli("train", "--resume", run)
    assert result.returncode == 2 and "truncated or corrupt" in result.stderr


def test_disk_full_while_saving_keeps_the_previous_checkpoint(store, tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(config(store, "run.epochs=1"), run)
    path = run / "checkpoints" / "last.pt"
    before = path.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(alexnet.core.files.os, "fsync", full)
    with pytest.raises(ckpt.CheckpointError, match=r"disk full.*is intact"):
        ckpt.save(path, {"state_dict": {}})
    assert path.read_bytes() == before
    assert not any(p.name.endswith(".tmp") for p in path.parent.iterdir())


def test_channels_last_and_bf16_train_the_same_network(store, tmp_path):
    base = config(store, "run.epochs=1", "model.dropout=0.0")
    train(base, tmp_path / "plain")
    train(config(store, "run.epochs=1", "model.dropout=0.0", "run.channels_last=true"),
          tmp_path / "nhwc")  # fmt: skip
    a = weights(tmp_path / "plain" / "checkpoints" / "last.pt")
    b = weights(tmp_path / "nhwc" / "checkpoints" / "last.pt")
    for key in a:  # the same arithmetic in another memory order: rounding differs only
        torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=1e-4, msg=key)
    # bf16 autocast, one step from the same initial weights: each layer moves the way fp32
    # moves it, to bf16's 8 bits of precision. (Half the rate would give a norm ratio of
    # 0.5; another batch a cosine near 0.)
    one_step = ["run.epochs=1", "model.dropout=0.0", "data.train_images=8"]
    train(config(store, *one_step), tmp_path / "fp32-step")
    train(config(store, *one_step, "run.precision=bf16"), tmp_path / "bf16-step")
    a = weights(tmp_path / "fp32-step" / "checkpoints" / "last.pt")
    c = weights(tmp_path / "bf16-step" / "checkpoints" / "last.pt")
    torch.manual_seed(base.run.seed)  # the initial weights, as the trainer makes them
    start = create_model(base.model_name, num_classes=10, in_chans=1, **base.model_options)
    for key, w0 in start.state_dict().items():
        fp32, bf16 = (a[key] - w0).flatten(), (c[key] - w0).flatten()
        assert c[key].dtype == torch.float32  # autocast keeps the weights in fp32
        cosine = torch.nn.functional.cosine_similarity(fp32, bf16, dim=0)
        assert cosine > 0.97, (key, cosine)
        assert 0.85 < bf16.norm() / fp32.norm() < 1.15, key


def test_a_compiled_run_trains_the_same_network_and_saves_its_plain_state(
    store, tmp_path, monkeypatch
):
    # Dynamo captures the step's network with our kernels as custom operators and AOT
    # autograd traces its backward; Inductor's code generation is left out (aot_eager), as
    # its first compile takes over a minute on a 2-core machine. benchmarks.md measures the
    # network compiled by Inductor. Dropout's masks would differ, so it is off.
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model: compile_(model, backend="aot_eager"))
    sets = ["run.epochs=1", "model.dropout=0.0", "data.train_images=48", "data.val_images=8"]
    train(config(store, *sets), tmp_path / "eager")
    graphs = torch._dynamo.utils.counters["stats"]
    before = graphs["unique_graphs"]
    train(config(store, *sets, "run.compile=true"), tmp_path / "c")
    assert graphs["unique_graphs"] > before  # it did compile
    a = weights(tmp_path / "eager" / "checkpoints" / "last.pt")
    b = weights(tmp_path / "c" / "checkpoints" / "last.pt")
    assert a.keys() == b.keys()  # no "_orig_mod." prefixes: the checkpoint loads anywhere
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7, msg=key)


def test_views_rendered_on_the_device_train_to_the_same_weights(store, tmp_path):
    # On the CPU the device path runs the same float32 arithmetic as the loader's kernel, so
    # the whole run, validation included, is bit for bit the same.
    train(config(store, "run.epochs=1"), tmp_path / "loader")
    train(config(store, "run.epochs=1", "data.render=device"), tmp_path / "device")
    assert_same_weights(
        weights(tmp_path / "loader" / "checkpoints" / "last.pt"),
        weights(tmp_path / "device" / "checkpoints" / "last.pt"),
    )
    lines = [(tmp_path / d / "metrics.jsonl").read_text() for d in ("loader", "device")]
    keys = ("train_loss", "val_loss", "val_top1_error")
    first, second = ([json.loads(x)[k] for k in keys] for x in (s.splitlines()[0] for s in lines))
    assert first == second


def test_bf16_on_a_cpu_without_bf16_instructions_is_warned_of(store, tmp_path, monkeypatch, capsys):
    import alexnet.core.runtime
    from alexnet.core.runtime import cpu_has_bf16

    zen1 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma f16c\n"
    zen4 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"
    graviton3 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"
    assert cpu_has_bf16(zen1) is False
    assert cpu_has_bf16(zen4) is True and cpu_has_bf16(graviton3) is True
    assert cpu_has_bf16("") is None  # cannot tell: no warning
    monkeypatch.setattr(alexnet.core.runtime, "cpu_has_bf16", lambda: False)
    sets = ["run.epochs=1", "data.train_images=16", "data.val_images=8"]
    train(config(store, *sets, "run.precision=bf16"), tmp_path / "bf16")
    assert "no bf16 instructions" in capsys.readouterr().err
    train(config(store, *sets), tmp_path / "fp32")
    assert "no bf16 instructions" not in capsys.readouterr().err


def test_precision_auto_is_bf16_only_where_the_hardware_has_it(
    store, tmp_path, monkeypatch, capsys
):
    import alexnet.core.runtime
    from alexnet.core.runtime import auto_precision

    cpu = torch.device("cpu")
    for has, chosen in ((True, "bf16"), (False, "fp32"), (None, "fp32")):  # None: cannot tell
        monkeypatch.setattr(alexnet.core.runtime, "cpu_has_bf16", lambda has=has: has)
        assert auto_precision(cpu)[0] == chosen
    assert auto_precision(torch.device("meta"))[0] == "fp32"
    # A run records the precision auto chose, so that resuming it elsewhere keeps it.
    sets = ["run.epochs=1", "data.train_images=16", "data.val_images=8", "run.precision=auto"]
    for has, chosen in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(alexnet.core.runtime, "cpu_has_bf16", lambda has=has: has)
        train(config(store, *sets), tmp_path / chosen)
        err = capsys.readouterr().err
        assert f"precision auto: {chosen}" in err and "no bf16 instructions: bf16 runs" not in err
        saved = yaml.safe_load((tmp_path / chosen / "config.yaml").read_text())
        assert saved["run"]["precision"] == chosen


def test_a_holdout_validates_on_training_images_never_trained_on(store, tmp_path, monkeypatch):
    import alexnet.train.loop as trainer  # where the epoch's batches are drawn

    trained = set()

    def recording(indices, *args, **kwargs):
        trained.update(indices.tolist())
        return epoch_batches(indices, *args, **kwargs)

    monkeypatch.setattr(trainer, "epoch_batches", recording)
    run = tmp_path / "run"
    train(config(store, "data.holdout=40", "data.holdout_seed=5"), run)
    record = json.loads((run / "holdout.json").read_text())
    held = record["indices"]
    assert record["images"] == len(held) == 40 and record["seed"] == 5
    assert sum(record["per_class"].values()) == 40
    assert not trained & set(held) and len(trained) == 160 - 40
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert {m["val_split"] for m in lines} == {"train-holdout"}
    assert {m["val_images"] for m in lines} == {40}
    # the last epoch's validation error is the saved network's error on those training images
    last = ckpt.load(run / "checkpoints" / "last.pt")
    model = ckpt.load_model(last).eval()
    images = StoreDataset(store, "train", "center", normalize="std")
    x, y = images.__getitems__(held)
    with torch.no_grad():
        wrong = (model(x).argmax(1) != y).sum().item()
    assert lines[-1]["val_top1_error"] == pytest.approx(wrong / 40, abs=1e-12)
    # a resumed run must hold out the same images: another seed is another run, and
    # holdout.json no longer naming them (the store changed under the run) is refused too
    with pytest.raises(ConfigError, match=r"cannot change data\.holdout_seed \(5 -> 6\)"):
        train(config(store, "data.holdout=40", "data.holdout_seed=6", "run.epochs=3"), run,
              resume=True)  # fmt: skip
    kept = json.loads((run / "holdout.json").read_text())
    (run / "holdout.json").write_text(json.dumps({**kept, "indices": kept["indices"][1:]}))
    with pytest.raises(ConfigError, match="lists other held-out images"):
        train(config(store, "data.holdout=40", "data.holdout_seed=5", "run.epochs=3"), run,
              resume=True)  # fmt: skip


def test_early_stop_ends_a_plateau_run_after_its_last_drop(store, tmp_path):
    # a rate too small to change the error: every epoch after the first is a bad one;
    # patience 1: epoch 2 drops the rate, epoch 3 exhausts the rule, and the run stops
    run = tmp_path / "run"
    overrides = ["optim.lr=1e-12", "schedule.patience=1", "schedule.max_drops=1",
                 "schedule.early_stop=true", "run.epochs=6", "data.holdout=40"]  # fmt: skip
    metrics = train(config(store, *overrides), run)
    assert metrics["epoch"] == 3
    assert "schedule.early_stop" in (run / "train.log").read_text()
    # resuming the finished run does not train on
    assert train(config(store, *overrides), run, resume=True) is None


def test_a_float_in_exponent_notation_is_a_float_in_recipes_and_on_the_command_line(tmp_path):
    # PyYAML (YAML 1.1) reads 1e-3 as the string '1e-3'
    recipe = tmp_path / "r.yaml"
    recipe.write_text("optim:\n  lr: 1e-3\n  weight_decay: 5E-4\n")
    loaded = load_config(recipe, ["schedule.threshold=2.5e-3"])
    assert (loaded.optim.lr, loaded.optim.weight_decay) == (0.001, 0.0005)
    assert loaded.schedule.threshold == 0.0025
    # only float fields read it as a number
    assert load_config(None, ["data.store=1e3"]).data.store == "1e3"


def test_text_on_the_command_line_is_read_by_the_type_of_the_key_it_sets(store, tmp_path):
    # text fields keep the text as given: YAML would end a path at " #", make "yes" True,
    # "null" None and 2012-01-01 a date
    sets = ["data.store=runs/x #1/data", "data.train_split=yes", "data.val_split=2012-01-01",
            "run.init_from=null", "model.activation=tanh",
            "data.class_ids=split/A #2.txt"]  # fmt: skip
    loaded = load_config(None, sets)
    assert loaded.data.store == "runs/x #1/data" and loaded.data.train_split == "yes"
    assert loaded.data.val_split == "2012-01-01" and loaded.run.init_from == "null"
    assert loaded.model["activation"] == "tanh" and loaded.data.class_ids == "split/A #2.txt"
    # the others are read: numbers, booleans, lists, null, a tuple as Python writes it
    loaded = load_config(None, ["run.epochs=3", "data.flip=false", "optim.freeze=[conv1]",
                                "data.crop_size=null", "model.widths=(8, 16, 16, 16, 16)",
                                "data.class_ids=[a, b]", "run.init_from="])  # fmt: skip
    assert (loaded.run.epochs, loaded.data.flip, loaded.optim.freeze) == (3, False, ["conv1"])
    assert loaded.data.crop_size is None and loaded.model["widths"] == [8, 16, 16, 16, 16]
    assert loaded.data.class_ids == ["a", "b"] and loaded.run.init_from is None
    with pytest.raises(ConfigError, match=r"data\.flip must be bool, got 'maybe'"):
        load_config(None, ["data.flip=maybe"])
    # a value code holds is taken as it is; --init-from passes the path so
    assert load_config(None, [("run.init_from", "a #1.pt")]).run.init_from == "a #1.pt"
    run = tmp_path / "runs" / "x #1"
    train(config(store, "run.epochs=1", "data.train_images=8"), run)
    tuned = cli("train", "--config", DEBUG, "--set", f"data.store={store}", "--set",
                "run.epochs=1", "--set", "data.train_images=8", "--init-from",
                run / "checkpoints" / "last.pt", "--out", tmp_path / "tuned")  # fmt: skip
    assert tuned.returncode == 0, tuned.stderr
    _, record = alexnet.load(tmp_path / "tuned")
    assert record.provenance.init_from.path == str(run / "checkpoints" / "last.pt")
    missing = cli("train", "--config", DEBUG, "--set", f"data.store={store}", "--init-from",
                  "null", "--out", tmp_path / "none")  # fmt: skip
    assert missing.returncode == 2 and "no checkpoint at null" in missing.stderr
    # and a network's options on the command line likewise
    assert parse_spec("alexnet2012:activation=tanh:lrn=False:widths=(48,128,192,192,256)") == (
        "alexnet2012",
        {"activation": "tanh", "lrn": False, "widths": [48, 128, 192, 192, 256]},
    )


def test_a_checkpoint_from_before_a_config_field_existed_still_resumes(store, tmp_path):
    # an older package wrote the network's config without today's fields; those take their
    # defaults, so the run continues, while a setting that truly differs is still refused
    run = tmp_path / "run"
    train(config(store, "run.epochs=1"), run)
    for name in ("last.pt", "best.pt"):
        path = run / "checkpoints" / name
        saved = ckpt.load(path)
        network = saved["record"].network
        older = {k: v for k, v in network.config.items()
                 if k not in ("conv6", "lrn_before_relu", "conv2_map_norm")}  # fmt: skip
        saved["record"] = saved["record"].replace(network=Network(network.name, older))
        saved.pop("path")
        ckpt.save(path, {k: v for k, v in saved.items() if k not in ("format", "version")})
    metrics = train(config(store, "run.epochs=2"), run, resume=True)
    assert metrics["epoch"] == 2
    with pytest.raises(ckpt.CheckpointError, match="differing settings"):
        train(config(store, "run.epochs=3", "model.dropout=0.3"), run, resume=True)


def test_a_training_bar_in_a_log_file_is_not_drawn_each_step(store, tmp_path, monkeypatch, capsys):
    import tqdm.std

    # a clock that stands still: a bar drawn at its interval is drawn once at its start
    monkeypatch.setattr(tqdm.std, "time", lambda: 1000.0)
    monkeypatch.delenv("ALEXNET_PROGRESS", raising=False)
    sets = ["run.epochs=1", "data.train_images=64", "data.val_images=8"]  # 8 steps of 8
    train(config(store, *sets), tmp_path / "run")
    drawn = capsys.readouterr().err.count("epoch 1/1:")  # capsys's stderr is not a terminal
    assert 1 <= drawn <= 3  # the first draw (and the last, on close), not one per step
