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
from pathlib import Path

import numpy as np

from alexnet.core.errors import UserError
from alexnet.core.files import atomic_write, atomic_write_json, held
from alexnet.studies.transfer_table import (
    METHODS,
    cell_result,
    differ,
    finished_grid,
    plot,
    recorded_file,
    stands_on,
    summarize,
    table_markdown,
    widened,
)
from alexnet.train.config import TrainConfig, from_dict

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
        source_file = recorded_file(out) if digest else None
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
        raise UserError(f"{records} are the records of another recipe ({differ(theirs, ours)})"
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
