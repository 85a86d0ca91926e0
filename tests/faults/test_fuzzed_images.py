"""Images mutated by hypothesis from real JPEG, PNG, GIF, WebP, TIFF and BMP files, and
hand-made hard cases: decoding gives an image or BadImage with a reason, never another
exception, within seconds and a few hundred MiB (under a memory limit); `data prepare`
quarantines the bad ones and `predict` gives them error rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fuzz import hand_made, mutated, seeds
from hypothesis import HealthCheck, given, settings

from alexnet.data.images import BadImage, decode

from fixtures import ROOT, cli

LONG = os.environ.get("ALEXNET_LONG_FAULTS") == "1"
SEEDS = seeds()
# derandomized: the same examples on every run, in any order (the long variant draws more)
FUZZ = settings(max_examples=2000 if LONG else 60, derandomize=True, database=None,
                deadline=None, suppress_health_check=list(HealthCheck))  # fmt: skip


@pytest.mark.parametrize("kind", sorted(SEEDS))
def test_mutated_files_decode_or_are_refused_with_a_reason(kind, record):
    seen = {"decoded": 0, "refused": 0, "slowest_s": 0.0}

    @FUZZ
    @given(mutated(SEEDS[kind]))
    def check(data):
        start = time.perf_counter()
        try:
            pixels = decode(data, 64)
            assert pixels.shape == (64, 64, 3) and pixels.dtype.name == "uint8"
            seen["decoded"] += 1
        except BadImage as error:
            assert str(error)
            seen["refused"] += 1
        seconds = time.perf_counter() - start
        seen["slowest_s"] = max(seen["slowest_s"], round(seconds, 4))
        assert seconds < 5

    check()
    record(f"fuzz-{kind.replace(' ', '-')}", {"seed": kind, **seen, "uncaught": 0})


@pytest.mark.parametrize("name", sorted(hand_made()))
def test_hand_made_cases(name):
    data, usable = hand_made()[name]
    start = time.perf_counter()
    if usable:
        assert decode(data, 256).shape == (256, 256, 3)
    else:
        with pytest.raises(BadImage) as refused:
            decode(data, 256)
        assert str(refused.value)
    assert time.perf_counter() - start < 5


def examples(seed: bytes, count: int) -> list[bytes]:
    """`count` of hypothesis's mutations of a seed file (the same ones every time)."""
    made: list[bytes] = []

    @settings(max_examples=count, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(mutated(seed))
    def collect(data):
        made.append(data)

    collect()
    return made


def fuzzed_folder(folder: Path, per_seed: int) -> Path:
    """Hand-made cases and hypothesis's mutations, written as files."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, (data, _) in enumerate(hand_made().values()):
        (folder / f"hand-{i:02d}.jpg").write_bytes(data)
    for kind, seed in SEEDS.items():
        last = kind.split()[-1]
        suffix = {"JPEG": "jpg", "TIFF": "tif"}.get(last, last.lower())
        for j, data in enumerate(examples(seed, per_seed)):
            (folder / f"{kind.replace(' ', '-')}-{j:04d}.{suffix}").write_bytes(data)
    return folder


def test_decoding_under_a_memory_limit_stays_within_it(tmp_path, record):
    folder = fuzzed_folder(tmp_path / "files", per_seed=300 if LONG else 12)
    worker = Path(__file__).with_name("decode_worker.py")
    done = subprocess.run([sys.executable, str(worker), str(folder), "768"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout)
    assert len(rows) == len(list(folder.iterdir()))
    assert not [r for r in rows if r["outcome"] == "uncaught"]
    assert max(r["seconds"] for r in rows) < 5
    assert max(r["peak_mib"] for r in rows) < 400, max(rows, key=lambda r: r["peak_mib"])
    record("fuzz-memory-limit", {
        "files": len(rows), "limit_mib_above_imports": 768,
        "outcomes": {k: sum(r["outcome"] == k for r in rows) for k in ("decoded", "refused")},
        "uncaught": 0, "slowest_s": max(r["seconds"] for r in rows),
        "largest_peak_mib": max(r["peak_mib"] for r in rows),
        "hand_made": [r for r in rows if r["file"].startswith("hand-")],
    })  # fmt: skip


def test_prepare_quarantines_and_predict_reports_every_bad_file(tmp_path, debug_run, record):
    from alexnet.data.prepare import NoProgress, Settings, prepare

    files = fuzzed_folder(tmp_path / "fuzzed", per_seed=6)
    source = tmp_path / "folder"
    for split in ("train", "val"):
        (source / split / "thing").mkdir(parents=True)
        for path in files.iterdir():
            (source / split / "thing" / path.name).write_bytes(path.read_bytes())
    report = prepare(Settings("folder", str(source), size=64), tmp_path / "store", workers=1,
                     progress=NoProgress)  # fmt: skip
    total = len(list(files.iterdir()))
    refused = {name for name, (_, usable) in hand_made().items() if not usable}
    assert len(report.quarantined) >= 2 * len(refused)
    assert all(q["reason"] for q in report.quarantined)
    done = cli("predict", files, "--checkpoint", debug_run, "--json")
    rows = json.loads(done.stdout)
    assert len(rows) == total and done.returncode == 1  # some files gave no prediction
    bad = [r for r in rows if r["error"]]
    # the same files by name: those predict could not read, quarantined in both splits
    said = {Path(r["image"]).name for r in bad}
    names = [f"hand-{i:02d}.jpg" for i in range(len(hand_made()))]  # as fuzzed_folder writes
    assert {names[i] for i, (_, usable) in enumerate(hand_made().values()) if not usable} <= said
    for split in ("train", "val"):
        assert {Path(q["file"]).name for q in report.quarantined if q["split"] == split} == said
    record("fuzz-prepare-predict", {"files": total, "quarantined_per_split": len(bad),
                                    "predict_error_rows": len(bad), "predict_exit": 1})  # fmt: skip
