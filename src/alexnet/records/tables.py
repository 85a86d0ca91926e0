"""Markdown tables from records: the functions the pages' generator blocks call.

A page holds a block like

    <!-- [[[cog table(...) ]]] -->
    | ... the table ... |
    <!-- [[[end]]] -->

and `alexnet report-docs` (cogapp underneath) replaces what lies between the markers with
what the call returns. Every function here reads committed files only (paths relative to
the repository's root) and formats numbers; none computes a result the record lacks,
beyond a difference, a ratio or a mean of what it holds.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

#: Where the records' paths start; `alexnet report-docs` sets it to the repository's root.
ROOT = Path(".")

Column = tuple[str, "str | Callable[[Any], Any]", str]


def path(name: str | Path) -> Path:
    return ROOT / name


def load(name: str | Path) -> Any:
    """A JSON record, or a JSONL one as a list of its lines' objects."""
    text = path(name).read_text()
    if str(name).endswith(".jsonl"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def get(record: Any, key: str) -> Any:
    """`record["a"]["b"][0]` for the key "a.b.0"."""
    for part in key.split("."):
        record = record[int(part)] if isinstance(record, list) else record[part]
    return record


def cell(value: Any, template: str = "{}") -> str:
    """A value as a table cell: `template.format(value)`; None is "-"."""
    if value is None:
        return "-"
    return template.format(value)


def markdown(header: Sequence[str], rows: Iterable[Sequence[str]], right: Sequence[bool]) -> str:
    """A Markdown table; `right[i]` aligns column i right (numbers)."""
    lines = ["|" + "|".join(f" {c} " if c else " " for c in header) + "|",
             "| " + " | ".join("---:" if r else "---" for r in right) + " |"]  # fmt: skip
    lines += ["|" + "|".join(f" {c} " if c else " " for c in row) + "|" for row in rows]
    return "\n".join(lines)


def table(records: Iterable[Any], columns: Sequence[Column]) -> str:
    """One row per record; each column a (header, key or function of the record, template).
    Columns of numbers are aligned right."""
    rows = []
    for record in records:
        row = []
        for _, key, template in columns:
            value = key(record) if callable(key) else get(record, key)
            row.append(cell(value, template))
        rows.append(row)
    return markdown([c[0] for c in columns], rows, numeric(rows))


def numeric(rows: Sequence[Sequence[str]]) -> list[bool]:
    """Which columns to align right: those whose every cell is a number ("-" for none)."""
    number = re.compile(r"^(\*\*)?[-+]?\d")
    width = len(rows[0]) if rows else 0
    return [i > 0 and all(number.match(r[i]) or r[i] in ("-", "") for r in rows)
            for i in range(width)]  # fmt: skip


def epochs(run: str, columns: Sequence[Column], which: Callable[[dict], bool] | None = None) -> str:
    """A run's metrics.jsonl, one row per line (`which` picks lines)."""
    lines = load(f"{run}/metrics.jsonl")
    return table([m for m in lines if which is None or which(m)], columns)


def spread(values: Sequence[float], scale: float = 100.0, digits: int = 2, unit: str = "%") -> str:
    """mean +- sample standard deviation, as the studies' tables write them."""
    mean = statistics.fmean(values) * scale
    if len(values) < 2:
        return f"{mean:.{digits}f}{unit}"
    return f"{mean:.{digits}f} +- {statistics.stdev(values) * scale:.{digits}f}{unit}"


def summary(s: dict, scale: float = 100.0, digits: int = 2, unit: str = "%") -> str:
    """An ablation record's {mean, std, n} as mean +- std."""
    if s["mean"] is None:
        return "not reached"
    if s["n"] < 2:
        return f"{scale * s['mean']:.{digits}f}{unit}"
    return f"{scale * s['mean']:.{digits}f} +- {scale * s['std']:.{digits}f}{unit}"


def ablation(run: str, columns: dict[str, str], names: Sequence[str] | None = None,
             digits: int = 1) -> str:  # fmt: skip
    """An `alexnet ablate` study's table from its ablate.json, one row per variant.

    `columns` maps each column's title to what it shows: "top1", "top5" and "train" (the
    last epoch's validation top-1 and top-5 error and the training error, mean +- std over
    seeds), "seeds" (top-1 per seed), "minus" (top-1 minus the first variant's, seed by
    seed, in points) and "reach" (epochs to the study's training-error threshold).
    `names` replaces the variants' names."""
    result = load(f"{run}/ablate.json")
    first = result["variants"][0]["val_top1_error_by_seed"]
    rows = []
    for i, variant in enumerate(result["variants"]):
        seeds = variant["val_top1_error_by_seed"]
        shown = {
            "top1": lambda v=variant: summary(v["val_top1_error"]),
            "top5": lambda v=variant: summary(v["val_top5_error"]),
            "train": lambda v=variant: summary(v["train_top1_error"]),
            "reach": lambda v=variant: summary(v["epochs_to_threshold"], 1.0, 2, ""),
            "epochs": lambda v=variant: summary(v["epochs"], 1.0, 0, ""),
            "seeds": lambda s=seeds: ", ".join(f"{100 * e:.{digits}f}" for e in s.values()),
            "minus": lambda s=seeds, i=i: "" if i == 0 else ", ".join(
                f"{100 * (s[k] - first[k]):+.{digits}f}" for k in s if k in first),
        }  # fmt: skip
        name = names[i] if names else variant["variant"]
        rows.append([name, *(shown[what]() for what in columns.values())])
    return markdown(["", *columns], rows, [False, *([True] * len(columns))])


def bench_model(record: str, models: Sequence[str] | None = None) -> str:
    """`alexnet bench model`'s results: images/s (median, min, max over rounds), against
    torchvision's architecture (alexnet_owt) in the same mode and dtype, and the share of
    the measured matrix-product limit."""
    result = load(record)
    rows = [r for r in result["results"] if models is None or r["model"] in models]
    owt = {(r["mode"], r["dtype"]): r["images_per_s"]["median"]
           for r in result["results"] if r["model"] == "alexnet_owt"}  # fmt: skip

    def versus(r):
        base = owt.get((r["mode"], r["dtype"]))
        return None if base is None else r["images_per_s"]["median"] / base

    return table(rows, [
        ("model", "model", "{}"), ("mode", "mode", "{}"), ("dtype", "dtype", "{}"),
        ("images/s (median)", "images_per_s.median", "{:.1f}"),
        ("min", "images_per_s.min", "{:.1f}"), ("max", "images_per_s.max", "{:.1f}"),
        ("vs alexnet_owt", versus, "{:.2f}x"),
        ("of limit", lambda r: r.get("fraction_of_limit"), "{:.0%}"),
    ])  # fmt: skip


def minutes(seconds: float) -> str:
    """A duration as "3 h 28 min", "5 min 41 s" or "41 s"."""
    if round(seconds) >= 3600:  # to the nearest minute
        h, m = divmod(round(seconds / 60), 60)
        return f"{h} h {m:02d} min"
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def reach(run: str, thresholds: Sequence[float], names: Sequence[str] | None = None) -> str:
    """Figure 1's measure for each variant of an ablation: epochs until the training error
    first reaches each threshold (interpolated on the runs' curves, mean +- std over
    seeds), the last epoch's training and test error and the epochs run; then a row of
    the second variant's epochs over the first's ("over Nx" where the second never got
    there: its last epoch over the first's time)."""
    from alexnet.studies.ablate import epochs_to_threshold

    result = load(f"{run}/ablate.json")
    chance = result.get("chance_error")
    header = ["", *(f"epochs to {100 * t:g}%" if i == 0 else f"to {100 * t:g}%"
                    for i, t in enumerate(thresholds)),
              "final training error", "final test error", "epochs run"]  # fmt: skip
    times: list[list[list[float | None]]] = []
    rows = []
    for i, variant in enumerate(result["variants"]):
        curves = [[tuple(p) for p in c] for c in variant["train_curves"]]
        runs = [[epochs_to_threshold(c, t, chance) for c in curves] for t in thresholds]
        times.append(runs)
        cells = [spread(r, 1.0, 2, "") if None not in r else "not reached" for r in runs]
        rows.append([names[i] if names else variant["variant"], *cells,
                     summary(variant["train_top1_error"]), summary(variant["val_top1_error"]),
                     summary(variant["epochs"], 1.0, 0, "")])  # fmt: skip
    ratio = []
    for first, second, variant in zip(times[0], times[1], result["variants"][1:2] * len(thresholds),
                                       strict=True):  # fmt: skip
        if None in first:
            ratio.append("")
        elif None not in second:
            ratio.append(f"**{statistics.fmean(second) / statistics.fmean(first):.1f}x**")
        else:
            ratio.append(f"over {variant['epochs']['mean'] / statistics.fmean(first):.0f}x")
    names = names or [v["variant"] for v in result["variants"]]
    rows.append([f"{names[1]} / {names[0]}", *ratio, "", "", ""])
    return markdown(header, rows, [False, *([True] * (len(header) - 1))])


def _median(result: dict, model: str, mode: str, dtype: str) -> float | None:
    for r in result["results"]:
        if (r["model"], r["mode"], r["dtype"]) == (model, mode, dtype):
            return r["images_per_s"]["median"]
    return None


def bench_versus(runs: Sequence[tuple[str, str]], header: str,
                 cells: Sequence[tuple[str, str]] = (("train", "fp32"), ("train", "bf16"),
                                                     ("infer", "fp32"), ("infer", "bf16")),
                 digits: int | None = None, model: str = "alexnet2012",
                 reference: str | None = None) -> str:  # fmt: skip
    """One row per `alexnet bench model` record (label, path): the network's images/s in
    each (mode, dtype) and, in brackets, its ratio to alexnet_owt's in the same run.
    `reference` labels a last row with alexnet_owt's images/s in the last record. Rates
    of a thousand and more lose their decimal unless `digits` says otherwise."""

    def rate(value: float) -> str:
        places = digits if digits is not None else (0 if value >= 1000 else 1)
        return f"{value:,.{places}f}"

    rows = []
    for label, record in runs:
        result = load(record)
        row = [label]
        for mode, dtype in cells:
            ours = _median(result, model, mode, dtype)
            owt = _median(result, "alexnet_owt", mode, dtype)
            row.append("-" if ours is None else rate(ours)
                       + ("" if owt is None else f" ({ours / owt:.2f}x)"))  # fmt: skip
        rows.append(row)
    if reference:
        result = load(runs[-1][1])
        rows.append([reference, *(rate(_median(result, "alexnet_owt", m, d)) for m, d in cells)])
    titles = [f"{mode} {dtype}" for mode, dtype in cells]
    return markdown([header, *titles], rows, [False, *([True] * len(cells))])


def epoch_label(m: dict) -> str:
    """A metrics line's epoch; an epoch stopped part way (a budget) as its share."""
    if m.get("complete", True):
        return str(m["epoch"])
    whole = (m["step"] - m["epoch_steps"]) / (m["epoch"] - 1)  # steps in a whole epoch
    return f"{m['epoch'] - 1 + m['epoch_steps'] / whole:.1f} (budget)"


def training(run: str, split: str = "val", lr: bool = True) -> str:
    """A run's epochs as its metrics.jsonl records them: training loss and error, the
    validation pass's top-1 and top-5 error (`split` names what validated: "val", "test",
    "held-out"), the learning rate and the training images/s."""
    columns: list[Column] = [
        ("epoch", epoch_label, "{}"), ("train loss", "train_loss", "{:.3f}"),
        ("train error", "train_top1_error", "{:.2%}"),
        (f"{split} top-1", "val_top1_error", "{:.2%}"),
        (f"{split} top-5", "val_top5_error", "{:.2%}"),
    ]  # fmt: skip
    if lr:
        columns.append(("lr", "lr", "{:g}"))
    columns.append(("images/s", "images_per_s", "{:,.0f}"))
    return epochs(run, columns)


def evaluations(rows: Sequence[tuple[str, str]], header: str = "views") -> str:
    """`alexnet eval` records (label, path of eval.json): top-1 and top-5 error and
    accuracy, on how many images."""
    found = [(label, load(record)) for label, record in rows]
    return table(found, [
        (header, lambda r: r[0], "{}"),
        ("top-1 error", lambda r: r[1]["top1_error"], "{:.2%}"),
        ("top-5 error", lambda r: r[1]["top5_error"], "{:.2%}"),
        ("accuracy", lambda r: 1 - r[1]["top1_error"], "{:.2%}"),
        ("images", lambda r: r[1]["images"], "{:,}"),
    ])  # fmt: skip


def runs(rows: Sequence[tuple[str, str, str, str, str]]) -> str:
    """Training runs side by side, each (label, protocol, run folder, eval.json of the
    checkpoint scored, which checkpoint): epochs run, time in training steps (the last
    metrics line's `elapsed_s`: data loading included, validation and checkpoints not),
    and the checkpoint's test error and accuracy."""
    found = []
    for label, protocol, run, record, checkpoint in rows:
        last = load(f"{run}/metrics.jsonl")[-1]
        found.append((label, protocol, last, load(record), checkpoint))
    return table(found, [
        ("run", lambda r: r[0], "{}"), ("protocol", lambda r: r[1], "{}"),
        ("epochs", lambda r: r[2]["epoch"], "{}"),
        ("training steps", lambda r: minutes(r[2]["elapsed_s"]), "{}"),
        ("checkpoint", lambda r: r[4], "{}"),
        ("views", lambda r: r[3]["views"], "{}"),
        ("test top-1 error", lambda r: r[3]["top1_error"], "{:.2%}"),
        ("test accuracy", lambda r: 1 - r[3]["top1_error"], "{:.2%}"),
    ])  # fmt: skip


def transfer_study(record: str) -> str:
    """An `alexnet transfer` study's finished cells, from its transfer.json (the study's
    own Markdown table, the command below it)."""
    from alexnet.studies.transfer_table import table_markdown

    return table_markdown(load(record)).rstrip("\n")


def transfer_compare(record: str) -> str:
    """`alexnet transfer-compare`'s rows from its compare.json: every cell by its source."""
    from alexnet.studies.transfer_table import compare_markdown

    return compare_markdown(load(record)).rstrip("\n")


def pretrainings(rows: Sequence[tuple[str, str]]) -> str:
    """Runs of one recipe side by side, each (label, run folder): epochs run, the epoch the
    held-out images chose and its held-out top-1 error, and that checkpoint's test top-1 and
    top-5 error with the center crop and ten crops (the run's `--test` folders)."""
    found = []
    for label, run in rows:
        lines = load(f"{run}/metrics.jsonl")
        best = min(lines, key=lambda m: m["val_top1_error"])
        center = load(f"{run}/test-val-center/eval.json")
        ten = load(f"{run}/test-val-ten-crop/eval.json")
        found.append((label, lines[-1], best, center, ten))
    return table(found, [
        ("pretraining", lambda r: r[0], "{}"), ("epochs", lambda r: r[1]["epoch"], "{}"),
        ("training steps", lambda r: minutes(r[1]["elapsed_s"]), "{}"),
        ("best epoch", lambda r: r[2]["epoch"], "{}"),
        ("held-out top-1", lambda r: r[2]["val_top1_error"], "{:.2%}"),
        ("test top-1, center", lambda r: r[3]["top1_error"], "{:.2%}"),
        ("test top-5, center", lambda r: r[3]["top5_error"], "{:.2%}"),
        ("test top-1, ten crops", lambda r: r[4]["top1_error"], "{:.2%}"),
        ("test top-5, ten crops", lambda r: r[4]["top5_error"], "{:.2%}"),
    ])  # fmt: skip


def large_batch(record: str, rows: Sequence[tuple[str, Sequence[str]]]) -> str:
    """The large-batch study's summary.json: each row (label, the runs it averages) with
    each run's test top-1 error by seed, their mean, and the mean of the runs' best
    held-out top-1 error."""
    by_name = {r["run"]: r for r in load(record)["runs"]}
    found = [(label, [by_name[name] for name in names]) for label, names in rows]

    def seeds(runs: list[dict]) -> str:
        return ", ".join(f"{r['run'].rsplit('-', 1)[1]}: {r['test_top1_error']:.2%}" for r in runs)

    def mean(key: str) -> Callable[[tuple], float]:
        return lambda row: statistics.fmean(run[key] for run in row[1])

    return table(found, [
        ("setting", lambda r: r[0], "{}"),
        ("runs (seed: test top-1 error)", lambda r: seeds(r[1]), "{}"),
        ("mean test top-1 error", mean("test_top1_error"), "{:.2%}"),
        ("best held-out error", mean("best_held_out_top1_error"), "{:.2%}"),
    ])  # fmt: skip


def bench_train(rows: Sequence[tuple[str, str]], titles: Sequence[str] = ("setting",
                "loader workers", "from the store, images/s", "synthetic, images/s"),
                rate: str = "{:.1f}") -> str:  # fmt: skip
    """`alexnet bench train` records (label, path): the training step's images/s fed from
    the store and from one batch held in memory (medians over rounds), and their ratio;
    `titles` names the first four columns, `rate` formats the rates."""
    found = [(label, load(record)) for label, record in rows]
    label, workers, real, synthetic = titles
    return table(found, [
        (label, lambda r: r[0], "{}"), (workers, lambda r: r[1]["workers"], "{}"),
        (real, lambda r: r[1]["real_median"], rate),
        (synthetic, lambda r: r[1]["synthetic_median"], rate),
        ("ratio", lambda r: r[1]["ratio"], "{:.3f}"),
    ])  # fmt: skip


def bench_data(record: str) -> str:
    """`alexnet bench data`: the views and decoding on one core (median, min, max over
    repeats) and the whole `prepare` command."""
    result = load(record)
    views, decode = result["views_one_core"], result["decode_one_core"]
    rows = [(f"views, 1 core: {views[k]['what']}", views[k]["images_per_s"])
            for k in ("random", "center", "ten-crop")]  # fmt: skip
    side = "x".join(f"{s:.0f}" for s in decode["mean_side"])
    decoders = (("pillow", "Pillow (draft JPEG scaling, antialiased bilinear)"),
                ("pillow_no_draft", "Pillow, draft off"),
                ("opencv", "OpenCV `imdecode` + `INTER_AREA` (for comparison)"))  # fmt: skip
    photos = f"decode {decode['photos']} JPEGs (mean {side}) to 256, 1 core"
    rows += [(f"{photos}, {what}", decode[key]) for key, what in decoders]
    out = [[label, *(f"{s[k]:,.0f}" for k in ("median", "min", "max"))] for label, s in rows]
    p = result["prepare"]
    whole = f"{p['images_per_s']:,.0f} ({p['images_per_s_per_worker']:,.0f} per worker)"
    out.append([f"`prepare`, {p['workers']} workers, {p['images']} images, the whole command",
                whole, "", ""])  # fmt: skip
    header = ["measurement, images/s", "median", "min", "max"]
    return markdown(header, out, [False, True, True, True])


def export_parity(record: str) -> str:
    """tools/export_parity.py: the largest logit difference between ONNX Runtime and the
    package at batch 1 and 8, and how many images' top-5 agree."""
    return table(load(record)["networks"], [
        ("network", lambda r: f"`{r['network']}`", "{}"),
        ("batch 1: largest logit difference", "max_abs_logit_difference.1", "{:.1e}"),
        ("batch 8", "max_abs_logit_difference.8", "{:.1e}"),
        ("top-5 identical", lambda r: f"{r['top5_identical']} of {r['images']}", "{}"),
    ])  # fmt: skip


def runtimes(record: str) -> str:
    """`alexnet bench model --onnxruntime --openvino`: inference images/s of the package
    and of each runtime on the same exported network, with the runtime's over the
    package's."""

    def against(runtime: str) -> Callable[[dict], str | None]:
        def text(r: dict) -> str | None:
            if r.get(f"{runtime}_images_per_s") is None:
                return None
            return (
                f"{r[f'{runtime}_images_per_s']['median']:.1f} ({r[f'{runtime}_vs_package']:.2f}x)"
            )

        return text

    return table(load(record)["runtimes"], [
        ("network", lambda r: f"`{r['model']}`", "{}"), ("dtype", "dtype", "{}"),
        ("batch", "batch", "{}"), ("package", "package_images_per_s.median", "{:.1f}"),
        ("ONNX Runtime", against("onnxruntime"), "{}"), ("OpenVINO", against("openvino"), "{}"),
    ])  # fmt: skip


def inference_packing(record: str) -> str:
    """`tools/inference_packing.py`: the package's inference with its convolutions' weights
    packed once against eager `F.conv2d`, images/s and their ratio, and whether the logits
    were the same bits."""
    return table(load(record)["rows"], [
        ("network", lambda r: f"`{r['model']}`", "{}"), ("dtype", "dtype", "{}"),
        ("batch", "batch", "{}"), ("packed", "packed_images_per_s", "{:.1f}"),
        ("eager", "eager_images_per_s", "{:.1f}"), ("packed / eager", "ratio", "{:.2f}x"),
        ("same logits", lambda r: "yes" if r["same_logits"] else "no", "{}"),
    ])  # fmt: skip


def update_step(record: str) -> str:
    """`tools/update_step.py`: a training step's milliseconds with the update as four torch
    passes, as one pass, and (bf16) with the weights' bf16 copies, and the speed-up."""
    return table(load(record)["rows"], [
        ("dtype", "dtype", "{}"), ("update", "variant", "{}"),
        ("ms a step (median)", "ms_per_step", "{:.1f}"), ("min", "min_ms", "{:.1f}"),
        ("max", "max_ms", "{:.1f}"), ("vs four passes", "speedup_over_four_passes", "{:.3f}x"),
    ])  # fmt: skip


def against_inference(rows: Sequence[tuple[str, str]], what: str, header: str) -> str:
    """`alexnet bench predict` or `bench features` records (label, path): the command's
    images/s (`what`: "predict" or "features") against the same network's inference on
    prepared inputs in the same rounds, and their ratio."""
    found = [(label, load(record)) for label, record in rows]
    return table(found, [
        (header, lambda r: r[0], "{}"),
        (f"{what}, images/s", lambda r: r[1][f"{what}_images_per_s"]["median"], "{:.1f}"),
        ("inference on prepared inputs", lambda r: r[1]["inference_images_per_s"]["median"],
         "{:.1f}"),
        (f"{what} / inference", lambda r: r[1][f"{what}_vs_inference"], "{:.2f}"),
    ])  # fmt: skip


def epoch_times(rows: Sequence[tuple[str, str]]) -> str:
    """One epoch of a recipe per host, each (host, run folder): the run's precision, its
    training images/s, the seconds in training steps and with validation and checkpoint
    (`elapsed_s` and `wall_s` of the first metrics line)."""
    import yaml

    found = []
    for host, run in rows:
        config = yaml.safe_load(path(f"{run}/config.yaml").read_text())
        found.append((host, config["run"]["precision"], load(f"{run}/metrics.jsonl")[0]))
    return table(found, [
        ("host", lambda r: r[0], "{}"), ("precision", lambda r: r[1], "{}"),
        ("training, images/s", lambda r: r[2]["images_per_s"], "{:.1f}"),
        ("training", lambda r: r[2]["elapsed_s"], "{:.1f} s"),
        ("with validation and checkpoint", lambda r: r[2]["wall_s"], "{:.1f} s"),
    ])  # fmt: skip


def render(rows: Sequence[tuple[str, str]]) -> str:
    """`alexnet bench train` records (label, path) of one recipe on a GPU machine: where the
    views are rendered, loader workers, images/s from the store and synthetic, ratio."""
    titles = ("`data.render`", "workers", "from the store, images/s", "synthetic")
    return bench_train(rows, titles, rate="{:,.0f}")


def color_specificity(record: str) -> str:
    """`alexnet figures filters`: each tower's conv1 kernels' color specificity (the share
    of a kernel's variance between its color channels), mean, median and range."""
    result = load(record)
    per_kernel = result["color_specificity_per_kernel"]
    rows, start = [], 0
    for tower, s in result["color_specificity"].items():
        kernels = per_kernel[start : start + s["kernels"]]
        start += s["kernels"]
        rows.append([tower, f"{s['mean']:.3f}", f"{s['median']:.3f}",
                     f"{min(kernels):.2f}-{max(kernels):.2f}"])  # fmt: skip
    n = result["color_specificity"]["tower A"]["kernels"]
    return markdown(["", "mean", "median", f"range over {n} kernels"], rows,
                    [False, True, True, True])  # fmt: skip


def neighbors(record: str) -> str:
    """`alexnet neighbors`: each search's bytes per image, precision at k and queries/s."""
    result = load(record)
    return table(result["table"], [
        ("search", lambda r: f"{r['search']} ({r['dimensions']} values)"
         if "Euclidean" in r["search"] else r["search"], "{}"),
        ("bytes per image", "bytes_per_image", "{:,}"),
        (f"precision at {result['k']}", "precision_at_8", "{:.3f}"),
        ("queries/s", "queries_per_s", "{:,.0f}"),
    ])  # fmt: skip


def _span(values: Sequence[float], digits: int = 1) -> str:
    low, high = min(values), max(values)
    return f"{low:.{digits}f}" if low == high else f"{low:.{digits}f}-{high:.{digits}f}"


def serve_load(records: Sequence[str]) -> str:
    """`alexnet bench serve`'s closed-loop load, one row per record: answered/s in each
    round, latency, errors, the batches the server formed, the network alone in the same
    rounds, and the median ratios."""
    rows = []
    for record in records:
        result = load(record)
        rounds = result["load"]["rounds"]
        ref = result["reference_images_per_s"]
        clients = result["load"]["clients"]
        rows.append([
            str(clients), ", ".join(f"{r['answered_per_s']:.1f}" for r in rounds),
            f"{_span([r['latency_ms']['p50'] for r in rounds])} / "
            f"{_span([r['latency_ms']['p99'] for r in rounds])}",
            str(sum(r["errors"] for r in rounds)),
            _span([r["batches"]["views_per_batch"] for r in rounds]),
            _span([r["batches"]["forward_ms"] for r in rounds]),
            ", ".join(f"{v:.1f}" for v in ref["batch_128"]),
            f"{result['load']['vs_batch_128']:.2f}", f"{result['load'][f'vs_batch_{clients}']:.2f}",
        ])  # fmt: skip
    header = ["clients", "answered/s (rounds)", "p50 / p99 latency, ms", "errors",
              "views a batch", "a forward pass, ms", "network at batch 128, images/s",
              "served / batch 128 (median)", "served / batch of clients (median)"]  # fmt: skip
    return markdown(header, rows, [False, *([True] * (len(header) - 1))])


def serve_overload(records: Sequence[str]) -> str:
    """`alexnet bench serve`'s phases past capacity, one row per record and phase."""
    rows = []
    for record in records:
        result = load(record)
        o = result["overload"]
        who = (f"{result['load']['clients']}: {o['capacity_per_s']}/s, p99 "
               f"{o['unloaded_p99_ms']} ms; {o['queue']}")  # fmt: skip
        for p in o["phases"]:
            offered = p.get("offered_vs_capacity")
            cpu = p["cpu_seconds"]
            rows.append([
                who, p["phase"],
                "as answered" if offered is None else f"{offered * o['capacity_per_s']:,.0f}",
                f"{p['answered_per_s']:.1f}", f"{p['vs_capacity']:.2f}",
                f"{p['latency_ms']['p99']:.1f} ({p['admitted_p99_vs_unloaded']:.2f}x)",
                f"{p['refused_503']:,}",
                f"{p['batches']['views_per_batch']:.2f} / {p['batches']['forward_ms']:.1f}",
                f"{cpu['server']:.2f} / {cpu['clients']:.2f} s in {p['seconds']:.2f} s",
            ])  # fmt: skip
    header = ["clients: capacity, unloaded p99; queue", "phase", "offered/s", "answered/s",
              "answered / capacity", "admitted p99, ms", "refused (503)",
              "views a batch / a forward pass, ms", "CPU, server / clients"]  # fmt: skip
    return markdown(header, rows, [False, False, *([True] * (len(header) - 2))])


def allreduce(record: str, which: Callable[[dict], bool] | None = None) -> str:
    """tools/allreduce_cost.py: the bytes each rank sends per step and the time they take
    over each link, by ranks, gradient precision and which parameters are all-reduced."""
    result = load(record)
    links = list(result["links_gbit_per_s"])
    rows = [r for r in result["rows"] if which is None or which(r)]
    return table(rows, [
        ("ranks", "ranks", "{}"), ("gradients", "gradients", "{}"),
        ("parameters", "parameters", "{}"),
        ("sent per rank, MB", lambda r: r["bytes_sent_per_rank"] / 1e6, "{:,.1f}"),
        *((f"{link}, ms", lambda r, k=link: 1000 * r["seconds"][k], "{:,.1f}") for link in links),
    ])  # fmt: skip


def parameters(model: str, layers: Sequence[str]) -> str:
    """A network's parameters in each of `layers` and their share of the whole, counted on
    the network `alexnet.create_model` builds (a count, not a measurement)."""
    from alexnet.models.registry import create_model

    network = create_model(model)
    total = sum(p.numel() for p in network.parameters())
    counts = [(name, sum(p.numel() for p in network.get_submodule(name).parameters()))
              for name in layers]  # fmt: skip
    return table(counts, [("layer", lambda r: r[0], "{}"), ("parameters", lambda r: r[1], "{:,}"),
                          ("share", lambda r: r[1] / total, "{:.2%}")])  # fmt: skip


def variants(run: str) -> list[dict]:
    """An ablation's variants from its ablate.json, each with its top-1 and top-5 error in
    points (`top1`, `top5`: means; `top1_text`: mean +- std in %) and its top-1 minus the
    first variant's, seed by seed (`minus`, points)."""
    result = load(f"{run}/ablate.json")
    first = result["variants"][0]["val_top1_error_by_seed"]
    found = []
    for v in result["variants"]:
        seeds = v["val_top1_error_by_seed"]
        found.append({
            "name": v["variant"], "top1": 100 * v["val_top1_error"]["mean"],
            "top5": 100 * v["val_top5_error"]["mean"], "top1_text": summary(v["val_top1_error"]),
            "train": 100 * v["train_top1_error"]["mean"],
            "minus": [100 * (seeds[k] - first[k]) for k in seeds if k in first],
        })  # fmt: skip
    return found


def reach_ratio(run: str, threshold: float, slow: int = 1, fast: int = 0) -> float:
    """How many times the epochs variant `slow` takes to reach a training error, against
    variant `fast` (means over seeds, interpolated on the runs' curves as Figure 1 reads)."""
    from alexnet.studies.ablate import epochs_to_threshold

    result = load(f"{run}/ablate.json")

    def mean_epochs(variant: dict) -> float:
        curves = [[tuple(p) for p in c] for c in variant["train_curves"]]
        found = [epochs_to_threshold(c, threshold, result.get("chance_error")) for c in curves]
        return statistics.fmean(found)

    return mean_epochs(result["variants"][slow]) / mean_epochs(result["variants"][fast])


#: ILSVRC-2012's images: training and validation (the paper's section 2).
IMAGENET_IMAGES = {"train": 1_281_167, "val": 50_000}


def imagenet_store(side: int = 256) -> str:
    """The store ILSVRC-2012 prepares into: its images at side x side x 3 bytes each."""
    each = side * side * 3
    rows = [[split, f"{n:,}", f"{n * each / 1e9:,.1f} GB"] for split, n in IMAGENET_IMAGES.items()]
    total = sum(IMAGENET_IMAGES.values())
    rows.append(["both", f"{total:,}", f"{total * each / 1e9:,.1f} GB"])
    return markdown(["split", "images", f"pixels at {side}x{side}"], rows, [False, True, True])


def imagenet_prepare(record: str, workers: Sequence[int]) -> str:
    """`alexnet data prepare`'s time for ILSVRC-2012 at the rate per worker that `alexnet
    bench data` measured for the whole command (listing, decoding, writing, statistics),
    assuming it scales with workers, as a pool of independent decoders does until the
    disk is the limit."""
    per_worker = load(record)["prepare"]["images_per_s_per_worker"]
    total = sum(IMAGENET_IMAGES.values())
    rows = [[str(w), f"{per_worker * w:,.0f}", minutes(total / (per_worker * w))] for w in workers]
    return markdown(["workers (cores)", "images/s", "prepare"], rows, [False, True, True])


def imagenet_epochs(rows: Sequence[tuple[str, str, str, str]], epochs: int = 90) -> str:
    """An epoch of ILSVRC-2012's training images and the paper's 90, at the training rate
    `alexnet bench model` measured, each (label, record, model, dtype): the network alone,
    the data kept up with and the validation passes left out."""
    found = []
    for label, record, model, dtype in rows:
        rate = _median(load(record), model, "train", dtype)
        epoch = IMAGENET_IMAGES["train"] / rate
        found.append([label, f"{rate:,.0f}", minutes(epoch), minutes(epochs * epoch)])
    header = ["where", "training, images/s", "an epoch", f"{epochs} epochs"]
    return markdown(header, found, [False, True, True, True])


def malformed(record: str) -> str:
    """tools/serve_malformed.py: how many malformed requests got each status, how many got
    another than the one expected, and the server's memory across the two rounds."""
    result = load(record)
    statuses = sorted(result["statuses"], key=int)
    memory = result["memory"]
    row = [str(result["cases"]), *(str(result["statuses"][s]) for s in statuses),
           str(result["server_errors_5xx"]), str(result["not_as_expected"]),
           f"{memory['start_mib']} -> {memory['after_round_1_mib']} -> "
           f"{memory['after_round_2_mib']} MiB"]  # fmt: skip
    header = ["cases", *statuses, "5xx", "not the expected status",
              "resident memory, start -> round 1 -> round 2"]  # fmt: skip
    return markdown(header, [row], [True] * len(header))


def versus_torchvision(columns: Sequence[tuple[str, str, str]], model: str = "alexnet2012") -> str:
    """Training and inference images/s of the network, each column (title, `alexnet bench
    model` record, dtype), with the ratio to alexnet_owt's in the same run."""
    rows = []
    for mode, name in (("train", "training"), ("infer", "inference")):
        row = [name]
        for _, record, dtype in columns:
            result = load(record)
            ours = _median(result, model, mode, dtype)
            owt = _median(result, "alexnet_owt", mode, dtype)
            rate = f"{ours:,.0f}" if ours >= 1000 else f"{ours:.1f}"
            row.append(f"{rate} ({ours / owt:.2f}x)")
        rows.append(row)
    return markdown(["", *(c[0] for c in columns)], rows, [False, *([True] * len(columns))])
