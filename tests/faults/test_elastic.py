"""Elastic restarts: two gloo processes under `torchrun --max-restarts=3`, rank 1 SIGKILLed
twice mid-run; torchrun restarts both with the same command (`--auto-resume`), and the run
ends with the weights, velocities and metrics of an uninterrupted two-process run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from fixtures import DEBUG, ROOT, assert_runs_end_alike, step_of


def ranks(tag: str) -> dict[int, int]:
    """{rank: pid} of the worker processes whose environment carries `tag`."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = dict(
                item.split("=", 1)
                for item in (proc / "environ").read_bytes().decode(errors="replace").split("\0")
                if "=" in item
            )
        except OSError:
            continue
        if env.get("ALEXNET_TEST_TAG") == tag and "RANK" in env:
            found[int(env["RANK"])] = int(proc.name)
    return found


def torchrun(run: Path, store: Path, tag: str, restarts: int) -> subprocess.Popen:
    sets = [f"data.store={store}", "run.epochs=3", "run.checkpoint_steps=1"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", f"--max-restarts={restarts}", "--monitor-interval=0.2",
               "-m", "alexnet", "train", "--config", str(DEBUG), "--out", str(run),
               "--auto-resume", *[x for s in sets for x in ("--set", s)]]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ALEXNET_PROGRESS": "0", "ALEXNET_TEST_TAG": tag}
    return subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


def kill_rank_at(run: Path, tag: str, steps: list[int], killed: list) -> None:
    """SIGKILL rank 1 once the run's checkpoint reaches each step (each time in a new set
    of workers: the next kill waits for a rank 1 with another pid)."""
    last_pid = None
    for step in steps:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            pid = ranks(tag).get(1)
            if pid and pid != last_pid and step_of(run) >= step:
                os.kill(pid, signal.SIGKILL)
                killed.append({"pid": pid, "at_step": step_of(run)})
                last_pid = pid
                break
            time.sleep(0.01)


LONG = os.environ.get("ALEXNET_LONG_FAULTS") == "1"
AT = [6, 25, 45] if LONG else [6, 30]  # steps (of 60) after which rank 1 is killed


def test_a_rank_killed_twice_under_torchrun_ends_as_an_uninterrupted_run(store, tmp_path, record):
    whole = torchrun(tmp_path / "whole", store, uuid.uuid4().hex, restarts=0)
    out, _ = whole.communicate(timeout=240)
    assert whole.returncode == 0, out[-3000:]

    tag = uuid.uuid4().hex
    elastic = torchrun(tmp_path / "elastic", store, tag, restarts=3)
    killed: list = []
    killer = threading.Thread(target=kill_rank_at,
                              args=(tmp_path / "elastic", tag, AT, killed))  # fmt: skip
    killer.start()
    out, _ = elastic.communicate(timeout=240)
    killer.join()
    assert elastic.returncode == 0, out[-3000:]
    assert len(killed) == len(AT), f"the kills did not happen: {killed}\n{out[-2000:]}"
    assert killed[0]["at_step"] < 60 and killed[1]["at_step"] < 60, killed  # mid-run, 60 steps
    assert out.count("resuming") >= len(AT), out[-3000:]

    assert_runs_end_alike(tmp_path / "whole", tmp_path / "elastic")
    record("elastic-restarts", {
        "command": "torchrun --standalone --nproc_per_node=2 --max-restarts=3 -m alexnet train "
                   "--config configs/debug.yaml --out RUN --auto-resume (gloo, 60 steps)",
        "kills": killed, "restarts_logged": out.count("resuming"),
        "weights_velocities_progress_metrics_equal": True,
    })  # fmt: skip


def test_the_same_command_starts_a_run_then_continues_it(store, tmp_path):
    from fixtures import cli

    run = tmp_path / "run"
    args = ["train", "--config", DEBUG, "--set", f"data.store={store}", "--out", run,
            "--auto-resume"]  # fmt: skip
    first = cli(*args, "--set", "run.epochs=1")
    assert first.returncode == 0 and "resuming" not in first.stderr, first.stderr
    again = cli(*args, "--set", "run.epochs=1")  # the run's own recipe goes on: 1 epoch, done
    assert again.returncode == 0 and "resuming" in again.stderr, again.stderr
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    refused = cli("train", "--config", DEBUG, "--auto-resume")
    assert refused.returncode == 2 and "--out" in refused.stderr
