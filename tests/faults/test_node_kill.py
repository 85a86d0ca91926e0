"""A machine lost in a multi-machine job: two torchrun agents meet at a c10d rendezvous over
loopback ("machines" of one process each); the second machine is killed whole, its agent
and its worker with SIGKILL, mid-run, and started again with the same command, as Slurm's
requeue or a Kubernetes restart would; the first agent restarts its own worker, the two
meet again, and the job goes on from the last checkpoint to the weights, velocities and
losses of a job never killed, bit for bit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from fixtures import DEBUG, ROOT, assert_runs_end_alike, step_of

# TORCH_DISABLE_SHARE_RDZV_TCP_STORE: the workers' store apart from the rendezvous's, so
# that a new round does not read the keys of workers that are gone
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "ALEXNET_PROGRESS": "0",
       "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}  # fmt: skip
SETS = ["run.epochs=3", "run.checkpoint_steps=1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine(run: Path, store: Path, port: int, restarts: int, first: bool,
            tag: str = "") -> subprocess.Popen:  # fmt: skip
    """One machine's torchrun agent; the first hosts the rendezvous's store, as the job's
    first node does. `tag` marks the machine's processes (the agent's environment, which its
    workers inherit: they run in sessions of their own)."""
    # a machine that stops sending keep-alives for 3 s is gone (5 x 3 s by default)
    conf = f"--rdzv-conf=is_host={int(first)},keep_alive_interval=1,keep_alive_max_attempt=3"
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
               "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=job", conf,
               f"--max-restarts={restarts}", "--monitor-interval=0.2",
               "-m", "alexnet", "train", "--config", str(DEBUG), "--out", str(run), "--auto-resume",
               *(x for s in [f"data.store={store}", *SETS] for x in ("--set", s))]  # fmt: skip
    env = {**ENV, "ALEXNET_TEST_MACHINE": tag}
    return subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


def kill_machine(tag: str) -> list[int]:
    """SIGKILL every process of the machine `tag`: its agent and its workers."""
    killed = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"ALEXNET_TEST_MACHINE={tag}".encode() in environ:
            try:
                os.kill(int(proc.name), signal.SIGKILL)
                killed.append(int(proc.name))
            except ProcessLookupError:
                pass
    return killed


def test_a_machine_killed_and_restarted_rejoins_and_the_job_ends_as_one_never_killed(
    store, tmp_path
):
    port = free_port()
    whole = [machine(tmp_path / "whole", store, port, 0, first) for first in (True, False)]
    for agent in whole:
        out, _ = agent.communicate(timeout=300)
        assert agent.returncode == 0, out[-3000:]

    run, port, tag = tmp_path / "killed", free_port(), uuid.uuid4().hex
    first = machine(run, store, port, 3, first=True)
    second = machine(run, store, port, 3, first=False, tag=tag)
    deadline = time.monotonic() + 240
    while step_of(run) < 20 and time.monotonic() < deadline:  # of 60 steps
        time.sleep(0.05)
    at = step_of(run)
    killed = kill_machine(tag)  # the machine: its agent and its worker
    second.communicate()
    assert 0 < at < 60 and len(killed) >= 2, (at, killed)
    time.sleep(5)  # the replacement comes up after the rendezvous has seen the machine gone
    again = machine(run, store, port, 3, first=False)  # the same command, started again
    outputs = []
    for agent in (first, again):
        try:
            out, _ = agent.communicate(timeout=150)
        except subprocess.TimeoutExpired:
            agent.kill()
            out, _ = agent.communicate()
        outputs.append(out)
    for out, agent in zip(outputs, (first, again), strict=True):
        assert agent.returncode == 0, out[-3000:]
    assert any("resuming" in out for out in outputs), outputs[0][-2000:]

    assert_runs_end_alike(tmp_path / "whole", run)
