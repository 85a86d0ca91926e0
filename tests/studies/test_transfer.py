"""`alexnet transfer` on the debug store: classes 0-4 (A) pretrain, 5-9 (B) are learned four
ways with 2 and 4 images per class; each cell's network and images are what the method
says."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from alexnet.cli import main
from alexnet.core.files import held
from alexnet.models import checkpoint as ckpt
from alexnet.studies.transfer import CLAIMS, probe_rows, restore, run_transfer
from alexnet.studies.transfer_table import table_text, widened
from alexnet.train.config import load_config
from alexnet.train.trainer import train

from fixtures import DEBUG, ROOT


def test_the_four_ways_on_the_other_classes(store, tmp_path):
    (tmp_path / "A.txt").write_text("0\n1\n2\n3\n4\n")
    (tmp_path / "B.txt").write_text("5\n6\n7\n8\n9\n")
    common = [f"data.store={store}", "run.epochs=1"]
    source = tmp_path / "source"
    train(load_config(DEBUG, [*common, f"data.class_ids={tmp_path / 'A.txt'}"]), source)
    recipe = load_config(DEBUG, [*common, f"data.class_ids={tmp_path / 'B.txt'}",
                                 "data.holdout=10"])  # fmt: skip
    out = tmp_path / "transfer"
    said = []

    def stop_at_fc8(line):  # the study stopped (Ctrl-C, a killed job) after its first cell
        said.append(line)
        if line.startswith("transfer: fc8"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_transfer(recipe, str(source), out, [4, 2], [0], log=stop_at_fc8, command="cmd")
    partial = json.loads((out / "transfer.json").read_text())
    assert [(c["method"], c["per_class"]) for c in partial["cells"]] == [("probe", 2)]
    assert partial["command"] == "cmd" and (out / "transfer.png").is_file()
    # the Markdown table: the one finished row, its error read from the cell's own record
    probe = json.loads((out / "probe" / "n-2" / "seed-0" / "probe.json").read_text())["test"]
    lines = (out / "transfer.md").read_text().splitlines()
    assert lines[0].startswith("| method |") and lines[-1] == "`cmd`"
    rows = [line for line in lines[2:] if line.startswith("|")]
    assert rows == [f"| probe | 2 | center | 1 | {100 * probe['top1_error']:.2f} "
                    f"| {100 * probe['top5_error']:.2f} "
                    f"| {100 * probe['top1_error']:.2f} (seed 0) |"]  # fmt: skip

    result = run_transfer(recipe, str(source), out, [4, 2], [0], log=said.append)

    assert [(r["method"], r["per_class"], r["seeds"]) for r in result["table"]] == [
        (m, n, 1) for m in ("scratch", "probe", "fc8", "all") for n in (4, 2)
    ]
    # cheapest first: the smaller N whole, and for each N scratch (the most epochs) last
    # the stopped fc8 cell again, then the rest; the finished probe cell not again
    order = [f"transfer: {m}, {n} per class, seed 0"
             for n in (2, 4) for m in ("probe", "fc8", "all", "scratch")]  # fmt: skip
    assert [line for line in said if "per class" in line] == order[:2] + order[1:]
    assert all(0 <= c["top5_error"] <= c["top1_error"] <= 1 for c in result["cells"])
    assert "probe" in table_text(result) and (out / "transfer.png").is_file()
    rows = [line.split(" | ")[:3] for line in (out / "transfer.md").read_text().splitlines()[2:]
            if line.startswith("|")]  # fmt: skip
    assert rows == [[f"| {m}", str(n), "center" if m == "probe" else "ten-crop"]
                    for m in ("scratch", "probe", "fc8", "all") for n in (4, 2)]  # fmt: skip

    # fc8 alone: every other layer is the source's, bit for bit; all: every layer moved
    origin = ckpt.load(source / "checkpoints" / "best.pt")["state_dict"]
    frozen = ckpt.load(out / "fc8" / "n-4" / "seed-0" / "checkpoints" / "last.pt")["state_dict"]
    tuned = ckpt.load(out / "all" / "n-4" / "seed-0" / "checkpoints" / "last.pt")["state_dict"]
    for key, value in origin.items():
        if key.startswith("fc8"):
            assert frozen[key].shape[0] == 5  # B's five classes, afresh
        else:
            assert torch.equal(frozen[key], value), key
            assert not torch.equal(tuned[key], value), key

    # the probe's images are a training cell's: 4 of each B class, none of the held out
    held = set(json.loads((out / "scratch" / "n-4" / "seed-0" / "holdout.json").read_text())
               ["indices"])  # fmt: skip
    labels = np.load(out / "features-train" / "labels.npy")
    rows = probe_rows(recipe, 4, 0)
    assert np.bincount(labels[rows]).tolist() == [4] * 5
    store_labels = np.load(store / "train" / "labels.npy")
    pool = np.flatnonzero(store_labels >= 5)
    assert not set(pool[rows].tolist()) & held
    assert set(probe_rows(recipe, 2, 0)) <= set(rows)

    said.clear()
    again = run_transfer(recipe, str(source), out, [4, 2], [0], log=said.append)
    assert again["cells"] == result["cells"]  # done cells are kept, not trained again
    assert said == []


def test_work_made_from_other_weights_is_refused(store, tmp_path):
    """A study's cells and cached features stand on one pretraining: an OUT holding those of
    another (a source trained again, another file) is refused, naming them, and nothing is
    written; scratch cells, which stand on no source, are not named."""
    (tmp_path / "A.txt").write_text("0\n1\n2\n3\n4\n")
    (tmp_path / "B.txt").write_text("5\n6\n7\n8\n9\n")
    common = [f"data.store={store}", "run.epochs=1"]
    first = tmp_path / "first"
    train(load_config(DEBUG, [*common, f"data.class_ids={tmp_path / 'A.txt'}"]), first)
    other = ckpt.load(first / "checkpoints" / "best.pt")
    other["state_dict"]["conv1.bias"] += 1.0
    ckpt.save(tmp_path / "other.pt", other)
    recipe = load_config(DEBUG, [*common, f"data.class_ids={tmp_path / 'B.txt'}",
                                 "data.holdout=10"])  # fmt: skip
    out, grid = tmp_path / "transfer", ([2], [0], ["scratch", "probe", "fc8"])
    # scratch alone needs no source; a later study with one keeps its cells
    with pytest.raises(ValueError, match="probe start from the pretrained network"):
        run_transfer(recipe, None, out, [2], [0], ["scratch", "probe"])
    run_transfer(recipe, None, out, [2], [0], ["scratch"], log=lambda line: None)
    said = []
    run_transfer(recipe, str(first), out, *grid, log=said.append)
    assert [line for line in said if "per class" in line] == [
        "transfer: probe, 2 per class, seed 0",
        "transfer: fc8, 2 per class, seed 0",
    ]
    digest = hashlib.sha256((first / "checkpoints" / "best.pt").read_bytes()).hexdigest()
    table = json.loads((out / "transfer.json").read_text())
    probe = json.loads((out / "probe" / "n-2" / "seed-0" / "probe.json").read_text())
    assert table["source_sha256"] == probe["source"]["sha256"] == digest

    before = (out / "transfer.json").read_text()
    with pytest.raises(ValueError, match="other weights than") as refused:
        run_transfer(recipe, str(tmp_path / "other.pt"), out, *grid, log=lambda line: None)
    named = str(refused.value)
    for folder in ("features-train", "features-val", "probe/n-2/seed-0", "fc8/n-2/seed-0"):
        assert f"{folder} ({digest[:16]})" in named
    assert "scratch" not in named
    assert (out / "transfer.json").read_text() == before

    # a record that names no source (a study older than the sha256) is not taken as this one's
    del probe["source"]
    (out / "probe" / "n-2" / "seed-0" / "probe.json").write_text(json.dumps(probe))
    with pytest.raises(ValueError, match=r"probe/n-2/seed-0 \(no sha256 recorded\)"):
        run_transfer(recipe, str(first), out, *grid, log=lambda line: None)


HOLD = """import sys, time
from alexnet.core.files import held
with held(sys.argv[1]) as holder:
    print(holder, flush=True)
    time.sleep(600)
