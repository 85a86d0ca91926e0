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
import statistics
import sys
from pathlib import Path

SETTINGS = {  # name prefix -> what it is
    "b128": "batch 128, the recipe's rate (0.001)",
    "b2048-linear": "batch 2,048, linear scaling (0.016)",
    "b2048-warmup": "batch 2,048, linear scaling + 2 epochs of warmup",
    "b2048-lars": "batch 2,048, LARS + 2 epochs of warmup",
}


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
    # LARS's rates not chosen on the held-out images stay out of the plot and the table
    chosen_rates = {r["run"].split("-")[2] for r in rows
                    if r["setting"] == "b2048-lars" and r["run"].endswith("-s1")}  # fmt: skip
    shown = [r for r in rows if r["setting"] != "b2048-lars"
             or r["run"].split("-")[2] in chosen_rates]  # fmt: skip
    plot(shown, out / "held-out.png")
    print(
        "| setting | runs (seed: test top-1 error) | mean test top-1 error | best held-out error |"
    )
    print("|---|---|---|---|")
    for setting, label in SETTINGS.items():
        chosen = [r for r in shown if r["setting"] == setting and r["test_top1_error"] is not None]
        if not chosen:
            continue
        cells = ", ".join(f"{r['run'].rsplit('-', 1)[1]}: {100 * r['test_top1_error']:.2f}%"
                          for r in chosen)  # fmt: skip
        mean = statistics.mean(r["test_top1_error"] for r in chosen)
        best = statistics.mean(r["best_held_out_top1_error"] for r in chosen)
        print(f"| {label} | {cells} | {100 * mean:.2f}% | {100 * best:.2f}% |")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"b128": "#4c72b0", "b2048-linear": "#c44e52", "b2048-warmup": "#dd8452",
              "b2048-lars": "#55a868"}  # fmt: skip
    fig, axis = plt.subplots(figsize=(7, 4), layout="constrained")
    seen = set()
    for row in rows:
        setting = row["setting"]
        label = SETTINGS[setting] if setting not in seen else None
        seen.add(setting)
        errors = [100 * e for e in row["held_out_top1_error"]]
        axis.plot(range(1, len(errors) + 1), errors, color=colors[setting], label=label,
                  alpha=0.85, linestyle="-" if row["run"].endswith("s0") else "--")  # fmt: skip
    axis.set_xlabel("epoch")
    axis.set_ylabel("held-out top-1 error, %")
    axis.set_title("Fashion-MNIST 32x32, the four-layer net: batch 128 against 2,048", fontsize=9)
    axis.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
