"""Damaged and hostile checkpoints: `eval`, `predict`, `train --resume` and `--init-from`
each refuse every one with one clear line and a non-zero exit, and no pickled code runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from tamper import tampered

from alexnet.models import checkpoint as ckpt

from fixtures import DEBUG, ROOT, cli, encode, photo

# ALEXNET_LONG_FAULTS=1: the long variant, as run for docs/reliability.md
LONG = os.environ.get("ALEXNET_LONG_FAULTS") == "1"


@pytest.fixture(scope="module")
def cases(debug_run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tampered")
    marker = folder / "code-ran"
    files = {}
    made = tampered(debug_run / "checkpoints" / "last.pt", marker,
                    truncations=200 if LONG else 12, flips=200 if LONG else 12)  # fmt: skip
    for i, (name, data) in enumerate(made.items()):
        path = folder / f"case-{i}.pt"
        path.write_bytes(data)
        files[name] = path
    return files, marker


def commands(path, run_dir, store, picture, tmp_path):
    """The four ways a user hands the package a checkpoint."""
    resumed = tmp_path / "resumed"
    shutil.copytree(run_dir, resumed, dirs_exist_ok=True)
    shutil.copy(path, resumed / "checkpoints" / "last.pt")
    return {
        "eval": ["eval", "--checkpoint", path, "--data", store],
        "predict": ["predict", picture, "--checkpoint", path],
        "train --resume": ["train", "--resume", resumed],
        "train --init-from": [
            "train",
            "--config",
            DEBUG,
            "--set",
            f"data.store={store}",
            "--init-from",
            path,
            "--out",
            tmp_path / "fresh",
        ],
    }


def carries_nothing(path, good: dict) -> bool:
    """Whether a damaged file loads, digest checked, with exactly the original's content."""
    from alexnet.core.digest import content_digest

    try:
        loaded = ckpt.load(path)
    except ValueError:
        return False
    strip = lambda c: {k: v for k, v in c.items() if k != "path"}  # noqa: E731
    return content_digest(strip(loaded)) == content_digest(strip(good))


def test_every_damaged_or_hostile_checkpoint_is_refused_in_one_line(
    cases, debug_run, store, tmp_path, record
):
    files, marker = cases
    picture = tmp_path / "photo.png"
    picture.write_bytes(encode(photo(0), "PNG"))
    good = ckpt.load(debug_run / "checkpoints" / "last.pt")
    failures, tried, harmless = [], 0, []
    for name, path in files.items():
        if name.startswith("bit ") and carries_nothing(path, good):
            # the flip hit bytes no value is read from (zip timestamps, padding, a CRC that
            # torch does not check): the file loads as the original, and rightly so
            harmless.append(name)
            continue
        for command, args in commands(path, debug_run, store, picture, tmp_path).items():
            done = cli(*args)
            tried += 1
            lines = done.stderr.strip().splitlines()
            if done.returncode == 0 or len(lines) != 1 or "Traceback" in done.stderr:
                failures.append(f"{name} / {command}: exit {done.returncode}: {done.stderr[-500:]}")
            elif str(path) not in lines[0] and "last.pt" not in lines[0]:
                failures.append(f"{name} / {command}: the line does not name the file: {lines[0]}")
            shutil.rmtree(tmp_path / "fresh", ignore_errors=True)
    record("tampered-checkpoints", {
        "files": len(files),
        "kinds": {
            "truncations": sum(n.startswith("cut at") for n in files),
            "bit flips": sum(n.startswith("bit ") for n in files),
            "other file types": 4,
            "pickles that run code": 2,
        },
        "commands": ["eval", "predict", "train --resume", "train --init-from"],
        "harmless_flips": harmless,
        "runs": tried,
        "refused_in_one_line_nonzero_exit": tried - len(failures),
        "failures": failures,
        "pickled_code_ran": marker.exists(),
    })  # fmt: skip
    assert not failures, "\n".join(failures[:20])
    assert not marker.exists(), "pickled code ran"
    assert len(files) >= 30


def test_the_real_command_refuses_a_hostile_pickle_without_running_it(cases, store):
    files, marker = cases
    path = files["torch.save of an object that runs code"]
    command = [sys.executable, "-m", "alexnet", "eval", "--checkpoint", str(path), "--data", store]
    done = subprocess.run(list(map(str, command)), capture_output=True, text=True, cwd=ROOT)
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1 and "not a readable checkpoint" in done.stderr
    assert not marker.exists()
