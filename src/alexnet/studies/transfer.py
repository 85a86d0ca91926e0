"""`alexnet transfer`: how well a network pretrained on some classes serves others, with few
or many images of them (the design of Yosinski et al. 2014, "How transferable are features
in deep neural networks?", who split ImageNet's classes into halves A and B; the paper's own
"1 CNN*" pretrains on more classes and fine-tunes, section 6).

A recipe for the B classes (data.class_ids, a holdout of their training images for the
plateau rule and best.pt, their validation images as the test of record) and a checkpoint
pretrained on A are given. For each number of images per class N (data.per_class, the
images drawn from those the holdout left, nested across N) and each seed S, four ways:

- `scratch`: the recipe from its own initialization;
- `probe`: a linear probe (alexnet.evaluate.probe) on the source's fc7 features of the same
  N images per class, tested on the validation images' (center crops: a probe has no
  crops to average);
- `fc8`: the source's weights, fc8 afresh (model.reinit), every other layer frozen;
- `all`: the source's weights, fc8 afresh, every layer trained, at a tenth of the recipe's
  rate with fc8 at ten times that (Caffe's fine-tuning convention: optim.layer_lr_mult).

Each training cell is an ordinary run in OUT/METHOD/n-N/seed-S, tested at its end on the
validation images with ten crops and the center (`alexnet train --test`); a cell whose test
is written is kept when the study runs again, one that was stopped is resumed, so the study
can be stopped and started at will. Every cell that stands on the source (probe, fc8, all, and
the cached fc7 features) records the source's sha256, and the study refuses an OUT holding
such work from other weights: a table never mixes two pretrainings. OUT/transfer.json holds
every finished cell and the table (mean and spread over seeds of the ten-crop top-1 and
top-5 error), OUT/transfer.md that table in Markdown with each seed's error and the command,
OUT/transfer.png the top-1 accuracy against images per class; all three are written again
after each cell. They cover every cell finished in OUT, not only the methods, N and seeds
asked this time: a study run again for a few cells (`--methods scratch --per-class 450`)
writes the whole table, its command widened to the grid that reproduces it.

The same command may run several times at once on one OUT (on one machine, or on several
sharing a file system with flock, as NFS has): each cell is locked while it runs
(OUT/.claims; a killed study's locks go with it), a study passes over the cells another
holds, and one extraction of the features serves them all.

An OUT lost with its machine is not the study lost: `restore` puts the finished cells'
committed records (tools/transfer_records.sh's copy, without checkpoints) back into a new
OUT, where they count as finished, so the study runs only the cells that are left; and
`table_only` writes the table of the finished cells without running any, for a study whose
cells ran in more than one place.
"""

from __future__ import annotations

import json
import shlex
import statistics
from pathlib import Path

import numpy as np

from alexnet.core.errors import UserError
from alexnet.core.files import atomic_write, atomic_write_json, held
from alexnet.train.config import TrainConfig, from_dict

METHODS = ("scratch", "probe", "fc8", "all")
#: fine-tuning everything: the recipe's rate times this, fc8's times FC8_MULT (Caffe's
#: flickr_style example: base_lr 0.001 against 0.01, fc8 at lr_mult 10)
FINE_TUNE_RATE = 0.1
FC8_MULT = 10.0
#: OUT's folder of the locks by which studies running at once on one OUT share its cells
CLAIMS = ".claims"


def cell_config(recipe: TrainConfig, method: str, n: int, seed: int, source: str,
                layers: list[str]) -> TrainConfig:  # fmt: skip
    """The recipe for one training cell: `layers` are the network's parameter layers."""
    values = recipe.to_dict()
    values["data"] = {**values["data"], "per_class": n, "per_class_seed": seed}
    values["run"] = {**values["run"], "seed": seed}
    if method in ("fc8", "all"):
        values["run"]["init_from"] = source
        values["model"] = {**values["model"], "reinit": ["fc8"]}
    if method == "fc8":
        values["optim"] = {**values["optim"], "freeze": [x for x in layers if x != "fc8"]}
    if method == "all":
        values["optim"] = {
            **values["optim"],
            "lr": values["optim"]["lr"] * FINE_TUNE_RATE,
            "layer_lr_mult": {"fc8": FC8_MULT},
        }
    return from_dict(values)


