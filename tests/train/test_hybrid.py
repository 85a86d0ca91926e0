"""Krizhevsky's hybrid parallelism (alexnet.train.hybrid): the convolutional layers data
parallel, fc6-fc8 split over the ranks with DTensor; a few steps of the paper's update on 2
and 4 gloo processes end where one process training on the whole batch does (float64);
what a step sends, hybrid against data parallelism; networks it cannot split are refused."""

from __future__ import annotations

import pytest
import torch

from alexnet.core.errors import UserError
from alexnet.models.registry import create_model
from alexnet.train.hybrid import bytes_per_step, parallelize

OPTIONS = {"widths": [8, 16, 16, 16, 16], "fc_width": 32, "dropout": 0.0, "init": "kaiming"}
CLASSES, BATCH, STEPS = 12, 16, 3


def _network():
    torch.manual_seed(0)
    return create_model("alexnet2012", num_classes=CLASSES, in_chans=1, **OPTIONS).double()


def _batches():
    generator = torch.Generator().manual_seed(1)

    def batch():
        images = torch.randn(BATCH, 1, 224, 224, generator=generator, dtype=torch.float64)
        return images, torch.randint(0, CLASSES, (BATCH,), generator=generator)

    return [batch() for _ in range(STEPS)]


def _one_process() -> dict:
    import torch.nn.functional as F

    from alexnet.train.optim import PaperSGD

    model = _network().train()
    optimizer = PaperSGD(model.parameters(), lr=0.01)
    for images, labels in _batches():
        optimizer.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _bytes_written() -> int:
    """What this process has written so far, sockets included (Linux's /proc/self/io)."""
    with open("/proc/self/io") as io:
        return next(int(line.split()[1]) for line in io if line.startswith("wchar"))


def _hybrid(rank: int, world: int, init: str, out: str) -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor

    from alexnet.train.hybrid import loss_and_mistakes, reduce_conv_gradients
    from alexnet.train.optim import PaperSGD

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        everything = torch.zeros(
            sum(p.numel() for p in _network().parameters()), dtype=torch.float64
        )
        dist.barrier()
        start = _bytes_written()
        dist.all_reduce(everything)  # what data parallelism sends: every gradient
        data_parallel = _bytes_written() - start
        model = parallelize(_network().train(), init_device_mesh("cpu", (world,)))
        optimizer = PaperSGD(model.parameters(), lr=0.01)
        local = BATCH // world
        for images, labels in _batches():
            optimizer.zero_grad()
            mine = slice(rank * local, (rank + 1) * local)
            dist.barrier()
            start = _bytes_written()
            loss, _ = loss_and_mistakes(model(images[mine]), labels[mine])
            loss.backward()
            reduce_conv_gradients(model)
            hybrid = _bytes_written() - start  # the last step's: the first sets things up
            optimizer.step()
        state = {k: v.full_tensor() if isinstance(v, DTensor) else v
                 for k, v in model.state_dict().items()}  # fmt: skip
        if rank == 0:
            state = {k: v.detach().clone() for k, v in state.items()}
            torch.save({"state": state, "sent": {"hybrid": hybrid,
                        "data_parallel": data_parallel}}, out)  # fmt: skip
        dist.barrier()  # every rank done before any tears gloo down
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("world", [2, 4])
def test_hybrid_steps_equal_one_process_on_the_whole_batch_in_float64(world, tmp_path):
    out = tmp_path / "state.pt"
    torch.multiprocessing.spawn(_hybrid, args=(world, f"file://{tmp_path / 'init'}", str(out)),
                                nprocs=world)  # fmt: skip
    saved, ours = torch.load(out), _one_process()
    theirs = saved["state"]
    assert theirs.keys() == ours.keys()
    start = _network().state_dict()
    for key in ours:
        assert not torch.equal(ours[key], start[key]), key  # every layer learned
        torch.testing.assert_close(theirs[key], ours[key], rtol=1e-12, atol=1e-14, msg=key)
    # the bytes a rank sent in a step, counted on the wire, against bytes_per_step's count
    # (gloo's messages carry a few percent of headers)
    model = _network()
    named = list(model.named_parameters())
    params = {"conv": sum(p.numel() for n, p in named if n.startswith("conv")),
              "fc": sum(p.numel() for n, p in named if n.startswith("fc"))}  # fmt: skip
    widths = {"features": 16 * 36, "hidden": 32, "classes": CLASSES}
    counted = bytes_per_step(world, BATCH, params, widths, element=8, gloo=True)
    sent = saved["sent"]
    assert counted["data_parallel_total"] <= sent["data_parallel"] <= 1.05 * counted[
        "data_parallel_total"]  # fmt: skip
    assert counted["hybrid_total"] <= sent["hybrid"] <= 1.08 * counted["hybrid_total"]


def test_networks_without_splittable_fc_layers_are_refused():
    from torch.distributed.device_mesh import DeviceMesh

    class FakeMesh:
        def size(self):
            return 4

    with pytest.raises(UserError, match="has no fully connected fc6, fc7, fc8"):
        parallelize(torch.nn.Sequential(torch.nn.Linear(3, 3)), FakeMesh())
    with pytest.raises(UserError, match="fc8's 10 units do not split among 4 processes"):
        parallelize(create_model("alexnet2012", num_classes=10, in_chans=1, **OPTIONS),
                    FakeMesh())  # fmt: skip
    assert DeviceMesh  # the real mesh is what the runs above use


