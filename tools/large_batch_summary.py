"""The large-batch study's record, table and plot (tools/large_batch_study.sh's runs): copies
each run's recipe, metrics and test evaluation into docs/runs/large-batch/RUN/, writes
docs/runs/large-batch/summary.json and the plot of held-out error by epoch, and prints the
table of docs/results-large-batch.md.

    python tools/large_batch_summary.py runs/large-batch --out docs/runs/large-batch
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from alexnet.records import tables
from alexnet.records.figures import LARGE_BATCH_SETTINGS as SETTINGS
from alexnet.records.figures import large_batch, large_batch_shown


def setting_of(run: str) -> str:
    for prefix in sorted(SETTINGS, key=len, reverse=True):
        if run.startswith(prefix + "-"):
            return prefix
    raise ValueError(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    runs, out = Path(args.runs), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for run in sorted(p for p in runs.iterdir() if (p / "metrics.jsonl").is_file()):
        metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        tests = sorted(run.glob("test-val-*/eval.json"))
        test = json.loads(tests[0].read_text()) if tests else None
        keep = out / run.name
        keep.mkdir(exist_ok=True)
        for name in ("config.yaml", "metrics.jsonl"):
            shutil.copy(run / name, keep / name)
        if test is not None:
            test.pop("confusion", None)
            (keep / "test-eval.json").write_text(json.dumps(test, indent=2) + "\n")
        rows.append({
            "run": run.name, "setting": setting_of(run.name),
            "epochs": len(metrics),
            "held_out_top1_error": [round(m["val_top1_error"], 4) for m in metrics],
            "best_held_out_top1_error": min(m["val_top1_error"] for m in metrics),
            "test_top1_error": None if test is None else test["top1_error"],
        })  # fmt: skip
    summary = {"command": "python " + " ".join(sys.argv), "runs": rows}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    shown = large_batch_shown(rows)
    large_batch(out / "summary.json", out / "held-out.png")
    tables.ROOT = Path(".")
    print(tables.large_batch(out / "summary.json", [
        (label, [r["run"] for r in shown if r["setting"] == setting
                 and r["test_top1_error"] is not None])
        for setting, label in SETTINGS.items()
        if any(r["setting"] == setting and r["test_top1_error"] is not None for r in shown)
    ]))  # fmt: skip


if __name__ == "__main__":
    main()
