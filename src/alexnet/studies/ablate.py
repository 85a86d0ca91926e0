"""`alexnet ablate STUDY`: train the variants a claim of the paper compares (sections 3-4, 6)
with the same data, seeds and budget, and report what they score.

A study is a list of variants, each a change to one recipe: the model's options
(`AlexNetConfig`) or the data's. Every (variant, seed) pair is one ordinary training run in
OUT/VARIANT/seed-N, so each can be inspected, evaluated or continued like any other; a pair
whose run finished is skipped when the study runs again, and one that was killed is resumed
from its last checkpoint, so a study can be stopped and started at will. A run whose exact
configuration (recipe, variant, seed, budget) another study beside OUT has finished is not
trained again but copied from it: the paper's network under one recipe is the first variant
of every study of the 2012 network, and on a CPU its runs are the same to the bit.

The budget is the study's, in minutes of training on the machine it runs on, split evenly
between its runs (`run.budget_minutes` of each); every run also stops at the recipe's last
epoch. The table gives each variant's mean and standard deviation over seeds of the final
validation top-1 and top-5 error and of the epochs it took to reach a training error.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from alexnet.core.errors import UserError
from alexnet.models.alexnet import AlexNetConfig
from alexnet.train.config import TrainConfig, from_dict, load_config
from alexnet.train.rundir import read_metrics

#: The variants' change to the recipe's mapping: a function of the model section (the
#: one-tower net's widths depend on the recipe's) to {"model": {...}, "data": {...}}.
Change = Callable[[dict], dict]


#: The recipes the studies start from unless told otherwise: the 2012 network's, and the
#: four-layer CIFAR-10 net's (`alexnet.models.cifar`).
IMAGENET_RECIPE = "configs/ablate-tiny-imagenet.yaml"  # 10 classes: sized to 60 min
CIFAR_RECIPE = "configs/cifar4.yaml"


@dataclass(frozen=True)
class Study:
    claim: str  # the paper's claim, with its number
    variants: dict[str, Change]  # the first is the paper's network
    recipe: str = IMAGENET_RECIPE  # the default base recipe


def _model(**values) -> Change:
    return lambda model: {"model": values}


def _one_tower(model: dict) -> dict:
    """The paper's one-GPU net: half the kernels in conv1-conv4, conv5 and the FC layers
    not halved (its footnote); from the recipe's widths."""
    widths = model.get("widths", AlexNetConfig().widths)
    return {"model": {"towers": 1, "widths": [w // 2 for w in widths[:4]] + [widths[4]]}}


def _paper(model: dict) -> dict:
    return {}


def _activation(name: str) -> Change:
    # Figure 1: "no regularization of any kind was employed" (the recipe's flips, lighting
    # and dropout are left to it; cifar4's has none of them)
    no_decay = {"weight_decay": 0.0, "layer_weight_decay": None}
    return lambda model: {"model": {"activation": name}, "optim": no_decay}


STUDIES: dict[str, Study] = {
    "relu-tanh": Study(
        "a four-layer CNN with ReLUs reaches 25% training error on CIFAR-10 six times faster "
        "than with tanh (Figure 1)",
        {"ReLU": _activation("relu"), "tanh": _activation("tanh")},
        recipe=CIFAR_RECIPE,
    ),
    "lrn": Study(
        "LRN lowers top-1 error by 1.4 points and top-5 by 1.2 on ImageNet; on CIFAR-10 a "
        "four-layer net goes from 13% to 11% test error with it",
        {"with LRN": _paper, "without LRN": _model(lrn=False)},
    ),
    "pooling": Study(
        "overlapping pooling (3/2) lowers top-1 error by 0.4 and top-5 by 0.3 against 2/2",
        {"overlapping 3/2": _paper, "non-overlapping 2/2": _model(pool_size=2, pool_stride=2)},
    ),
    "pca-lighting": Study(
        "PCA lighting lowers top-1 error by over 1 point",
        {"PCA lighting": _paper, "no lighting": lambda model: {"data": {"lighting": "none"}}},
    ),
    "dropout": Study(
        "without dropout the network overfits substantially",
        {"dropout 0.5": _paper, "no dropout": _model(dropout=0.0)},
    ),
    "towers": Study(
        "two towers lower top-1 error by 1.7 and top-5 by 1.2 against the one-GPU net",
        {"two towers": _paper, "one tower, half the kernels in conv1-4": _one_tower},
    ),
    "torchvision": Study(
        "not a claim of the paper: its network against torchvision's alexnet (64 kernels in "
        "conv1, 192 in conv2, no LRN, one tower), the same recipe and data",
        {
            "alexnet2012 (the paper's)": _paper,
            "alexnet_owt (torchvision's)": _model(name="alexnet_owt"),
        },
    ),
    "depth": Study(
        "removing any middle convolutional layer costs about 2 points of top-1",
        {
            "all layers": _paper,
            "without conv3": _model(remove_layer="conv3"),
            "without conv4": _model(remove_layer="conv4"),
        },
    ),
}


def variant_config(recipe: TrainConfig, change: Change, seed: int, budget: float | None):
    """The recipe with a variant's change, the seed and the per-run budget."""
    values = recipe.to_dict()
    for section, updates in change(dict(values["model"])).items():
        values[section] = {**values[section], **updates}
    values["run"] = {**values["run"], "seed": seed, "budget_minutes": budget}
    return from_dict(values)


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def epochs_to_threshold(
    curve: list[tuple[float, float]], threshold: float, start: float | None = None
) -> float | None:
    """The epoch at which a training-error curve [(epoch, error), ...] first reaches
    `threshold`, interpolated linearly between the point before and the point it is reached.
    `start` is the error at epoch 0 (chance, 1 - 1/classes), so that a curve whose first
    point is already below the threshold is interpolated from there; without it such a
    curve gives its first point. None if it never gets there."""
    if start is not None and start <= threshold:
        return 0.0
    previous = None if start is None else (0.0, start)
    for epoch, error in curve:
        if error <= threshold:
            if previous is None:
                return float(epoch)
            (e0, err0) = previous
            return e0 + (err0 - threshold) / (err0 - error) * (epoch - e0)
        previous = (epoch, error)
    return None


def training_curve(records: list[dict]) -> list[tuple[float, float]]:
    """[(epochs, training error)] from metrics records: each fifth of an epoch where the
    record has its parts (the error over that fifth's images), else the epoch's mean. An
    epoch stopped by the budget is placed at the share of its steps it ran (from a whole
    epoch's step count), not at the next whole epoch; without a whole epoch to count its
    steps by, it is left out."""
    whole = next((r["epoch_steps"] for r in records if r.get("complete", True)
                  and r.get("epoch_steps")), None)  # fmt: skip
    curve = []
    for r in records:
        start = r["epoch"] - 1
        if not r.get("complete", True):
            if whole and r.get("epoch_steps"):
                curve.append((start + r["epoch_steps"] / whole, r["train_top1_error"]))
            continue
        parts = r.get("train_top1_error_parts") or []
        if parts and all(x is not None for x in parts):
            curve += [(start + (j + 1) / len(parts), x) for j, x in enumerate(parts)]
        else:
            curve.append((float(r["epoch"]), r["train_top1_error"]))
    return curve


def chance_error(out: Path) -> float | None:
    """1 - 1/classes of the study's runs (their training error at epoch 0, in expectation):
    from the first run's data.classes, else its metrics, else its store's manifest."""
    for config in sorted(Path(out).glob("*/seed-*/config.yaml")):
        data = yaml.safe_load(config.read_text())["data"]
        classes = data.get("classes")
        if classes is None:
            records = read_metrics(config.parent, missing_ok=True)
            classes = records[0].get("num_classes") if records else None
        if classes is None:
            try:
                manifest = json.loads((Path(data["store"]) / "manifest.json").read_text())
                classes = len(manifest["class_ids"])
            except (OSError, ValueError, KeyError):
                return None
        return 1 - 1 / classes
    return None


def run_study(name: str, recipe: TrainConfig, out: str | Path, seeds: int = 2,
              budget_minutes: float | None = 60.0, threshold: float = 0.25,
              log=print) -> dict:  # fmt: skip
    """Train every (variant, seed) of study `name` not yet finished in `out`; then return
    (and write to OUT/ablate.json) the table."""
    from alexnet.train.trainer import train

    if name not in STUDIES:
        raise UserError(f"no study {name!r}; the studies are {', '.join(STUDIES)}")
    if seeds < 1:
        raise UserError(f"--seeds must be 1 or more, got {seeds}")
    study = STUDIES[name]
    out = Path(out)
    runs = len(study.variants) * seeds
    per_run = None if budget_minutes is None else budget_minutes / runs
    for variant, change in study.variants.items():
        for seed in range(seeds):
            run_dir = out / slug(variant) / f"seed-{seed}"
            done = run_dir / "ablate-done.json"
            if done.is_file():
                log(f"{name}: {variant}, seed {seed}: done before, kept")
                continue
            config = variant_config(recipe, change, seed, per_run)
            resume = (run_dir / "checkpoints" / "last.pt").is_file()
            twin = None if run_dir.exists() else finished_twin(out, config)
            if twin is not None:
                copy_run(twin, run_dir)
                log(f"{name}: {variant}, seed {seed}: the same run finished in {twin}; copied")
                final = json.loads((twin / "ablate-done.json").read_text()).get("final")
                record = {"variant": variant, "seed": seed, "final": final}
                done.write_text(json.dumps({**record, "copied_from": str(twin)}))
                continue
            log(f"{name}: {variant}, seed {seed}: " + ("resuming" if resume else "training")
                + (f" for {per_run:.1f} min" if per_run else ""))  # fmt: skip
            command = f"alexnet ablate {name} (variant {variant!r}, seed {seed})"
            metrics = train(config, run_dir, resume=resume, command=command)
            done.write_text(json.dumps({"variant": variant, "seed": seed, "final": metrics}))
    result = summarize(name, out, seeds, threshold)
    result.update(budget_minutes=budget_minutes, minutes_per_run=per_run)
    (out / "ablate.json").write_text(json.dumps(result, indent=2))
    return result


def finished_twin(out: Path, config: TrainConfig) -> Path | None:
    """A finished run of exactly `config` in another study beside `out`, if there is one."""
    wanted = config.to_dict()
    for done in sorted(out.parent.glob("*/*/seed-*/ablate-done.json")):
        run_dir = done.parent
        if run_dir.parent.parent == out or not (run_dir / "config.yaml").is_file():
            continue
        try:
            if load_config(run_dir / "config.yaml").to_dict() == wanted:
                return run_dir
        except Exception:  # a run directory of another version, or edited by hand
            continue
    return None


def copy_run(source: Path, target: Path) -> None:
    """Copy a run directory. Checkpoints are hard-linked where the file system allows: they
    are hundreds of MB, and a new one replaces the file rather than writing into it, so the
    two runs stay independent. The logs, which a continued run appends to, are copied."""

    def link_or_copy(src: str, dst: str) -> None:
        if src.endswith(".pt"):
            try:
                os.link(src, dst)
                return
            except OSError:  # another file system, or one without hard links
                pass
        shutil.copy2(src, dst)

    partial = target.with_name(target.name + ".copying")
    shutil.rmtree(partial, ignore_errors=True)
    ignore = shutil.ignore_patterns("ablate-done.json")  # the copy writes its own
    shutil.copytree(source, partial, copy_function=link_or_copy, ignore=ignore)
    partial.rename(target)


def _spread(values: list[float]) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    std = statistics.stdev(values) if len(values) > 1 else None  # one seed: no spread
    return {"mean": statistics.fmean(values), "std": std, "n": len(values)}


def summarize(name: str, out: Path, seeds: int, threshold: float = 0.25) -> dict:
    """Each variant's final errors and epochs to `threshold` training error over seeds, and
    that number as a multiple of the first (the paper's) variant's."""
    study = STUDIES[name]
    start = chance_error(out)
    rows, every = [], []
    for variant in study.variants:
        finals, curves, by_seed = [], [], {}
        for seed in range(seeds):
            records = read_metrics(out / slug(variant) / f"seed-{seed}", missing_ok=True)
            if records:
                finals.append(records[-1])
                curves.append(training_curve(records))
                by_seed[seed] = records[-1]["val_top1_error"]
        reached = [epochs_to_threshold(c, threshold, start) for c in curves]
        every += finals
        rows.append(
            {
                "variant": variant,
                "runs": len(finals),
                "val_top1_error_by_seed": by_seed,
                "epochs": _spread([r["epoch"] for r in finals]),
                "val_top1_error": _spread([r["val_top1_error"] for r in finals]),
                "val_top5_error": _spread([r["val_top5_error"] for r in finals]),
                "train_top1_error": _spread([r["train_top1_error"] for r in finals]),
                # None for a run that never got there: the spread is over those that did
                "epochs_to_threshold": _spread(reached),
                "reached_threshold": sum(x is not None for x in reached),
                "train_curves": curves,
            }
        )
    val_images = next((f["val_images"] for f in every if f.get("val_images")), None)
    for row in rows:
        # the sampling noise of one run's error on this many images: sqrt(p (1 - p) / n)
        p = row["val_top1_error"]["mean"]
        se = (p * (1 - p) / val_images) ** 0.5 if p is not None and val_images else None
        row["val_top1_binomial_se"] = se
    first = rows[0]["epochs_to_threshold"]["mean"]
    first_top1 = rows[0]["val_top1_error_by_seed"]
    for row in rows:
        mean = row["epochs_to_threshold"]["mean"]
        row["epochs_to_threshold_vs_first"] = mean / first if mean and first else None
        # the seeds pair the runs (same initial weights, order and augmentation), so the
        # per-seed difference from the first variant is the comparison's own noise level
        mine = row["val_top1_error_by_seed"]
        paired = [mine[s] - first_top1[s] for s in sorted(mine) if s in first_top1]
        row["val_top1_vs_first"] = _spread(paired) | {"by_seed": paired}
    return {"study": name, "claim": study.claim, "seeds": seeds, "threshold": threshold,
            "chance_error": start, "data": describe_store(out), "val_images": val_images,
            "variants": rows, "runs_in": str(out)}  # fmt: skip


def describe_store(out: Path) -> str | None:
    """The dataset the study's runs trained on, from the first run's saved config."""
    for config in sorted(Path(out).glob("*/seed-*/config.yaml")):
        store = Path(yaml.safe_load(config.read_text())["data"]["store"])
        try:
            manifest = json.loads((store / "manifest.json").read_text())
        except (OSError, ValueError):
            return str(store)
        side = manifest.get("image_size")
        return f"{manifest.get('source')} at {side}x{side} ({store})"
    return None


def table(result: dict) -> str:
    def cell(spread: dict, scale: float = 100.0, digits: int = 2) -> str:
        if spread["mean"] is None:
            return "-"
        if spread["n"] < 2:
            return f"{scale * spread['mean']:.{digits}f}"
        return f"{scale * spread['mean']:.{digits}f} +- {scale * spread['std']:.{digits}f}"

    threshold = result.get("threshold", 0.25)
    reach = f"epochs to {100 * threshold:g}%"
    lines = [
        f"alexnet ablate {result['study']}: {result['claim']} (the paper)",
        f"on {result.get('data')}; {result['seeds']} seed(s) per variant; errors in % on the "
        "validation split, mean +- std; vs first: top-1 minus the first variant's, seed by "
        "seed; epochs to the training error in fifths of an epoch",
        "",
        f"  {'variant':40} {'top-1 error':>15} {'vs first':>15} {'top-5 error':>15} "
        f"{'train error':>15} {'epochs':>8} {reach:>17} {'x first':>7}",
    ]
    for i, row in enumerate(result["variants"]):
        reached = row["epochs_to_threshold"]
        times = row["epochs_to_threshold_vs_first"]
        missed = row["runs"] - row["reached_threshold"]
        paired = cell(row["val_top1_vs_first"]) if i and "val_top1_vs_first" in row else ""
        lines.append(
            f"  {row['variant']:40} {cell(row['val_top1_error']):>15} {paired:>15} "
            f"{cell(row['val_top5_error']):>15} {cell(row['train_top1_error']):>15} "
            f"{cell(row['epochs'], 1.0, 0):>8} "
            f"{cell(reached, 1.0) + (f' ({missed} not)' if missed else ''):>17} "
            f"{'-' if times is None else f'{times:.2f}':>7}"
        )
    se = [r.get("val_top1_binomial_se") for r in result["variants"]]
    if result.get("val_images") and se[0] is not None:
        n = result["val_images"]
        lines.append(
            f"validation: {n} images, one image {100 / n:.2f} points; the first variant's "
            f"top-1 error has a binomial standard error of {100 * se[0]:.2f} points per run"
        )
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    """Left: each variant's top-1 and top-5 error, mean with the seeds' spread as error
    bars. Right: the training-error curves, one line per run, and the threshold, as in
    Figure 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["variants"]
    names = [r["variant"] for r in rows]
    fig, (ax, curves) = plt.subplots(1, 2, figsize=(4.5 + 1.9 * len(rows), 3.8),
                                     gridspec_kw={"width_ratios": [len(rows), 3]})  # fmt: skip
    for offset, key, color in ((-0.18, "val_top1_error", "tab:blue"),
                               (0.18, "val_top5_error", "tab:orange")):  # fmt: skip
        means = [100 * (r[key]["mean"] or 0) for r in rows]
        stds = [100 * (r[key]["std"] or 0) for r in rows]  # fmt: skip
        ax.bar([i + offset for i in range(len(rows))], means, 0.36, yerr=stds, capsize=4,
               color=color, label=key.replace("val_", "").replace("_", " "))  # fmt: skip
    ax.set_xticks(range(len(rows)), names, fontsize=8)
    ax.set_ylabel("validation error (%)")
    ax.set_title(f"{result['study']}: {result['seeds']} seed(s) per variant", fontsize=9)
    ax.legend(fontsize=8)
    styles = ["-", "--", ":", "-."]
    for i, row in enumerate(rows):
        for j, curve in enumerate(row.get("train_curves", [])):
            x, y = zip(*curve, strict=True) if curve else ((), ())
            curves.plot(x, [100 * v for v in y], styles[i % 4], color=f"C{i}", linewidth=1,
                        label=row["variant"] if j == 0 else None)  # fmt: skip
    threshold = 100 * result.get("threshold", 0.25)
    curves.axhline(threshold, color="gray", linewidth=0.8)
    curves.set_xlabel("epochs")
    curves.set_ylabel("training error (%)")
    curves.set_title(f"training error; the line: {threshold:g}%", fontsize=9)
    curves.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
