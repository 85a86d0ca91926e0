"""Large batches: gradient accumulation equal to the whole batch, the linear scaling rule and
the gradual warmup (Goyal et al. 2017), LARS (You, Gitman and Ginsburg 2017, Algorithm 1),
each against the rule written out here; and the settings that do not combine."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from alexnet.core.checks import ConfigError
from alexnet.train.config import OptimConfig, load_config
from alexnet.train.optim import LARS, make_optimizer, scaled_lr
from alexnet.train.schedule import Warmup

from fixtures import DEBUG, ROOT

ENV = {**os.environ, "ALEXNET_PROGRESS": "0", "PYTHONUNBUFFERED": "1"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def weights(path) -> dict:
    from alexnet.models import checkpoint as ckpt

    return ckpt.load(path)["state_dict"]


def _lars_by_hand(ws, gs_per_step, biases, lr, m, beta, eta):
    """Algorithm 1 of You et al. (2017) in numpy float64, tensor by tensor; biases neither
    scaled by the trust ratio nor decayed."""
    ws = [w.copy() for w in ws]
    vs = [np.zeros_like(w) for w in ws]
    for gs in gs_per_step:
        for i, (w, g) in enumerate(zip(ws, gs, strict=True)):
            if biases[i]:
                local, decay = 1.0, 0.0
            else:
                w_norm, g_norm = np.sqrt((w**2).sum()), np.sqrt((g**2).sum())
                local = eta * w_norm / (g_norm + beta * w_norm)
                decay = beta
            vs[i] = m * vs[i] + lr * local * (g + decay * w)
            ws[i] = w - vs[i]
    return ws


def test_lars_is_algorithm_1_written_out():
    generator = np.random.default_rng(0)
    shapes = [(6, 3, 3, 3), (6,), (10, 24), (10,)]
    biases = [False, True, False, True]
    ws = [generator.normal(0, 0.1, s) for s in shapes]
    gs_per_step = [[generator.normal(0, 1, s) for s in shapes] for _ in range(5)]
    params = [torch.nn.Parameter(torch.tensor(w)) for w in ws]
    pairs = list(zip(params, biases, strict=True))
    groups = [{"params": [p for p, b in pairs if not b]},
              {"params": [p for p, b in pairs if b], "bias": True}]  # fmt: skip
    optimizer = LARS(groups, lr=0.5, momentum=0.9, weight_decay=5e-4, trust=0.001)
    for gs in gs_per_step:
        for p, g in zip(params, gs, strict=True):
            p.grad = torch.tensor(g)
        optimizer.step()
    expected = _lars_by_hand(ws, gs_per_step, biases, 0.5, 0.9, 5e-4, 0.001)
    for p, e in zip(params, expected, strict=True):
        np.testing.assert_allclose(p.detach().numpy(), e, rtol=1e-12, atol=1e-15)
    # the trust ratio does what it is for: a layer's step is a share of its weights' norm
    w = torch.nn.Parameter(torch.ones(100, dtype=torch.float64))
    lars = LARS([w], lr=1.0, momentum=0.0, weight_decay=0.0, trust=0.001)
    w.grad = torch.full((100,), 1e6, dtype=torch.float64)  # a huge gradient
    lars.step()
    assert float((1 - w.detach()).norm() / torch.ones(100).norm()) == pytest.approx(0.001)


def test_the_linear_rule_scales_the_rate_with_the_batch():
    assert scaled_lr(OptimConfig(lr=0.01, batch_size=8192, lr_scaling="linear")) == 0.64
    assert scaled_lr(OptimConfig(lr=0.01, batch_size=8192)) == 0.01  # none: as given
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    optimizer = make_optimizer(model, OptimConfig(lr=0.01, batch_size=1024, lr_scaling="linear",
                                                  bias_lr_mult=2.0))  # fmt: skip
    assert [g["lr"] for g in optimizer.param_groups] == [0.08, 0.16]


def test_warmup_rises_each_step_from_the_base_to_the_scaled_rate():
    warmup = Warmup(0.01, 0.64, epochs=2)
    steps = 4
    for epoch in range(3):
        for step in range(steps):
            done = (epoch * steps + step) / (2 * steps)
            expected = 0.01 + (0.64 - 0.01) * done if done < 1 else None
            got = warmup.rate(epoch, step, steps)
            assert got == (pytest.approx(expected, rel=1e-15) if expected else None)
    assert Warmup(0.01, 0.64, epochs=0.5).rate(0, 2, 4) is None  # half an epoch: 2 steps


def config(store, *sets):
    return load_config(DEBUG, [f"data.store={store}", *sets])


def test_training_steps_at_the_warmup_rates_then_the_schedules(store, tmp_path, monkeypatch):
    from alexnet.train import loop
    from alexnet.train.trainer import train

    rates = []
    original = loop.Step.update

    def update(self):
        rates.append(self.optimizer.param_groups[0]["lr"])
        original(self)

    monkeypatch.setattr(loop.Step, "update", update)
    train(config(store, "optim.batch_size=16", "optim.lr_scaling=linear",
                 "schedule.warmup_epochs=1.5", "schedule.kind=constant", "run.epochs=2"),
          tmp_path / "run")  # fmt: skip
    steps = 160 // 16
    base, scaled = 0.01, 0.01 * 16 / 128
    expected = [base + (scaled - base) * s / (1.5 * steps) if s < 1.5 * steps else scaled
                for s in range(2 * steps)]  # fmt: skip
    assert rates == pytest.approx(expected, rel=1e-12)


FP64 = ["model.dropout=0.0", "run.precision=fp64", "optim.batch_size=16"]


def test_micro_batches_accumulate_to_the_whole_batch_in_float64(store, tmp_path):
    from alexnet.train.trainer import train

    for parts in (1, 4):
        train(config(store, *FP64, f"optim.accumulate={parts}"), tmp_path / f"k{parts}")
    a = weights(tmp_path / "k1" / "checkpoints" / "last.pt")
    b = weights(tmp_path / "k4" / "checkpoints" / "last.pt")
    for key in a:
        assert a[key].dtype == torch.float64
        torch.testing.assert_close(b[key], a[key], rtol=1e-12, atol=1e-12, msg=key)


ONE_THREAD = {**ENV, "OMP_NUM_THREADS": "1"}


def _train(launcher, store, out, *sets):
    args = ["--config", str(DEBUG), "--out", str(out), "--set", f"data.store={store}"]
    for s in sets:
        args += ["--set", s]
    done = subprocess.run([*launcher, "-m", "alexnet", "train", *args], env=ONE_THREAD,
                          cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


def test_two_processes_accumulating_train_as_one_process_of_the_whole_batch(store, tmp_path):
    """DDP with no_sync between micro-batches: 2 processes x 2 micro-batches of 4 images
    end where 1 process of 16 in one batch does (float64, one epoch)."""
    _train([sys.executable], store, tmp_path / "one", *FP64)
    _train(TORCHRUN, store, tmp_path / "two", *FP64, "optim.accumulate=2")
    a = weights(tmp_path / "one" / "checkpoints" / "last.pt")
    b = weights(tmp_path / "two" / "checkpoints" / "last.pt")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-12, atol=1e-12, msg=key)


def test_settings_that_do_not_combine_are_refused_in_one_line(store):
    with pytest.raises(ConfigError, match=r"optim.accumulate 3 must divide optim.batch_size 16"):
        config(store, "optim.batch_size=16", "optim.accumulate=3")
    with pytest.raises(ConfigError, match=r"needs optim\.lr_scaling: linear"):
        config(store, "schedule.warmup_epochs=5")
    with pytest.raises(ConfigError, match=r"optim\.lr_scaling must be one of"):
        config(store, "optim.lr_scaling=sqrt")
    from alexnet.train.distributed import Processes
    from alexnet.train.trainer import check_settings

    four = Processes(rank=0, world=4, local_rank=0)
    with pytest.raises(ConfigError, match="fewer images a step than the 4 processes"):
        check_settings(config(store, "optim.batch_size=2"), torch.device("cpu"), four)
    with pytest.raises(ConfigError, match=r"is 4 images each; optim\.accumulate 8 must divide"):
        check_settings(config(store, "optim.batch_size=16", "optim.accumulate=8"),
                       torch.device("cpu"), four)  # fmt: skip


def _count_reductions(rank: int, world: int, init: str, out: str) -> None:
    import torch.distributed as dist

    from alexnet.train.loop import Step

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
        ddp = torch.nn.parallel.DistributedDataParallel(net)
        calls = []

        def hook(state, bucket):  # DDP's default reduction, counted; synchronous, so that
            calls.append(bucket.index())  # no gloo work thread outlives the step
            buffer = bucket.buffer()
            dist.all_reduce(buffer)
            done = torch.futures.Future()
            done.set_result(buffer.div_(world))
            return done

        ddp.register_comm_hook(None, hook)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        scaler = torch.amp.GradScaler("cuda", enabled=False)
        step = Step(ddp, optimizer, scaler, torch.device("cpu"), "fp32", False, None,
                    accumulate=4, synced=ddp)  # fmt: skip
        step.forward_backward(torch.randn(8, 3, 2, 2), torch.randint(0, 3, (8,)))
        if rank == 0:
            torch.save(len(calls), out)
        dist.barrier()  # both done before either tears gloo down
    finally:
        dist.destroy_process_group()


def test_accumulating_processes_reduce_their_gradients_once_a_step(tmp_path):
    """DDP's no_sync between micro-batches: 4 micro-batches, one all-reduce of the bucket."""
    out = tmp_path / "calls.pt"
    torch.multiprocessing.spawn(_count_reductions, args=(2, f"file://{tmp_path / 'init'}",
                                str(out)), nprocs=2)  # fmt: skip
    assert torch.load(out) == 1


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("precision, tolerance", [("fp64", 1e-12), ("fp32", 1e-5)])
def test_two_nodes_train_as_one_node_and_as_one_process_accumulating(
    store, tmp_path, precision, tolerance
):
    """Two torchrun agents over loopback, c10d rendezvous, 2 processes each (4 ranks of 4
    images), against 1 node of 4 processes and 1 process in 4 micro-batches of 4: the same
    weights after an epoch, in float64 to 1e-12 and in float32 to 1e-5 relative."""
    sets = ["model.dropout=0.0", f"run.precision={precision}", "optim.batch_size=16",
            "run.epochs=1"]  # fmt: skip
    port = _free_port()
    rendezvous = ["--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=test"]
    nodes = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=2",
             *rendezvous]  # fmt: skip
    args = ["-m", "alexnet", "train", "--config", str(DEBUG), "--out", str(tmp_path / "nodes"),
            *(x for s in [f"data.store={store}", *sets] for x in ("--set", s))]  # fmt: skip
    agents = [subprocess.Popen([*nodes, *args], env=ONE_THREAD, cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for _ in range(2)]  # fmt: skip
    for agent in agents:
        output, _ = agent.communicate(timeout=600)
        assert agent.returncode == 0, output[-3000:]
    four = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4"]
    _train(four, store, tmp_path / "four", *sets)
    _train([sys.executable], store, tmp_path / "one", *sets, "optim.accumulate=4")
    a = weights(tmp_path / "one" / "checkpoints" / "last.pt")
    for run in ("nodes", "four"):
        b = weights(tmp_path / run / "checkpoints" / "last.pt")
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=tolerance, atol=tolerance,
                                       msg=f"{run} {key}")  # fmt: skip
