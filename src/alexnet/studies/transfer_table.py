"""The transfer study's tables: each finished cell's test errors, their mean and spread
over seeds (`summarize`), as text, Markdown and a plot; and several studies of one recipe
from different pretrainings side by side (`compare`). They read a study's OUT (or its
committed records) and write nothing but their results, so `alexnet transfer --table-only`
and `alexnet transfer-compare` run them on records alone.
"""

from __future__ import annotations

import json
import shlex
import statistics
from pathlib import Path

from alexnet.core.errors import UserError

METHODS = ("scratch", "probe", "fc8", "all")


#: where the work that stands on a source records it: a file pattern in OUT, the keys to
#: its sha256 and the keys to the file's name
SOURCE_RECORDS = (
    ("features-*/features.json", ("sha256",), ("checkpoint",)),
    ("probe/n-*/seed-*/probe.json", ("source", "sha256"), ("source", "file")),
    ("fc8/n-*/seed-*/version.json", ("init_from", "sha256"), ("init_from", "file")),
    ("all/n-*/seed-*/version.json", ("init_from", "sha256"), ("init_from", "file")),
)


def _lookup(value, keys):
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def stands_on(out: Path) -> dict[str, str | None]:
    """The work in OUT that stands on a source (the cached features, probe cells, fc8 and
    all cells, finished or stopped): its folder relative to OUT -> the sha256 it records
    (None: it records none)."""
    found = {}
    for pattern, keys, _ in SOURCE_RECORDS:
        for path in sorted(Path(out).glob(pattern)):
            found[str(path.parent.relative_to(out))] = _lookup(json.loads(path.read_text()),
                                                               keys)  # fmt: skip
    return found


def recorded_file(out: Path) -> str | None:
    """The source's file name as the first cell that stands on it records it."""
    for pattern, _, keys in SOURCE_RECORDS:
        for path in sorted(Path(out).glob(pattern)):
            if name := _lookup(json.loads(path.read_text()), keys):
                return str(name)
    return None


def differ(theirs: dict, ours: dict, prefix: str = "") -> str:
    """The keys where two recipes differ, with both values: 'data.holdout 10, not 5000'."""
    said = []
    for key in sorted(set(theirs) | set(ours)):
        a, b = theirs.get(key), ours.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            if inner := differ(a, b, f"{prefix}{key}."):
                said.append(inner)
        elif a != b:
            said.append(f"{prefix}{key} {a!r}, not {b!r}")
    return "; ".join(said)


def _spread(values: list[float]) -> dict:
    if not values:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else None,
            "min": min(values), "max": max(values), "n": len(values)}  # fmt: skip


def _test_record(out: Path, method: str, n: int, seed: int, split: str) -> tuple[Path, str]:
    """Where a cell's test errors are written once it is done, and the views tested."""
    cell = Path(out) / method / f"n-{n}" / f"seed-{seed}"
    if method == "probe":
        return cell / "probe.json", "center"
    return cell / f"test-{split}-ten-crop" / "eval.json", "ten-crop"


def cell_result(out: Path, method: str, n: int, seed: int, split: str) -> dict | None:
    """A finished cell's test errors: ten crops for a trained network, the center for the
    probe; None while the cell is not done."""
    path, views = _test_record(out, method, n, seed, split)
    if not path.is_file():
        return None
    test = json.loads(path.read_text())
    test = test["test"] if method == "probe" else test
    return {"method": method, "per_class": n, "seed": seed, "views": views,
            "top1_error": test["top1_error"], "top5_error": test["top5_error"]}  # fmt: skip


