"""`alexnet ablate`, `alexnet transfer`, `alexnet transfer-compare` and `alexnet report`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from alexnet.cli.common import command_line
from alexnet.core.errors import UserError


def _ablate(args: argparse.Namespace) -> None:
    from alexnet.studies.ablate import STUDIES, plot, run_study, table
    from alexnet.train.config import load_config

    if args.study == "list":
        for name, study in STUDIES.items():
            print(f"{name:14} {study.claim}\n{'':14} variants: {', '.join(study.variants)}"
                  f"\n{'':14} recipe: {study.recipe}")  # fmt: skip
        return
    if args.study not in STUDIES:
        raise UserError(f"no study {args.study!r}; the studies are {', '.join(STUDIES)}")
    if args.summarize:
        _summarize(args)
        return
    if not args.data:
        raise UserError("--data is required: the store the variants train on")
    recipe_path = args.recipe or STUDIES[args.study].recipe
    recipe = load_config(recipe_path, [("data.store", args.data), *args.set])
    out = Path(_ablate_out(args))
    budget = None if args.budget in ("none", "null") else float(args.budget)
    result = run_study(args.study, recipe, out, seeds=args.seeds, budget_minutes=budget,
                       threshold=args.threshold,
                       log=lambda line: print(line, file=sys.stderr))  # fmt: skip
    result["command"] = command_line()
    (out / "ablate.json").write_text(json.dumps(result, indent=2))
    plot(result, out / "ablate.png")
    print(table(result))
    print(f"wrote {out / 'ablate.json'} and {out / 'ablate.png'}")


def _ablate_out(args: argparse.Namespace) -> str:
    return args.out or f"runs/ablate-{args.study}"


def _kept(what: str, out: str) -> str:
    """The hint of a study stopped mid-way: the cell in flight has saved its last.pt, and
    the same command skips the finished cells and resumes that one."""
    return (
        f"the finished {what} and the stopped one's checkpoint are kept in {out}; run the "
        "same command again to continue"
    )


def _summarize(args: argparse.Namespace) -> None:
    """Tabulate the runs already in --out again, training nothing: for records made before
    a field of the table existed. What the study's own command recorded is kept."""
    from alexnet.studies.ablate import plot, summarize, table

    if not args.out:
        raise UserError("--summarize needs --out, the folder of the study's runs")
    out = Path(args.out)
    if not out.is_dir():
        raise UserError(f"{out} is not a folder of a study's runs")
    path = out / "ablate.json"
    before = json.loads(path.read_text()) if path.is_file() else {}
    result = summarize(args.study, out, before.get("seeds", args.seeds), args.threshold)
    if not any(row["runs"] for row in result["variants"]):
        raise UserError(f"{out} holds no finished runs of the {args.study} study")
    for key in ("budget_minutes", "minutes_per_run", "command"):
        if key in before:
            result[key] = before[key]
    result["summarized"] = command_line()
    path.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, out / "ablate.png")
    print(table(result))
    print(f"wrote {path} and {out / 'ablate.png'}")


def _report_run(args: argparse.Namespace) -> None:
    from alexnet.studies.report import write_report

    path = write_report(args.run_dir, data=args.data, out=args.out, device=args.device)
    print(f"wrote {path}")


def _numbers(text: str, what: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(
            f"{what} is a comma-separated list of whole numbers, got {text!r}"
        ) from None
    if not values or min(values) < 0:
        raise UserError(f"{what} needs one number or more, none negative: {text!r}")
    return values


def _transfer(args: argparse.Namespace) -> None:
    from alexnet.studies.transfer import restore, run_transfer
    from alexnet.studies.transfer_table import table_text
    from alexnet.train.config import load_config

    recipe = load_config(args.recipe, args.set)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    per_class, seeds = _numbers(args.per_class, "--per-class"), _numbers(args.seeds, "--seeds")
    if args.restore:
        restored, passed = restore(args.restore, args.out, recipe)
        print(f"transfer: {len(restored)} finished cells restored from {args.restore}"
              + (f"; {', '.join(passed)} passed over: {args.out} has them already" if passed
                 else ""), file=sys.stderr)  # fmt: skip
    result = run_transfer(recipe, args.source, args.out, per_class, seeds, methods,
                          log=lambda line: print(line, file=sys.stderr),
                          command=command_line(), table_only=args.table_only)  # fmt: skip
    print(table_text(result))
    print(f"wrote {Path(args.out) / 'transfer.json'} and {Path(args.out) / 'transfer.png'}")


def _labelled(words: list[str]) -> dict[str, str]:
    """LABEL=FOLDER words in their order (a bare FOLDER is labelled by its name)."""
    studies: dict[str, str] = {}
    for word in words:
        label, _, folder = word.partition("=") if "=" in word else (Path(word).name, "", word)
        if not label or not folder:
            raise UserError(f"a study is LABEL=FOLDER or FOLDER, got {word!r}")
        if label in studies:
            raise UserError(f"two studies labelled {label!r}: give each its own LABEL=")
        studies[label] = folder
    return studies


def _transfer_compare(args: argparse.Namespace) -> None:
    from alexnet.core.files import atomic_write, atomic_write_json
    from alexnet.studies.transfer_table import compare, compare_markdown, compare_plot

    result = compare(_labelled(args.studies), command=command_line())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "compare.json", result)
    atomic_write(out / "compare.md", lambda f: f.write(compare_markdown(result)), "w")
    compare_plot(result, out / "compare.png")
    print(compare_markdown(result), end="")
    print(f"wrote {out / 'compare.json'}, {out / 'compare.md'} and {out / 'compare.png'}")