"""


def test_studies_running_at_once_share_the_cells(store, tmp_path):
    """A cell another study holds is passed over, naming the holder; once that study is
    killed (its lock goes with it) the cell is run; a lock held in one process is held for
    every other, so two studies never train one cell."""
    (tmp_path / "B.txt").write_text("5\n6\n7\n8\n9\n")
    recipe = load_config(DEBUG, [f"data.store={store}", "run.epochs=1", "data.holdout=10",
                                 f"data.class_ids={tmp_path / 'B.txt'}"])  # fmt: skip
    out = tmp_path / "transfer"
    claim = out / CLAIMS / "scratch-n-2-seed-0"
    other = subprocess.Popen([sys.executable, "-c", HOLD, str(claim)], stdout=subprocess.PIPE,
                             text=True, cwd=ROOT)  # fmt: skip
    try:
        assert other.stdout.readline().strip() == "None"  # it holds the cell
        with held(claim) as holder:  # and so this process does not
            assert holder == f"pid {other.pid} on {socket.gethostname()}"
        said = []
        first = run_transfer(recipe, None, out, [2], [0, 1], ["scratch"], log=said.append)
    finally:
        other.kill()
        other.wait()
    assert [c["seed"] for c in first["cells"]] == [1]
    assert not (out / "scratch" / "n-2" / "seed-0").exists()
    assert f"transfer: scratch, 2 per class, seed 0: run by pid {other.pid}" in said[0]
    assert "1 cells were being run by other studies" in said[-1]

    said.clear()  # the holder was killed: its lock is gone, nothing to clear by hand
    second = run_transfer(recipe, None, out, [2], [0, 1], ["scratch"], log=said.append)
    assert [c["seed"] for c in second["cells"]] == [0, 1]
    assert said == ["transfer: scratch, 2 per class, seed 0"]
    assert json.loads((out / "transfer.json").read_text())["cells"] == second["cells"]


@pytest.mark.parametrize(("typed", "recorded"), [
    ("alexnet transfer --out o --seeds 0", "alexnet transfer --out o --seeds 0,1 "
     "--methods scratch,all --per-class 10,450"),
    ("alexnet transfer --per-class=450 --methods all --seeds 1 --table-only",
     "alexnet transfer --per-class=10,450 --methods scratch,all --seeds 0,1 --table-only"),
])  # fmt: skip
def test_a_widened_command_names_the_whole_grid(typed, recorded):
    assert widened(typed, ["scratch", "all"], [10, 450], [0, 1]) == recorded


def records_of(out, records):
    """tools/transfer_records.sh: the records of a study that a results page commits."""
    script = ROOT / "tools" / "transfer_records.sh"
    subprocess.run(["bash", str(script), str(out), str(records)], check=True,
                   capture_output=True, env={**os.environ, "PYTHON": sys.executable})  # fmt: skip


def test_a_study_goes_on_from_its_committed_records(store, tmp_path, capsys):
    """OUT lost with its machine: the records tools/transfer_records.sh committed (no
    checkpoints) are put back into a new OUT, where the study counts their cells finished and
    runs only those left; the table of them all is written without running any, its source
    the one the cells record. Records of another recipe, and a table over two sources, are
    refused."""
    (tmp_path / "A.txt").write_text("0\n1\n2\n3\n4\n")
    (tmp_path / "B.txt").write_text("5\n6\n7\n8\n9\n")
    common = [f"data.store={store}", "run.epochs=1"]
    source = tmp_path / "source"
    train(load_config(DEBUG, [*common, f"data.class_ids={tmp_path / 'A.txt'}"]), source)
    digest = hashlib.sha256((source / "checkpoints" / "best.pt").read_bytes()).hexdigest()
    b = [*common, f"data.class_ids={tmp_path / 'B.txt'}", "data.holdout=10"]
    recipe = load_config(DEBUG, b)
    lost, records = tmp_path / "lost", tmp_path / "records"
    three = ["scratch", "probe", "fc8"]
    run_transfer(recipe, str(source), lost, [2], [0], three, log=lambda line: None)
    records_of(lost, records)
    assert not list(records.rglob("*.pt")) and not list(records.rglob("features-*"))
    cells = ["scratch/n-2/seed-0", "probe/n-2/seed-0", "fc8/n-2/seed-0"]

    out = tmp_path / "out"
    other = load_config(DEBUG, [*b, "data.holdout=20"])
    with pytest.raises(ValueError, match=r"another recipe \(data.holdout 10, not 20\)"):
        restore(records, out, other)
    assert not out.exists()

    # a restore killed part way left a half-copied cell beside its place: copied afresh
    (out / "fc8" / "n-2" / ".restoring-seed-0").mkdir(parents=True)
    (out / "fc8" / "n-2" / ".restoring-seed-0" / "stale").write_text("")
    # the command line: restore, then the table of the three cells, none run
    config = tmp_path / "b.yaml"
    config.write_text(DEBUG.read_text())
    flags = [f"--set={item}" for item in b]
    assert main(["transfer", "--recipe", str(config), *flags, "--out", str(out), "--restore",
                 str(records), "--per-class", "2", "--seeds", "0", "--methods",
                 ",".join(three), "--table-only"]) == 0  # fmt: skip
    assert "3 finished cells restored" in capsys.readouterr().err
    table = json.loads((out / "transfer.json").read_text())
    assert table["cells"] == json.loads((lost / "transfer.json").read_text())["cells"]
    assert table["source_sha256"] == digest
    assert not list(out.rglob(".restoring-*"))
    for cell in cells:  # as the study itself left them, checkpoints aside
        assert not (out / cell / "checkpoints").exists() and not (out / cell / "stale").exists()
        if not cell.startswith("probe"):
            assert (out / cell / "holdout.json").read_bytes() == (
                lost / cell / "holdout.json").read_bytes()  # fmt: skip

    # the study with its source runs the one cell left, and its records copy whole again
    said = []
    whole = run_transfer(recipe, str(source), out, [2], [0], log=said.append)
    assert [line for line in said if "per class" in line] == ["transfer: all, 2 per class, seed 0"]
    assert [(c["method"], c["per_class"]) for c in whole["cells"]] == [
        (m, 2) for m in ("scratch", "probe", "fc8", "all")]  # fmt: skip
    records_of(out, tmp_path / "again")
    # restored again, OUT's cells come first: nothing is copied over them
    assert restore(records, out, recipe) == ([], cells)

    # a study asked for one cell writes the table of every finished one, not that cell's
    # alone (the records copied next would lose the rest), under the command of the grid
    asked = "alexnet transfer --recipe b.yaml --out o --methods=scratch --per-class 2 --seeds 0"
    one = run_transfer(recipe, None, out, [2], [0], ["scratch"], log=said.append,
                       command=asked, table_only=True)  # fmt: skip
    assert one["cells"] == whole["cells"]
    assert json.loads((out / "transfer.json").read_text())["cells"] == whole["cells"]
    grid = "--methods=scratch,probe,fc8,all --per-class 2 --seeds 0"
    assert one["command"] == f"alexnet transfer --recipe b.yaml --out o {grid}"
    assert (out / "transfer.md").read_text().count("(seed 0) |") == 4

    version = out / "fc8" / "n-2" / "seed-0" / "version.json"
    record = json.loads(version.read_text())
    record["init_from"]["sha256"] = "0" * 64
    version.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"more than one source: .*fc8/n-2/seed-0 \(0{16}\)"):
        run_transfer(recipe, None, out, [2], [0], table_only=True)


def study_folder(folder, cells, sha=None, recipe=None):
    """A study's records as transfer_records.sh leaves them: transfer.json, its cells and
    table (the table is not read by compare, which tabulates the cells itself)."""
    folder.mkdir(parents=True)
    table = {"cells": [{"method": m, "per_class": n, "seed": s, "top1_error": e1,
                        "top5_error": e5, "views": "center" if m == "probe" else "ten-crop"}
                       for m, n, s, e1, e5 in cells],
             "table": [], "recipe": recipe or {"model": {"name": "alexnet2012"},
                                               "data": {"holdout": 10}},
             "command": f"alexnet transfer --out {folder.name}"}  # fmt: skip
    if sha:
        table["source_sha256"] = sha
    (folder / "transfer.json").write_text(json.dumps(table))
    return folder


def test_studies_from_several_sources_compare_row_by_row(tmp_path, capsys):
    """Two pretrainings' studies of one recipe in one table: a row per method, N and source,
    the source named by label and sha256 (a study written before transfer.json recorded it:
    the sha256 its cells record), the scratch cells both folders hold listed once. A study of
    another network is set beside them, each row naming its network; one of another recipe
    otherwise, a folder that is no study and a label given twice are refused, nothing
    written."""
    scratch = [("scratch", 2, 0, 0.50, 0.20), ("scratch", 2, 1, 0.70, 0.40)]
    first = study_folder(tmp_path / "first", [*scratch, ("probe", 2, 0, 0.30, 0.10)])
    (first / "probe" / "n-2" / "seed-0").mkdir(parents=True)
    (first / "probe" / "n-2" / "seed-0" / "probe.json").write_text(
        json.dumps({"source": {"file": "a.pt", "sha256": "a" * 64}}))  # fmt: skip
    cells = [*scratch, ("probe", 2, 0, 0.25, 0.15), ("all", 4, 1, 0.20, 0.05)]
    second = study_folder(tmp_path / "second", cells, sha="b" * 64)
    out = tmp_path / "compare"
    assert main(["transfer-compare", f"first={first}", f"second={second}", "--out",
                 str(out)]) == 0  # fmt: skip
    result = json.loads((out / "compare.json").read_text())
    assert [(r["method"], r["per_class"], r["study"], r["source_sha256"], r["seeds"])
            for r in result["rows"]] == [
        ("scratch", 2, None, None, 2),
        ("probe", 2, "first", "a" * 64, 1),
        ("probe", 2, "second", "b" * 64, 1),
        ("all", 4, "second", "b" * 64, 1),
    ]  # fmt: skip
    # scratch over its two seeds: mean 0.6, sample standard deviation 0.1 * sqrt(2)
    assert result["rows"][0]["top1_error"]["mean"] == pytest.approx(0.6)
    assert result["rows"][0]["top1_error"]["std"] == pytest.approx(0.1414213562)
    table = (out / "compare.md").read_text()
    assert "| scratch | 2 | none | ten-crop | 2 | 60.00 ± 14.14 | 30.00 ± 14.14 |" in table
    assert "| probe | 2 | first (aaaaaaaaaaaa) | center | 1 | 30.00 | 10.00 | 30.00 (seed 0) |" in (
        table)  # fmt: skip
    assert "| all | 4 | second (bbbbbbbbbbbb) | ten-crop | 1 | 20.00 | 5.00 | 20.00 (seed 1) |" in (
        table)  # fmt: skip
    assert (out / "compare.png").stat().st_size > 0
    capsys.readouterr()

    # the paper's 1 CNN* beside it: its scratch cells are its own, though their errors agree
    six = {"model": {"name": "alexnet2012_6conv"}, "data": {"holdout": 10}}
    conv6 = study_folder(tmp_path / "conv6", [*scratch, ("fc8", 2, 0, 0.40, 0.30)], sha="d" * 64,
                         recipe=six)  # fmt: skip
    out6 = tmp_path / "compare6"
    assert main(["transfer-compare", f"first={first}", f"six={conv6}", "--out", str(out6)]) == 0
    rows = json.loads((out6 / "compare.json").read_text())["rows"]
    assert [(r["method"], r["network"], r["study"]) for r in rows] == [
        ("scratch", "alexnet2012", None), ("scratch", "alexnet2012_6conv", None),
        ("probe", "alexnet2012", "first"), ("fc8", "alexnet2012_6conv", "six"),
    ]  # fmt: skip
    table = (out6 / "compare.md").read_text()
    assert "| method | images per class | network | source |" in table
    assert "| fc8 | 2 | alexnet2012_6conv | six (dddddddddddd) | ten-crop | 1 | 40.00 |" in table
    capsys.readouterr()

    twenty = {"model": {"name": "alexnet2012"}, "data": {"holdout": 20}}
    other = study_folder(tmp_path / "other", scratch, sha="c" * 64, recipe=twenty)
    refused = tmp_path / "refused"
    for studies, said in (
        ([f"first={first}", f"other={other}"],
         "another recipe than first's (data.holdout 20, not 10)"),
        ([f"first={first}", f"x={tmp_path}"], "holds no transfer.json: not a transfer study"),
        ([f"a={first}", f"a={second}"], "two studies labelled 'a'"),
    ):  # fmt: skip
        assert main(["transfer-compare", *studies, "--out", str(refused)]) == 2
        assert said in capsys.readouterr().err
        assert not refused.exists()