def finished_grid(out: Path, methods, per_class, seeds, split: str = "val") -> tuple:
    """The methods, N and seeds asked, widened by those of the cells finished in OUT, so
    that a table of them leaves out no finished cell: as asked when no cell lies outside
    them, otherwise the whole grid in METHODS' order and by number."""
    found: tuple[set, set, set] = (set(methods), set(per_class), set(seeds))
    for cell in Path(out).glob("*/n-*/seed-*"):
        method, n, seed = cell.parent.parent.name, cell.parent.name[2:], cell.name[5:]
        if method not in METHODS or not (n.isdigit() and seed.isdigit()):
            continue
        if _test_record(out, method, int(n), int(seed), split)[0].is_file():  # done
            for values, value in zip(found, (method, int(n), int(seed)), strict=True):
                values.add(value)
    if found == (set(methods), set(per_class), set(seeds)):
        return list(methods), list(per_class), list(seeds)
    return sorted(found[0], key=METHODS.index), sorted(found[1]), sorted(found[2])


def widened(command: str, methods, per_class, seeds) -> str:
    """`command` with its --methods, --per-class and --seeds set to these (added where
    the command left them to their defaults)."""
    words = shlex.split(command)
    for flag, values in (("--methods", methods), ("--per-class", per_class), ("--seeds", seeds)):
        value = ",".join(str(v) for v in values)
        for i, word in enumerate(words):
            if word == flag and i + 1 < len(words):
                words[i + 1] = value
                break
            if word.startswith(flag + "="):
                words[i] = f"{flag}={value}"
                break
        else:
            words += [flag, value]
    return shlex.join(words)


def summarize(out: Path, methods, per_class, seeds, split: str = "val") -> dict:
    """Each finished cell's test errors, and their mean and spread over seeds."""
    cells, table = [], []
    for method in methods:
        for n in per_class:
            found = [c for s in seeds if (c := cell_result(out, method, n, s, split))]
            cells += found
            table.append({
                "method": method, "per_class": n, "seeds": len(found),
                "top1_error": _spread([f["top1_error"] for f in found]),
                "top5_error": _spread([f["top5_error"] for f in found]),
            })  # fmt: skip
    return {"cells": cells, "table": table}


def _percent(spread: dict, plus_minus: str = "+-") -> str:
    """A row's mean (and standard deviation, given two seeds or more) in percent."""
    if spread["mean"] is None:
        return "-"
    text = f"{100 * spread['mean']:.2f}"
    return text + (f" {plus_minus} {100 * spread['std']:.2f}" if spread["std"] is not None else "")


def table_text(result: dict) -> str:
    lines = [f"{'method':8} {'per class':>9} {'seeds':>5} {'top-1 error %':>16} "
             f"{'top-5 error %':>16}"]  # fmt: skip
    for row in result["table"]:
        top1, top5 = _percent(row["top1_error"]), _percent(row["top5_error"])
        lines.append(f"{row['method']:8} {row['per_class']:>9} {row['seeds']:>5} "
                     f"{top1:>16} {top5:>16}")  # fmt: skip
    return "\n".join(lines)