def parameter_layers(recipe: TrainConfig) -> list[str]:
    from alexnet.models.registry import create_model

    model = create_model(recipe.model_name, num_classes=2, **recipe.model_options)
    return list(dict.fromkeys(name.split(".")[0] for name, _ in model.named_parameters()))


def probe_rows(recipe: TrainConfig, n: int, seed: int) -> np.ndarray:
    """The rows of the B training features (`alexnet features --class-ids`, in store order)
    of the images a training cell with N per class and seed S trains on: chosen as the
    trainer chooses them (alexnet.train.data.choose_images)."""
    from dataclasses import replace

    from alexnet.data.store import Store
    from alexnet.train.data import choose_images

    store = Store(recipe.data.store)
    choice = choose_images(store, replace(recipe.data, per_class=n, per_class_seed=seed), seed)
    labels = store.split(recipe.data.train_split).labels
    pool = np.flatnonzero(choice.label_map[labels] >= 0)  # the features' rows, in order
    return np.searchsorted(pool, choice.train)


def cell_order(methods, per_class, seeds) -> list[tuple[int, str, int]]:
    """(N, method, seed) cheapest first: fewer images per class first, and for each N the
    probe, fc8 (a forward pass and one layer's backward), all, then scratch (the most epochs),
    every seed of a method together. A study stopped on a budget then has whole rows of the
    table, the costly ones missing, not a scatter of cells."""
    cost = {method: rank for rank, method in enumerate(("probe", "fc8", "all", "scratch"))}
    ordered = sorted(methods, key=lambda m: cost.get(m, len(cost)))
    return [(n, m, s) for n in sorted(per_class) for m in ordered for s in seeds]