def test_a_hybrid_step_sends_a_fraction_of_data_parallelisms_bytes():
    """The paper's network at a global batch of 128 x N: the fully connected layers'
    gradients (96% of the parameters) stay home; their activations travel instead."""
    model = create_model("alexnet2012")
    named = list(model.named_parameters())
    params = {"conv": sum(p.numel() for n, p in named if n.startswith("conv")),
              "fc": sum(p.numel() for n, p in named if n.startswith("fc"))}  # fmt: skip
    widths = {"features": 9216, "hidden": 4096, "classes": 1000}
    for ranks in (2, 4, 8):
        sent = bytes_per_step(ranks, 128 * ranks, params, widths)
        # by hand: data parallelism all-reduces 60,965,224 fp32 values, 2 (N - 1) / N of them
        assert sent["data_parallel_total"] == pytest.approx(2 * (ranks - 1) / ranks
                                                            * 60_965_224 * 4)  # fmt: skip
        assert sent["hybrid_total"] < sent["data_parallel_total"]


FP64_RUN = ["model.dropout=0.0", "run.precision=fp64", "optim.batch_size=16"]


def _alexnet_train(launcher: list[str], store, out, *sets, resume: bool = False):
    import os
    import subprocess
    import sys

    from fixtures import DEBUG, ROOT

    args = ["--resume", str(out)] if resume else ["--config", str(DEBUG), "--out", str(out)]
    for s in ([] if resume else [f"data.store={store}"]) + list(sets):
        args += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ALEXNET_PROGRESS": "0"}
    done = subprocess.run([*launcher, "-m", "alexnet", "train", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, executable=sys.executable)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_alexnet_train_in_hybrid_parallel_equals_one_process_and_resumes(store, tmp_path):
    """`run.parallel: hybrid` under torchrun (2 processes): after an epoch, and after a
    second one resumed from its checkpoint, the weights, velocities and validation errors of
    one process training on the whole batch (float64); the checkpoint holds the network
    whole, as one process's does."""
    import json
    import sys

    from alexnet.models import checkpoint as ckpt

    two = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    first = _alexnet_train(two, store, tmp_path / "hybrid", *FP64_RUN, "run.epochs=1",
                           "run.parallel=hybrid")  # fmt: skip
    again = _alexnet_train(two, store, tmp_path / "hybrid", "run.epochs=2", resume=True)
    for done in (first, again):
        assert "fc6-fc8 split over them" in done.stderr, done.stderr[-2000:]
    _alexnet_train([sys.executable], store, tmp_path / "one", *FP64_RUN, "run.epochs=2")
    a = ckpt.load(tmp_path / "one" / "checkpoints" / "last.pt")
    b = ckpt.load(tmp_path / "hybrid" / "checkpoints" / "last.pt")
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert b["state_dict"][key].shape == value.shape, key  # whole, not a slice
        torch.testing.assert_close(b["state_dict"][key], value, rtol=1e-11, atol=1e-13, msg=key)
    for key, state in a["optimizer"]["state"].items():
        torch.testing.assert_close(b["optimizer"]["state"][key]["velocity"], state["velocity"],
                                   rtol=1e-10, atol=1e-13)  # fmt: skip
    lines = [[json.loads(x) for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
             for run in ("one", "hybrid")]  # fmt: skip
    assert [m["epoch"] for m in lines[1]] == [1, 2]
    for ours, theirs in zip(*lines, strict=True):
        assert ours["val_top1_error"] == theirs["val_top1_error"]
        assert abs(ours["train_loss"] - theirs["train_loss"]) < 1e-9


def test_hybrid_in_one_process_and_an_unknown_parallel_mode_are_refused_in_one_line(store):
    from fixtures import DEBUG, cli

    for value, words in (("hybrid", "launch with torchrun"), ("pipeline", "ddp or hybrid")):
        done = cli("train", "--config", DEBUG, "--set", f"data.store={store}", "--set",
                   f"run.parallel={value}")  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert words in done.stderr and "Traceback" not in done.stderr


def test_lars_in_hybrid_parallel_takes_each_split_layers_whole_norm(store, tmp_path):
    """LARS's trust ratio needs ||w|| and ||g|| of the whole tensor; a rank's slice of fc6
    has only its part. An epoch of LARS on 2 hybrid processes equals one process (float64)."""
    import sys

    from alexnet.models import checkpoint as ckpt

    sets = [*FP64_RUN, "run.epochs=1", "optim.name=lars"]
    two = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    _alexnet_train(two, store, tmp_path / "hybrid", *sets, "run.parallel=hybrid")
    _alexnet_train([sys.executable], store, tmp_path / "one", *sets)
    a = ckpt.load(tmp_path / "one" / "checkpoints" / "last.pt")["state_dict"]
    b = ckpt.load(tmp_path / "hybrid" / "checkpoints" / "last.pt")["state_dict"]
    for key, value in a.items():
        torch.testing.assert_close(b[key], value, rtol=1e-11, atol=1e-13, msg=key)