def table_markdown(result: dict) -> str:
    """The finished rows as a Markdown table, in percent: mean ± sample standard deviation
    over the seeds, each seed's top-1 error, the views tested; the study's command below."""

    lines = ["| method | images per class | views | seeds | top-1 error, % | top-5 error, % "
             "| seeds' top-1 error, % |",
             "| --- | ---: | --- | ---: | ---: | ---: | --- |"]  # fmt: skip
    for row in result["table"]:
        if not row["seeds"]:
            continue
        cells = [c for c in result["cells"]
                 if (c["method"], c["per_class"]) == (row["method"], row["per_class"])]  # fmt: skip
        each = ", ".join(f"{100 * c['top1_error']:.2f} (seed {c['seed']})" for c in cells)
        lines.append(f"| {row['method']} | {row['per_class']} | {cells[0]['views']} "
                     f"| {row['seeds']} | {_percent(row['top1_error'], '±')} "
                     f"| {_percent(row['top5_error'], '±')} | {each} |")  # fmt: skip
    if result.get("command"):
        lines += ["", f"`{result['command']}`"]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    """Top-1 accuracy against images per class (log scale), a line per method, each seed
    a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(6, 4))
    for method in dict.fromkeys(r["method"] for r in result["table"]):
        rows = [r for r in result["table"] if r["method"] == method and r["seeds"]]
        if not rows:
            continue
        xs = [r["per_class"] for r in rows]
        ys = [100 * (1 - r["top1_error"]["mean"]) for r in rows]
        (line,) = ax.plot(xs, ys, marker="o", label=method)
        dots = [c for c in result["cells"] if c["method"] == method]
        ax.scatter([c["per_class"] for c in dots], [100 * (1 - c["top1_error"]) for c in dots],
                   color=line.get_color(), alpha=0.35, s=12)  # fmt: skip
    ax.legend()
    _save_accuracy_plot(figure, ax, {r["per_class"] for r in result["table"] if r["seeds"]}, path)


def _save_accuracy_plot(figure, ax, counts, path: Path) -> None:
    """The axes of accuracy against images per class (a log scale ticked at the grid's N,
    not powers of ten), then the figure saved and closed."""
    import matplotlib.pyplot as plt

    counts = sorted(counts)
    ax.set_xscale("log")
    ax.set_xticks(counts, [str(n) for n in counts])
    ax.minorticks_off()
    ax.set_xlabel("training images per class")
    ax.set_ylabel("top-1 accuracy on the test images, %")
    ax.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def study_source(folder: str | Path, table: dict) -> str | None:
    """The sha256 of the source a study's folder stands on: its transfer.json's (`table`),
    or, for a table written before transfer.json recorded it, the one its cells record.
    Refused when the cells record more than one (no table of that folder is one source's)."""
    folder = Path(folder)
    if table.get("source_sha256"):
        return table["source_sha256"]
    recorded = {sha for sha in stands_on(folder).values() if sha}
    if len(recorded) > 1:
        raise UserError(f"{folder}'s cells stand on more than one source: "
                         f"{', '.join(sorted(sha[:16] for sha in recorded))}")  # fmt: skip
    return next(iter(recorded), None)


def compare(studies: dict[str, str | Path], command: str | None = None) -> dict:
    """The tables of several studies of one recipe, each from another source (LABEL -> a
    study's folder or its committed records), as one table: for each method and N, a row
    from each study that has it, with the source it stands on (the scratch rows stand on
    none). A row the same as one before it, cell for cell, is listed once: the scratch
    cells restored into a second study's folder are not a second measurement. The studies'
    recipes may differ in the network (model.name: alexnet2012_6conv beside alexnet2012,
    each row naming its own) and nothing else: rows of other data, rates or schedules would
    not measure the same thing."""
    if not studies:
        raise UserError("no study to compare: give LABEL=FOLDER once or more")
    tables, sources = {}, {}
    for label, folder in studies.items():
        if not (Path(folder) / "transfer.json").is_file():
            raise UserError(f"{folder} holds no transfer.json: not a transfer study")
        tables[label] = json.loads((Path(folder) / "transfer.json").read_text())
        sources[label] = study_source(folder, tables[label])
    first, *_ = tables
    networks = {label: _lookup(table.get("recipe"), ("model", "name")) for label, table in
                tables.items()}  # fmt: skip
    for label, table in tables.items():
        theirs, ours = _but_network(table.get("recipe")), _but_network(tables[first].get("recipe"))
        if theirs != ours:
            raise UserError(
                f"{label} ({studies[label]}) is a study of another recipe than "
                f"{first}'s ({differ(theirs, ours)}): their rows do not measure the same thing"
            )
    rows, seen = [], []
    numbers = sorted({c["per_class"] for t in tables.values() for c in t["cells"]})
    for method in METHODS:
        for n in numbers:
            for label, table in tables.items():
                cells = [{k: c[k] for k in ("seed", "views", "top1_error", "top5_error")}
                         for c in table["cells"]
                         if (c["method"], c["per_class"]) == (method, n)]  # fmt: skip
                if not cells or (method, n, networks[label], cells) in seen:
                    continue
                seen.append((method, n, networks[label], cells))
                rows.append({
                    "method": method, "per_class": n, "network": networks[label],
                    "study": None if method == "scratch" else label,
                    "source_sha256": None if method == "scratch" else sources[label],
                    "views": cells[0]["views"], "seeds": len(cells),
                    "top1_error": _spread([c["top1_error"] for c in cells]),
                    "top5_error": _spread([c["top5_error"] for c in cells]),
                    "cells": cells,
                })  # fmt: skip
    return {
        "studies": {label: {"folder": str(studies[label]), "source_sha256": sources[label],
                            "network": networks[label], "command": tables[label].get("command")}
                    for label in tables},
        "recipe": tables[first].get("recipe"), "rows": rows, "command": command,
    }  # fmt: skip


def _but_network(recipe: dict | None) -> dict:
    """A recipe without its model.name: the one key compared studies may differ in."""
    recipe = json.loads(json.dumps(recipe or {}))
    recipe.get("model", {}).pop("name", None)
    return recipe


def _named_source(label: str | None, digest: str | None) -> str:
    if label is None:
        return "none"
    return f"{label} ({digest[:12]})" if digest else f"{label} (no sha256 recorded)"


def compare_markdown(result: dict) -> str:
    """compare()'s rows as a Markdown table in percent, each row's source named by its label
    and the first 12 digits of its sha256 (and its network, where the studies' differ); each
    study's command below, then the comparison's."""
    several = len({study["network"] for study in result["studies"].values()}) > 1
    lines = ["| method | images per class |" + (" network |" if several else "")
             + " source | views | seeds | top-1 error, % | top-5 error, % "
             "| seeds' top-1 error, % |",
             "| --- | ---: |" + (" --- |" if several else "")
             + " --- | --- | ---: | ---: | ---: | --- |"]  # fmt: skip
    for row in result["rows"]:
        each = ", ".join(f"{100 * c['top1_error']:.2f} (seed {c['seed']})" for c in row["cells"])
        network = f"| {row['network']} " if several else ""
        lines.append(f"| {row['method']} | {row['per_class']} {network}"
                     f"| {_named_source(row['study'], row['source_sha256'])} | {row['views']} "
                     f"| {row['seeds']} | {_percent(row['top1_error'], '±')} "
                     f"| {_percent(row['top5_error'], '±')} | {each} |")  # fmt: skip
    lines.append("")
    for label, study in result["studies"].items():
        lines.append(f"- {_named_source(label, study['source_sha256'])}: `{study['folder']}`"
                     + (f", from `{study['command']}`" if study["command"] else ""))  # fmt: skip
    if result.get("command"):
        lines += ["", f"`{result['command']}`"]
    return "\n".join(lines) + "\n"


def compare_plot(result: dict, path: Path) -> None:
    """Top-1 accuracy against images per class (log scale): a color per method, a line
    style per source, each seed a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dashes = ["-", "--", ":", "-."]
    styles = {label: dashes[i % len(dashes)] for i, label in enumerate(result["studies"])}
    networks = list(dict.fromkeys(study["network"] for study in result["studies"].values()))
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]  # ten colors, four methods
    colors = {method: palette[i] for i, method in enumerate(METHODS)}
    figure, ax = plt.subplots(figsize=(7, 4.5))
    # a line per source for the pretrained methods; the scratch rows, one per network
    lines = dict.fromkeys((r["method"], r["study"], r["network"]) for r in result["rows"])
    for method, label, network in lines:
        rows = [r for r in result["rows"]
                if (r["method"], r["study"], r["network"]) == (method, label, network)]  # fmt: skip
        xs = [r["per_class"] for r in rows]
        style = styles[label] if label else dashes[networks.index(network) % len(dashes)]
        name = ", ".join([method, *([label] if label else []),
                          *([network] if len(networks) > 1 else [])])  # fmt: skip
        ax.plot(xs, [100 * (1 - r["top1_error"]["mean"]) for r in rows], marker="o",
                color=colors[method], linestyle=style, label=name)  # fmt: skip
        dots = [(r["per_class"], c["top1_error"]) for r in rows for c in r["cells"]]
        ax.scatter([x for x, _ in dots], [100 * (1 - e) for _, e in dots],
                   color=colors[method], alpha=0.35, s=12)  # fmt: skip
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    _save_accuracy_plot(figure, ax, {r["per_class"] for r in result["rows"]}, path)