def run_transfer(
    recipe: TrainConfig,
    source: str | None,
    out: str | Path,
    per_class: list[int],
    seeds: list[int],
    methods: list[str] = METHODS,
    log=print,
    command: str | None = None,
    table_only: bool = False,
) -> dict:
    """Every cell not yet done, each followed by the table of those finished
    (OUT/transfer.json with `command`, the study's command line; OUT/transfer.png).
    `source` (a run or checkpoint) may be None when the methods are scratch alone, or with
    `table_only`: the table of the cells finished in OUT, none run, its source the one
    those cells record (they must record one)."""
    from alexnet.models import checkpoint as ckpt
    from alexnet.models.transfer import sha256

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"no method {', '.join(unknown)}; the methods are {', '.join(METHODS)}")
    if recipe.data.class_ids is None:
        raise UserError("the recipe names no data.class_ids: the classes to transfer to")
    if recipe.data.holdout is None:
        raise UserError("the recipe holds out no images (data.holdout): the cells' schedules "
                         "and best.pt must not look at the test images")  # fmt: skip
    out = Path(out)
    source_file = digest = None
    if source is None and table_only:
        recorded = stands_on(out)
        digests = sorted({sha for sha in recorded.values() if sha}, key=str)
        if len(digests) > 1 or None in recorded.values():
            listed = ", ".join(f"{name} ({sha[:16] if sha else 'no sha256 recorded'})"
                               for name, sha in recorded.items())  # fmt: skip
            raise UserError(f"{out} holds work made from more than one source: {listed}. "
                             "A table mixing them would be no one source's")  # fmt: skip
        digest = digests[0] if digests else None
        source_file = _recorded_file(out) if digest else None
    elif source is None:
        needing = [m for m in methods if m != "scratch"]
        if needing:
            raise UserError(f"{', '.join(needing)} start from the pretrained network: give "
                             "--source (only scratch needs none)")  # fmt: skip
    else:
        source_file = ckpt.find(source, "best") if Path(source).is_dir() else Path(source)
        ckpt.load(source_file)  # a source that cannot be read fails before any work
        digest = sha256(source_file)
        others = made_from_other_weights(out, digest)
        if others:
            listed = ", ".join(f"{name} ({sha[:16] if sha else 'no sha256 recorded'})"
                               for name, sha in others.items())  # fmt: skip
            raise UserError(
                f"{out} holds work made from other weights than {source_file} (sha256 "
                f"{digest[:16]}): {listed}. A table mixing them would be no one source's: "
                "move those folders away, or give another --out"
            )
    out.mkdir(parents=True, exist_ok=True)
    layers = parameter_layers(recipe)

    def tabulate() -> dict:
        # after every cell: a study stopped part way has the table of the cells it finished
        with held(out / CLAIMS / "table", wait=True):  # one writer at a time
            split = recipe.data.val_split
            grid = finished_grid(out, methods, per_class, seeds, split)
            result = summarize(out, *grid, split)
            asked = (list(methods), list(per_class), list(seeds))
            said = command if command is None or grid == asked else widened(command, *grid)
            result.update(source=source_file and str(source_file), source_sha256=digest,
                          recipe=recipe.to_dict(), command=said)  # fmt: skip
            atomic_write_json(out / "transfer.json", result)
            atomic_write(out / "transfer.md", lambda f: f.write(table_markdown(result)), "w")
            plot(result, out / "transfer.png")
        return result

    if table_only:
        return tabulate()
    passed_over = 0  # cells another study held
    for n, method, seed in cell_order(methods, per_class, seeds):
        cell = out / method / f"n-{n}" / f"seed-{seed}"
        if cell_result(out, method, n, seed, recipe.data.val_split) is not None:
            continue  # done before
        with held(out / CLAIMS / f"{method}-n-{n}-seed-{seed}") as holder:
            if holder is not None:  # another study on this OUT runs it: the next cell
                log(f"transfer: {method}, {n} per class, seed {seed}: run by {holder}")
                passed_over += 1
                continue
            if cell_result(out, method, n, seed, recipe.data.val_split) is not None:
                continue  # finished by another study between the two looks
            log(f"transfer: {method}, {n} per class, seed {seed}")
            if method == "probe":
                _probe_cell(recipe, source_file, digest, out, cell, n, seed, log)
            else:
                config = cell_config(recipe, method, n, seed, str(source_file), layers)
                _train_cell(config, cell, f"alexnet transfer ({method}, {n}, {seed})")
        tabulate()
    if passed_over:
        log(f"transfer: {passed_over} cells were being run by other studies on {out}; "
            "the last of them to finish writes the whole table")  # fmt: skip
    return tabulate()


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


def _recorded_file(out: Path) -> str | None:
    """The source's file name as the first cell that stands on it records it."""
    for pattern, _, keys in SOURCE_RECORDS:
        for path in sorted(Path(out).glob(pattern)):
            if name := _lookup(json.loads(path.read_text()), keys):
                return str(name)
    return None


def made_from_other_weights(out: Path, digest: str) -> dict[str, str | None]:
    """The work in OUT that stands on a source whose recorded sha256 is not `digest`: its
    folder relative to OUT -> the sha256 it records (None: it records none)."""
    return {name: sha for name, sha in stands_on(out).items() if sha != digest}