def add_commands(commands) -> None:
    tra = commands.add_parser(
        "transfer",
        help="a network pretrained on some classes, on others: scratch, probe, fc8, all",
        description="Yosinski et al. (2014)'s design: for each number of images per class "
        "and seed, the recipe's classes learned from scratch, by a linear probe on the "
        "source's fc7, by fine-tuning fc8 alone, and by fine-tuning everything; each tested "
        "on the recipe's validation images (ten crops; the probe: center). Cells that "
        "finished are kept and stopped ones resumed when the same command runs again.",
    )
    tra.add_argument("--recipe", required=True,
                     help="the new classes' recipe, e.g. configs/tiny-imagenet-b.yaml")  # fmt: skip
    tra.add_argument("--source", help="the pretrained run (its best.pt) or checkpoint; "
                     "not needed for --methods scratch")  # fmt: skip
    tra.add_argument("--out", required=True)
    tra.add_argument("--per-class", default="10,50,500", help="images per class, e.g. 10,50,500")
    tra.add_argument("--seeds", default="0,1")
    tra.add_argument("--methods", default="scratch,probe,fc8,all")
    tra.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                     help="override one key of the recipe (repeatable)")  # fmt: skip
    tra.add_argument("--restore", metavar="RECORDS",
                     help="first put the finished cells of a study's committed records "
                     "(tools/transfer_records.sh's copy, e.g. docs/runs/transfer-b) back into "
                     "OUT, so that only the cells left are run: the way on when OUT was lost "
                     "with its machine")  # fmt: skip
    tra.add_argument("--table-only", action="store_true",
                     help="run no cell: write the table of those finished in OUT (--source "
                     "not needed: the one the cells record)")  # fmt: skip
    tra.set_defaults(run=_transfer, interrupted=lambda args: _kept("cells", args.out))

    com = commands.add_parser(
        "transfer-compare",
        help="transfer studies of one recipe from several pretrainings, as one table",
        description="The tables of transfer studies of one recipe, each standing on another "
        "source (a pretraining run again, another network), as one table and plot: a row per "
        "method, images per class and source, the source named by its label and sha256. "
        "Scratch rows stand on no source and are listed once. Studies whose recipes differ in "
        "more than the network (model.name) are refused.",
    )
    com.add_argument("studies", nargs="+", metavar="LABEL=FOLDER",
                     help="a study's OUT or its committed records "
                     "(tools/transfer_records.sh), labelled, e.g. second=docs/runs/transfer-b; "
                     "in the table's order")  # fmt: skip
    com.add_argument("--out", required=True,
                     help="where compare.json, compare.md and compare.png go")  # fmt: skip
    com.set_defaults(run=_transfer_compare)

    abl = commands.add_parser(
        "ablate",
        help="train the variants a claim of the paper compares, and tabulate them",
        description="Trains each variant of a study (the paper's network with one thing "
        "changed) for each seed, with the same recipe, data and budget, then writes a "
        "table (mean and standard deviation over seeds), a plot and JSON. Runs that "
        "finished are kept and killed ones resumed when the same command runs again. "
        "`alexnet ablate list` names the studies.",
    )
    abl.add_argument("study", help="a study, or list")
    abl.add_argument("--data", help="the store the variants train and validate on")
    abl.add_argument("--seeds", type=int, default=2, help="runs per variant (seeds 0..N-1)")
    abl.add_argument(
        "--budget",
        default="60",
        help="minutes of training for the whole study, split evenly between its runs "
        "(none: each run trains to the recipe's last epoch)",
    )
    abl.add_argument(
        "--recipe",
        help="the base recipe (default: the study's: "
        "configs/cifar4.yaml for relu-tanh, configs/ablate-tiny-imagenet.yaml for the "
        "others; configs/cifar4.yaml runs lrn and pooling on the four-layer net, "
        "configs/cifar-local.yaml on the net of the paper's CIFAR-10 LRN claim)",
    )
    abl.add_argument(
        "--threshold",
        type=float,
        default=0.25,
        help="the training error whose epochs are counted (Figure 1: 0.25)",
    )
    abl.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                     help="override a key of the recipe, for every variant")  # fmt: skip
    abl.add_argument("--out", help="folder of the study's runs (default: runs/ablate-STUDY)")
    abl.add_argument(
        "--summarize",
        action="store_true",
        help="only tabulate the runs already in --out again (no training), e.g. for a "
        "record made before a field of the table existed",
    )
    abl.set_defaults(run=_ablate, interrupted=lambda args: _kept("runs", _ablate_out(args)))

    rep = commands.add_parser(
        "report",
        help="one self-contained HTML page for a run",
        description="Config, learning curves, throughput, final errors, the worst classes, "
        "the filter grid, predictions and neighbors of a run, in one HTML file with its "
        "pictures inside: it opens from disk with no server and no network.",
    )
    rep.add_argument("run_dir", help="a run directory (alexnet train --out)")
    rep.add_argument("--data", help="the store, for predictions (default: the run's config)")
    rep.add_argument("--device", default="auto")
    rep.add_argument("--out", help="HTML file (default: RUN_DIR/report.html)")
    rep.set_defaults(run=_report_run)
