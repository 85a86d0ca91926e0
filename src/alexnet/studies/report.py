"""`alexnet report RUN_DIR`: one self-contained HTML page for a training run.

Config, learning curves (training and validation error, learning rate), throughput, final
top-1/top-5 error (center and ten crops, from the run's `alexnet eval` folders), the worst
classes, the conv1 filter grid, predictions and neighbors. Pictures are PNGs inside the page
as data: URIs and the style is inline: the file opens from disk in any browser, with no
server, no network and no script.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import yaml

from alexnet.train.rundir import read_metrics

#: The training curve's color: a screenshot test looks for it.
TRAIN_COLOR = "#d62728"
VAL_COLOR = "#1f77b4"

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.8em; font-size: 1.25em; }
table { border-collapse: collapse; margin: 0.6em 0; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 13px; }
img { max-width: 100%; border: 1px solid #eee; } .note { color: #666; }
"""


def _png(figure_or_path) -> str:
    """A data: URI of a matplotlib figure or a PNG file."""
    if isinstance(figure_or_path, Path):
        data = figure_or_path.read_bytes()
    else:
        buffer = io.BytesIO()
        figure_or_path.savefig(buffer, format="png", dpi=100)
        data = buffer.getvalue()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def curves(metrics: list[dict]):
    """Error, learning rate and throughput per epoch, as one matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [m["epoch"] for m in metrics]
    val = "held-out" if _held_out(metrics[-1]) else "val"

    def series(key):
        return [100 * m[key] if m.get(key) is not None else None for m in metrics]

    fig, (err, lr, speed) = plt.subplots(1, 3, figsize=(13, 3.8))
    err.plot(epochs, series("train_top1_error"), color=TRAIN_COLOR, lw=2.5, label="train top-1")
    err.plot(epochs, series("val_top1_error"), color=VAL_COLOR, lw=2.5, label=f"{val} top-1")
    err.plot(epochs, series("val_top5_error"), color=VAL_COLOR, lw=1.5, ls="--",
             label=f"{val} top-5")  # fmt: skip
    err.set(xlabel="epoch", ylabel="error (%)", title="error")
    err.legend(fontsize=8)
    err.grid(alpha=0.3)
    lr.semilogy(epochs, [m.get("lr") for m in metrics], color="black", drawstyle="steps-post")
    lr.set(xlabel="epoch", title="learning rate")
    lr.grid(alpha=0.3)
    speed.plot(epochs, [m.get("images_per_s") for m in metrics], color="tab:green")
    speed.set(xlabel="epoch", ylabel="images/s", title="training throughput")
    speed.set_ylim(bottom=0)
    speed.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _evals(run_dir: Path) -> list[dict]:
    results = []
    # alexnet eval's folders, then the test split's from the end of a run (train --test)
    found = [*run_dir.glob("eval*/eval.json"), *run_dir.glob("test-*/eval.json")]
    for path in sorted(found):
        result = json.loads(path.read_text(encoding="utf-8"))
        result["folder"] = path.parent.name
        results.append(result)
    return results


def _held_out(line: dict) -> bool:
    # a run with data.holdout validates on training images held out ("train-holdout")
    return str(line.get("val_split", "")).endswith("-holdout")


def _checkpoint(run_dir: Path) -> Path | None:
    for name in ("best", "last"):
        path = run_dir / "checkpoints" / f"{name}.pt"
        if path.is_file():
            return path
    return None


def write_report(run_dir: str | Path, data: str | None = None, out: str | Path | None = None,
                 device: str = "auto") -> Path:  # fmt: skip
    """Write RUN_DIR/report.html (or `out`) and return its path."""
    import matplotlib.pyplot as plt

    from alexnet.evaluate.figures import filters, predictions

    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir)
    config_text = (run_dir / "config.yaml").read_text(encoding="utf-8")
    config = yaml.safe_load(config_text)
    version_path = run_dir / "version.json"
    version = json.loads(version_path.read_text(encoding="utf-8")) if version_path.is_file() else {}
    sections = []

    last = metrics[-1] if metrics else {}
    summary = [
        ["model", config.get("model", {}).get("name")],
        ["epochs", f"{last.get('epoch', 0)} of {config.get('run', {}).get('epochs')}"],
        ["training time", f"{last.get('elapsed_s', 0) / 60:.1f} min of training steps"],
        ["command", version.get("command", "")],
        ["code", f"alexnet {version.get('alexnet', '?')}, commit {version.get('git', '?')}"],
        ["machine", f"{version.get('device', '?')}, torch {version.get('torch', '?')}"],
    ]
    if start := version.get("init_from"):
        fresh = ", ".join(start.get("reinit") or []) or "none"
        summary.append(["started from", f"{start['file']} (sha256 {start['sha256']}, "
                        f"{start['network']}; started afresh: {fresh})"])  # fmt: skip
    sections.append(_table(["run", run_dir.name], summary))

    figures = run_dir / "figures"
    if metrics:
        # also a file of its own, for docs that show a run's curves without the page
        fig = curves(metrics)
        figures.mkdir(parents=True, exist_ok=True)
        fig.savefig(figures / "curves.png", dpi=100)
        plt.close(fig)
        sections.append(
            f'<h2>Learning curves</h2><img alt="curves" src="{_png(figures / "curves.png")}">'
        )
        rates = [m["images_per_s"] for m in metrics if m.get("images_per_s")]
        if rates:
            rates.sort()
            sections.append(
                f"<p>Throughput: median {rates[len(rates) // 2]:,.1f} images/s over "
                f"{len(rates)} epochs (range {rates[0]:,.1f}-{rates[-1]:,.1f}).</p>"
            )

    evals = _evals(run_dir)
    rows = [
        [f"{m['folder']} ({m['views']})", f"{100 * m['top1_error']:.2f}%",
         f"{100 * m['top5_error']:.2f}%", f"{m['images']:,}", Path(m["checkpoints"][0]).name]
        for m in evals
    ]  # fmt: skip
    if last.get("val_top1_error") is not None:
        rows.append(
            [f"last epoch's {'held-out ' if _held_out(last) else ''}validation "
             f"({last.get('val_views', 'center')})",
             f"{100 * last['val_top1_error']:.2f}%", f"{100 * last['val_top5_error']:.2f}%",
             f"{last.get('val_images', 0):,}", "during training"]
        )  # fmt: skip
    sections.append(
        "<h2>Final error</h2>"
        + _table(["evaluation", "top-1 error", "top-5 error", "images", "checkpoint"], rows)
    )
    if evals:
        worst = sorted(
            (c for c in evals[-1]["per_class"] if c["top1_error"] is not None),
            key=lambda c: -c["top1_error"],
        )[:10]
        sections.append(
            f"<h2>Worst classes ({html.escape(evals[-1]['folder'])})</h2>"
            + _table(["class", "top-1 error", "images"],
                     [[c["name"], f"{100 * c['top1_error']:.1f}%", c["images"]] for c in worst])
        )  # fmt: skip
        picture = run_dir / evals[-1]["folder"] / "eval.png"
        if picture.is_file():
            sections.append(f'<img alt="confusion" src="{_png(picture)}">')
    else:
        sections.append(
            '<p class="note">No ten-crop evaluation yet: <code>alexnet eval --checkpoint '
            f"{html.escape(str(run_dir))} --data STORE --views ten-crop</code></p>"
        )

    checkpoint = _checkpoint(run_dir)
    if checkpoint is not None:
        result = filters(str(checkpoint), figures)
        scores = result["color_specificity"]
        text = (
            "Color specificity (mean share of a kernel's variance between its channels; 0 "
            "is gray): " + ", ".join(f"{k} {v['mean']:.3f}" for k, v in scores.items())
            if scores
            else result["note"]
        )
        sections.append(
            f"<h2>conv1 kernels ({checkpoint.name})</h2><p>{html.escape(text)}</p>"
            f'<img alt="filters" src="{_png(figures / "filters.png")}">'
        )
        store = data or config.get("data", {}).get("store")
        if store and (Path(store) / "manifest.json").is_file():
            try:
                predictions(str(checkpoint), store, figures, device=device)
            except ValueError as error:  # a network of a class subset, for one
                sections.append(f'<h2>Predictions</h2><p class="note">{html.escape(str(error))}'
                                "</p>")  # fmt: skip
            else:
                sections.append(
                    "<h2>Predictions</h2>"
                    f'<img alt="predictions" src="{_png(figures / "predictions.png")}">'
                )
        else:
            sections.append(
                f'<h2>Predictions</h2><p class="note">The store {html.escape(str(store))} is '
                "not here; pass --data.</p>"
            )
    neighbors = run_dir / "neighbors" / "neighbors.json"
    if neighbors.is_file():
        found = json.loads(neighbors.read_text(encoding="utf-8"))
        k = found["k"]
        sections.append(
            "<h2>Neighbors</h2><p>"
            + html.escape(f"Base: {found['base']}. Queries: {found['queries']}.")
            + "</p>"
            + _table(
                ["search", "bytes per image", f"precision at {k}", "queries/s"],
                [[r["search"], f"{r['bytes_per_image']:,}", f"{r[f'precision_at_{k}']:.3f}",
                  f"{r['queries_per_s']:,.1f}"] for r in found["table"]],
            )
            + f'<img alt="neighbors" src="{_png(neighbors.with_name("neighbors.png"))}">'
        )  # fmt: skip
    else:
        sections.append(
            '<h2>Neighbors</h2><p class="note">Not computed yet: <code>alexnet neighbors '
            f"--checkpoint {html.escape(str(run_dir))} --data STORE --codes 16,64</code></p>"
        )
    sections.append(f"<h2>Config</h2><pre>{html.escape(config_text)}</pre>")

    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>alexnet run {html.escape(run_dir.name)}</title><style>{STYLE}</style></head>"
        f"<body><h1>alexnet run {html.escape(run_dir.name)}</h1>"
        + "\n".join(sections)
        + "</body></html>\n"
    )
    path = Path(out) if out else run_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