def restore(records: str | Path, out: str | Path, recipe: TrainConfig) -> tuple[list, list]:
    """Put a study's committed records back into OUT: each finished cell's files as
    tools/transfer_records.sh copied them (no checkpoints), with the records' holdout.json in
    each trained cell as the study wrote it there, so that the study counts the cells
    finished and runs only those left. Returns the cells restored and the cells passed
    over because OUT has their folder already (OUT's own run of that cell comes first).
    Records of another recipe are refused: their cells would not be this study's."""
    import shutil

    records, out = Path(records), Path(out)
    table = records / "transfer.json"
    if not table.is_file():
        raise UserError(f"{records} holds no transfer.json: not a transfer study's records")
    theirs, ours = json.loads(table.read_text()).get("recipe") or {}, recipe.to_dict()
    if theirs != ours:
        raise UserError(f"{records} are the records of another recipe ({_differ(theirs, ours)})"
                         ": their cells are not this study's")  # fmt: skip
    restored, passed = [], []
    for method in METHODS:
        marker = "probe.json" if method == "probe" else f"test-{recipe.data.val_split}-ten-crop"
        for cell in sorted(records.glob(f"{method}/n-*/seed-*")):
            if not (cell / marker).exists():
                continue
            name = str(cell.relative_to(records))
            if (out / name).exists():
                passed.append(name)
                continue
            # copied beside, then renamed: a restore killed part way leaves no cell that
            # looks finished with files missing (nor a folder the study's patterns match)
            part = (out / name).with_name(f".restoring-{cell.name}")
            shutil.rmtree(part, ignore_errors=True)
            shutil.copytree(cell, part)
            if method != "probe" and (records / "holdout.json").is_file():
                shutil.copy2(records / "holdout.json", part / "holdout.json")
            part.rename(out / name)
            restored.append(name)
    return restored, passed


def _differ(theirs: dict, ours: dict, prefix: str = "") -> str:
    """The keys where two recipes differ, with both values: 'data.holdout 10, not 5000'."""
    said = []
    for key in sorted(set(theirs) | set(ours)):
        a, b = theirs.get(key), ours.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            if inner := _differ(a, b, f"{prefix}{key}."):
                said.append(inner)
        elif a != b:
            said.append(f"{prefix}{key} {a!r}, not {b!r}")
    return "; ".join(said)


def _probe_cell(recipe, source: Path, digest: str, out: Path, cell: Path, n: int, seed: int,
                log) -> None:  # fmt: skip
    """fc7 of the B images (once for the study), then the probe on the cell's images."""
    from alexnet.evaluate.features import features
    from alexnet.evaluate.probe import probe

    data, folders = recipe.data, {}
    for split in (data.train_split, data.val_split):
        folder = out / f"features-{split}"
        # another study on OUT extracting them: wait for it rather than extract them twice
        with held(out / CLAIMS / f"features-{split}", wait=True):
            if not (folder / "features.json").is_file():  # written last
                log(f"transfer: fc7 of the {split} images of the classes")
                features(str(source), folder, ["fc7"], data=data.store, split=split,
                         class_ids=data.class_ids, workers=data.workers)  # fmt: skip
        folders[split] = folder
    result = probe(folders[data.train_split], folders[data.val_split], "fc7", seed=seed,
                   rows=probe_rows(recipe, n, seed))  # fmt: skip
    result["source"] = {"file": str(source), "sha256": digest}
    cell.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cell / "probe.json", result)


def _train_cell(config: TrainConfig, cell: Path, command: str) -> None:
    """Train (or resume) the cell's run, then test best.pt: center and ten crops."""
    from alexnet.evaluate.eval import evaluate_checkpoints
    from alexnet.train.trainer import train

    resume = (cell / "checkpoints" / "last.pt").is_file()
    train(config, cell, resume=resume, command=command)
    data = config.data
    for views in ("center", "ten-crop"):  # ten-crop last: its file marks the cell done
        result = evaluate_checkpoints([str(cell / "checkpoints" / "best.pt")], data.store,
                                      split=data.val_split, views=views, workers=data.workers,
                                      progress=False)  # fmt: skip
        result["confusion"] = result["confusion"].tolist()
        folder = cell / f"test-{data.val_split}-{views}"
        folder.mkdir(exist_ok=True)
        atomic_write_json(folder / "eval.json", result)


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
            differ = _differ(theirs, ours)
            raise UserError(
                f"{label} ({studies[label]}) is a study of another recipe than "
                f"{first}'s ({differ}): their rows do not measure the same thing"
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
