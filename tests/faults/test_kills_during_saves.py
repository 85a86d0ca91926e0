"""SIGKILLs at seeded random moments of a run that saves a checkpoint after every step, so
that some land inside a save: after each, every checkpoint in the folder loads, the same
command continues the run, and it ends with the weights, velocities, generator states and
metrics of a run never killed."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import torch

from alexnet.models import checkpoint as ckpt

from fixtures import DEBUG, ROOT, cli

LONG = os.environ.get("ALEXNET_LONG_FAULTS") == "1"
ENV = {**os.environ, "ALEXNET_PROGRESS": "0", "PYTHONUNBUFFERED": "1"}


def kill_at_random_moments(args, run, kills: int, seed: int) -> list[dict]:
    """Start the command, wait until it has saved a checkpoint of this start, SIGKILL it
    after a random delay (every other time, a random delay into a save it has begun);
    `kills` times. What each kill left is checked and returned."""
    rng = random.Random(seed)
    folder = run / "checkpoints"
    record = []
    while len(record) < kills:
        before = (folder / "last.pt").stat().st_mtime_ns if (folder / "last.pt").exists() else 0
        command = [sys.executable, "-m", "alexnet", *map(str, args)]
        process = subprocess.Popen(command, env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)  # fmt: skip
        deadline = time.monotonic() + 120
        while not ((folder / "last.pt").exists()
                   and (folder / "last.pt").stat().st_mtime_ns != before):  # fmt: skip
            assert process.poll() is None, process.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint was saved"
            time.sleep(0.002)
        if len(record) % 2:  # every other kill: at a random moment of a save in progress
            while not list(folder.glob(".*.tmp")) and process.poll() is None:
                time.sleep(0.0005)
            time.sleep(rng.uniform(0, 0.01))
        else:  # the others: at any moment
            time.sleep(rng.uniform(0, 0.4))
        if process.poll() is not None:  # it finished first
            break
        process.send_signal(signal.SIGKILL)
        process.wait()
        inside = sorted(p.name for p in folder.glob(".*.tmp"))  # a save it cut short
        loads = {p.name: ckpt.load(p)["progress"]["global_step"] for p in folder.glob("*.pt")}
        record.append({"inside_a_save": inside, "checkpoints": loads})
    return record


def test_kills_inside_and_between_saves_never_lose_the_run(store, tmp_path, record):
    record_figures = record
    # fc layers of 2048 units: a 43 MB checkpoint, whose save takes much of each step
    epochs = 12 if LONG else 4  # 20 steps each
    sets = [f"data.store={store}", f"run.epochs={epochs}", "run.checkpoint_steps=1",
            "model.fc_width=2048"]  # fmt: skip
    args = ["train", "--config", DEBUG, *[x for s in sets for x in ("--set", s)]]
    whole = subprocess.run([sys.executable, "-m", "alexnet", *map(str, args), "--out",
                            str(tmp_path / "whole")], env=ENV, cwd=ROOT, capture_output=True,
                           text=True)  # fmt: skip
    assert whole.returncode == 0, whole.stderr

    run = tmp_path / "killed"
    command = [*args, "--out", run, "--auto-resume"]
    kills = kill_at_random_moments(command, run, kills=40 if LONG else 8, seed=0)
    assert len(kills) >= 8, kills
    steps = [max(r["checkpoints"].values()) for r in kills]
    assert steps == sorted(steps) and steps[-1] < 20 * epochs, steps  # mid-run, no ground lost
    finished = cli(*command)
    assert finished.returncode == 0, finished.stderr
    assert not list((run / "checkpoints").glob(".*.tmp"))

    a = ckpt.load(tmp_path / "whole" / "checkpoints" / "last.pt")
    b = ckpt.load(run / "checkpoints" / "last.pt")
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    for key, state in a["optimizer"]["state"].items():
        assert torch.equal(state["velocity"], b["optimizer"]["state"][key]["velocity"])
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    assert a["rng"]["python"] == b["rng"]["python"]
    assert torch.equal(a["rng"]["numpy"]["key"], b["rng"]["numpy"]["key"])
    losses = [
        [json.loads(x)["train_loss"] for x in (r / "metrics.jsonl").read_text().splitlines()]
        for r in (tmp_path / "whole", run)
    ]
    assert losses[0] == losses[1]
    inside = sum(bool(r["inside_a_save"]) for r in kills)
    assert inside >= 2, kills  # the test is about kills inside saves: some must be
    record_figures("kills-during-saves", {
        "kills": len(kills), "inside_a_save": inside, "steps_at_kills": steps,
        "checkpoints_that_failed_to_load": 0, "resumes_that_failed": 0,
        "weights_velocities_generators_metrics_equal": True,
    })  # fmt: skip
