"""The `alexnet` command."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from alexnet.registry import DEFAULT_MODEL, VARIANTS, list_models, option_value, split_specs

#: alexnet.lrn.BACKENDS, spelled out so that `--help` does not import numba.
LRN_BACKENDS = ("auto", "kernel", "torch", "triton")
#: alexnet.layers.TOWER_CONV_MODES, likewise.
TOWER_CONV_MODES = ("auto", "grouped", "split")
#: alexnet.layers.IMAGE_GRAD_MODES, likewise.
IMAGE_GRAD_MODES = ("auto", "direct", "space-to-depth")
MODELS_HELP = (
    "comma-separated networks, each a name from `alexnet models` with any config options as "
    ":KEY=VALUE, e.g. alexnet2012:lrn=False (default: %(default)s)"
)
AUTO_PRECISION_HELP = "auto: bf16 where the hardware has bf16 instructions, else fp32"


def parse_option(text: str) -> tuple[str, object]:
    """KEY=VALUE, the value read by `alexnet.registry.option_value`."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), option_value(raw)


def _summary(args: argparse.Namespace) -> None:
    from alexnet.summary import summarize

    summary = summarize(
        args.model,
        input_size=args.input_size,
        num_classes=args.num_classes,
        in_chans=args.in_chans,
        **dict(args.option),
    )
    print(json.dumps(summary.to_dict(), indent=2) if args.json else summary.table())


def _models(args: argparse.Namespace) -> None:
    if args.json:
        out = {n: {"summary": v.summary, "differences": v.differences} for n, v in VARIANTS.items()}
        print(json.dumps(out, indent=2))
        return
    for name, variant in VARIANTS.items():
        print(f"{name}\n    {variant.summary}\n    differences: {variant.differences}")


def _data_prepare(args: argparse.Namespace) -> None:
    import logging
    import shlex

    from alexnet.data.prepare import Settings, prepare

    logging.basicConfig(level=logging.ERROR, format="%(message)s")
    settings = Settings(
        source=args.source,
        src=str(Path(args.src).resolve()) if args.src else None,
        size=None
        if args.size == "native"
        else int(args.size)
        if args.size
        else _default_size(args),
        filter=args.filter,
        draft=not args.no_draft,
        max_pixels=args.max_pixels,
    )
    download_to = Path(args.out) / "download" if args.download else None
    command = "alexnet " + shlex.join(sys.argv[1:]) if argv_is_cli() else None
    try:
        report = prepare(
            settings,
            args.out,
            workers=args.workers,
            strict=args.strict,
            overwrite=args.overwrite,
            download_to=download_to,
            command=command,
        )
    except KeyboardInterrupt:
        print(
            f"interrupted: the work done so far is kept in {args.out}; run the same command "
            "again to continue",
            file=sys.stderr,
        )
        raise SystemExit(130) from None
    counts = ", ".join(f"{n:,} {split}" for split, n in report.counts.items())
    state = "already prepared" if report.already_done else f"prepared in {report.seconds:.0f} s"
    print(f"{report.store}: {state}: {counts} images, {len(report.quarantined)} quarantined")
    if report.quarantined:
        print(f"  skipped files and reasons: {report.store / 'quarantine.jsonl'}")
        for entry in report.quarantined[:5]:
            print(f"  {entry['split']}: {entry['file']}: {entry['reason']}")


def _default_size(args: argparse.Namespace) -> int | None:
    """256 for photographs; small-image datasets keep their native size."""
    return None if args.source in ("fashion-mnist", "cifar10", "tiny-imagenet") else 256


def argv_is_cli() -> bool:
    return Path(sys.argv[0]).name in ("alexnet", "__main__.py")


def _data_show(args: argparse.Namespace) -> None:
    from alexnet.data.show import show

    info = show(args.store, args.out, args.split)
    if args.json:
        print(json.dumps({k: v for k, v in info.items() if k != "text"}, indent=2))
    else:
        print(info["text"])
        print("  pictures: " + ", ".join(info["pictures"]))


def _run_folder(checkpoint: str, name: str, out: str | None) -> Path:
    """--out, or NAME in the run directory the checkpoint belongs to."""
    if out:
        return Path(out)
    path = Path(checkpoint)
    run_dir = path if path.is_dir() else path.parent.parent
    return run_dir / name


def _figures_filters(args: argparse.Namespace) -> None:
    from alexnet.figures import filters

    out = _run_folder(args.checkpoint, "figures", args.out)
    result = filters(args.checkpoint, out)
    result["command"] = "alexnet " + " ".join(sys.argv[1:]) if argv_is_cli() else None
    (out / "filters.json").write_text(json.dumps(result, indent=2))
    scores = result["color_specificity"]
    if scores:
        print("color specificity (mean over kernels): "
              + ", ".join(f"{k} {v['mean']:.3f}" for k, v in scores.items()))  # fmt: skip
    else:
        print(result["note"])
    print(f"wrote {out / 'filters.png'} and {out / 'filters.json'}")


def _figures_predictions(args: argparse.Namespace) -> None:
    from alexnet.figures import predictions

    out = _run_folder(args.checkpoint, "figures", args.out)
    result = predictions(args.checkpoint, args.data, out, count=args.count, split=args.split,
                         seed=args.seed, device=args.device)  # fmt: skip
    result["command"] = "alexnet " + " ".join(sys.argv[1:]) if argv_is_cli() else None
    (out / "predictions.json").write_text(json.dumps(result, indent=2))
    right = sum(item["correct"] for item in result["images"])
    print(f"{right} of {len(result['images'])} images right at top-1")
    print(f"wrote {out / 'predictions.png'} and {out / 'predictions.json'}")


def _neighbors(args: argparse.Namespace) -> None:
    from alexnet.neighbors import run

    out = _run_folder(args.checkpoint, "neighbors", args.out)
    bits = [int(b) for b in args.codes.split(",")] if args.codes else []
    result = run(args.checkpoint, args.data, out, k=args.k, queries=args.queries,
                 shown=args.shown, query_images=args.query, bits=bits, limit=args.limit,
                 epochs=args.epochs, batch=args.batch, workers=args.workers,
                 device=args.device, precision=args.precision, seed=args.seed,
                 progress=not args.json)  # fmt: skip
    result["command"] = "alexnet " + " ".join(sys.argv[1:]) if argv_is_cli() else None
    (out / "neighbors.json").write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    k = result["k"]
    print(f"base: {result['base']}; queries: {result['queries']}")
    print(f"  {'search':34} {'bytes/image':>11} {f'precision@{k}':>12} {'queries/s':>10}")
    for row in result["table"]:
        print(f"  {row['search']:34} {row['bytes_per_image']:>11,} "
              f"{row[f'precision_at_{k}']:>12.3f} {row['queries_per_s']:>10,.1f}")  # fmt: skip
    print(f"wrote {out / 'neighbors.png'} and {out / 'neighbors.json'}")


def _ablate(args: argparse.Namespace) -> None:
    from alexnet.ablate import STUDIES, plot, run_study, table
    from alexnet.config import load_config

    if args.study == "list":
        for name, study in STUDIES.items():
            print(f"{name:14} {study.claim}\n{'':14} variants: {', '.join(study.variants)}"
                  f"\n{'':14} recipe: {study.recipe}")  # fmt: skip
        return
    if not args.data:
        raise ValueError("--data is required: the store the variants train on")
    if args.study not in STUDIES:
        raise ValueError(f"no study {args.study!r}; the studies are {', '.join(STUDIES)}")
    recipe_path = args.recipe or STUDIES[args.study].recipe
    recipe = load_config(recipe_path, [f"data.store={args.data}", *args.set])
    out = Path(args.out or f"runs/ablate-{args.study}")
    budget = None if args.budget in ("none", "null") else float(args.budget)
    result = run_study(args.study, recipe, out, seeds=args.seeds, budget_minutes=budget,
                       threshold=args.threshold,
                       log=lambda line: print(line, file=sys.stderr))  # fmt: skip
    result["command"] = "alexnet " + " ".join(sys.argv[1:]) if argv_is_cli() else None
    (out / "ablate.json").write_text(json.dumps(result, indent=2))
    plot(result, out / "ablate.png")
    print(table(result))
    print(f"wrote {out / 'ablate.json'} and {out / 'ablate.png'}")


def _report_run(args: argparse.Namespace) -> None:
    from alexnet.report import write_report

    path = write_report(args.run_dir, data=args.data, out=args.out, device=args.device)
    print(f"wrote {path}")


def _report(args: argparse.Namespace, result: dict) -> None:
    """A benchmark's table (or JSON with --json), and its JSON in --output."""
    print(json.dumps(result, indent=2) if args.json else result["table"])
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2))


def _report_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--output", help="also write the JSON here")


def _bench_data(args: argparse.Namespace) -> None:
    from alexnet.bench import bench_data

    result = bench_data(photos=args.photos, images=args.images, repeats=args.repeats)
    _report(args, result)


def _models_or_all(value: str | None) -> bool | tuple[str, ...]:
    """A flag's value: "all" (the flag alone), a comma-separated list of models, or absent."""
    if value is None:
        return False
    return True if value == "all" else tuple(value.split(","))


def _bench_dtypes(value: str, device: str, anyway: str = "--dtypes fp32,bf16") -> tuple[str, ...]:
    """The dtypes of `--dtypes`: as listed, or for "auto" fp32 and bf16 where the hardware
    computes in bf16 (saying so on stderr when bf16 is left out, and that `anyway` asks for
    it)."""
    from alexnet.bench_model import auto_dtypes

    if value != "auto":
        return tuple(value.split(","))
    dtypes, why = auto_dtypes(device)
    if why:
        print(f"bf16 left out: {why}; {anyway} measures it anyway", file=sys.stderr)
    return dtypes


def _bench_model(args: argparse.Namespace) -> None:
    from alexnet.bench_model import bench_model

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result = bench_model(
        batch=args.batch,
        repeats=args.repeats,
        steps=args.steps,
        warmup=args.warmup,
        models=split_specs(args.models),
        dtypes=_bench_dtypes(args.dtypes, args.device),
        modes=tuple(args.modes.split(",")),
        device=args.device,
        channels_last=_models_or_all(args.channels_last),
        compile=_models_or_all(args.compile),
        fuse=not args.no_fuse,
        lrn_backend=args.lrn_backend,
        tower_conv=args.tower_conv,
        conv1_grad=args.conv1_grad,
        malloc=args.malloc,
        in_process=args.in_process,
    )
    result["command"] = "alexnet " + " ".join(sys.argv[1:]) if argv_is_cli() else None
    _report(args, result)


def _bench_fused(args: argparse.Namespace) -> None:
    import torch

    from alexnet.bench_model import bench_fused

    if args.threads:
        torch.set_num_threads(args.threads)
    result = bench_fused(repeats=args.repeats, batch=args.batch)
    result["command"] = "alexnet " + " ".join(sys.argv[1:]) if argv_is_cli() else None
    _report(args, result)


def _bench_profile(args: argparse.Namespace) -> None:
    import torch

    from alexnet.bench_profile import bench_profile

    if args.threads:
        torch.set_num_threads(args.threads)
    result = bench_profile(
        models=split_specs(args.models),
        mode=args.mode,
        dtype=_bench_dtypes(args.dtype, args.device, anyway="--dtype bf16")[-1],
        batch=args.batch,
        steps=args.steps,
        warmup=args.warmup,
        device=args.device,
        channels_last=args.channels_last,
        compile=args.compile,
        fuse=not args.no_fuse,
        lrn_backend=args.lrn_backend,
        tower_conv=args.tower_conv,
        conv1_grad=args.conv1_grad,
        top=args.top,
        trace_dir=args.trace,
        by_shape=args.by_shape,
    )
    result["command"] = "alexnet " + " ".join(sys.argv[1:]) if argv_is_cli() else None
    _report(args, result)


def _bench_train(args: argparse.Namespace) -> None:
    from alexnet.bench_train import bench_train
    from alexnet.config import load_config

    config = load_config(args.config, args.set)
    result = bench_train(config, steps=args.steps, rounds=args.rounds)
    result["command"] = "alexnet " + " ".join(sys.argv[1:]) if argv_is_cli() else None
    _report(args, result)


def _train(args: argparse.Namespace) -> None:
    from alexnet.train import TrainingError, run_from_args

    if not args.config and not args.resume:
        raise ValueError("give a recipe with --config configs/NAME.yaml, or --resume RUN_DIR")
    try:
        metrics, run_dir = run_from_args(args.config, args.set, args.out, args.resume)
    except TrainingError as error:
        print(f"alexnet train: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print("interrupted: continue with `alexnet train --resume RUN_DIR`", file=sys.stderr)
        raise SystemExit(130) from None
    if metrics is not None and int(os.environ.get("RANK", "0")) == 0:
        print(
            f"{run_dir}: epoch {metrics['epoch']}, validation top-1 error "
            f"{100 * metrics['val_top1_error']:.2f}%, top-5 {100 * metrics['val_top5_error']:.2f}%"
            f" ({metrics['val_views']}, {metrics['val_images']:,} images)\n"
            f"  checkpoints: {run_dir / 'checkpoints'}  metrics: {run_dir / 'metrics.jsonl'}"
        )


def _eval(args: argparse.Namespace) -> None:
    from alexnet.evaluate import evaluate_checkpoints, plot

    result = evaluate_checkpoints(
        args.checkpoint,
        args.data,
        split=args.split,
        views=args.views,
        batch_size=args.batch,
        precision=args.precision,
        device=args.device,
        workers=args.workers,
        limit=args.limit,
        progress=not args.json,
    )
    first = Path(result["checkpoints"][0])
    out = Path(args.out) if args.out else first.parent.parent / f"eval-{args.split}-{args.views}"
    out.mkdir(parents=True, exist_ok=True)
    result["command"] = "alexnet " + " ".join(sys.argv[1:]) if argv_is_cli() else None
    result["confusion"] = result["confusion"].tolist()
    (out / "eval.json").write_text(json.dumps(result, indent=2))
    plot(result, out / "eval.png")
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "confusion"}, indent=2))
        return
    count = len(result["checkpoints"])
    what = f"ensemble of {count} networks" if count > 1 else result["checkpoints"][0]
    print(
        f"{what}\n  {result['split']} split of {result['data']}, {result['views']} views, "
        f"{result['precision']}, {result['images']:,} images\n"
        f"  top-1 error {100 * result['top1_error']:.2f}%   top-5 error "
        f"{100 * result['top5_error']:.2f}%"
    )
    worst = sorted(
        (c for c in result["per_class"] if c["top1_error"] is not None),
        key=lambda c: -c["top1_error"],
    )[:5]
    print(
        "  hardest classes: "
        + ", ".join(f"{c['name']} {100 * c['top1_error']:.1f}%" for c in worst)
    )
    if result["most_confused"]:
        pair = result["most_confused"][0]
        print(
            f"  most confused: {pair['true']} taken for {pair['predicted']} "
            f"({pair['images']} images)"
        )
    print(f"  wrote {out / 'eval.json'} and {out / 'eval.png'}")


def _predict(args: argparse.Namespace) -> None:
    from alexnet.predict import predict

    results = predict(
        args.image, args.checkpoint, views=args.views, top=args.top, device=args.device
    )
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for result in results:
        print(f"{result['image']} ({result['views']})")
        for rank, entry in enumerate(result["top"], 1):
            print(f"  {rank}. {100 * entry['probability']:6.2f}%  {entry['name']}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alexnet",
        description="AlexNet as Krizhevsky, Sutskever and Hinton (2012) describe it.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    models = commands.add_parser("models", help="list the networks and how each differs")
    models.add_argument("--json", action="store_true", help="print JSON")
    models.set_defaults(run=_models)

    summary = commands.add_parser(
        "summary", help="per-layer shapes, neurons, parameters and multiply-adds"
    )
    summary.add_argument(
        "model", nargs="?", default=DEFAULT_MODEL, help=f"one of: {', '.join(list_models())}"
    )
    summary.add_argument(
        "--input-size", type=int, help="input side in pixels (default: the model's crop size)"
    )
    summary.add_argument("--num-classes", type=int, default=1000)
    summary.add_argument("--in-chans", type=int, default=3)
    summary.add_argument(
        "-o",
        "--option",
        type=parse_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an AlexNetConfig field, e.g. -o towers=1 -o activation=tanh (repeatable)",
    )
    summary.add_argument("--json", action="store_true", help="print JSON")
    summary.set_defaults(run=_summary)

    data = commands.add_parser("data", help="prepare datasets into stores and look at them")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    prep = data_commands.add_parser(
        "prepare",
        help="decode a dataset into a store: 256x256 pixels, labels, mean image, RGB PCA",
        description="Decode, rescale the shorter side, take the central square, store uint8 "
        "pixels. Safe to interrupt: run the same command again to continue.",
    )
    from alexnet.data.images import DEFAULT_FILTER, DEFAULT_MAX_PIXELS, FILTERS
    from alexnet.data.sources import SOURCES

    prep.add_argument("--source", required=True, choices=SOURCES)
    prep.add_argument(
        "--src", help="the dataset as you have it (archive or folder; optional for fashion-mnist)"
    )
    prep.add_argument("--out", required=True, help="folder for the store")
    prep.add_argument(
        "--size",
        help="stored side: 256 for photographs, 'native' for the small datasets (default)",
    )
    prep.add_argument("--filter", default=DEFAULT_FILTER, choices=sorted(FILTERS))
    prep.add_argument(
        "--no-draft", action="store_true", help="always decode JPEGs at full size before resizing"
    )
    prep.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help="larger images are refused as decompression bombs (default: %(default)s)",
    )
    prep.add_argument("--workers", type=int, help="processes (default: the cores given)")
    prep.add_argument("--strict", action="store_true", help="stop at the first bad file")
    prep.add_argument("--overwrite", action="store_true", help="replace an existing store")
    prep.add_argument(
        "--download",
        action="store_true",
        help="fashion-mnist: download the official release when no local copy is found",
    )
    prep.set_defaults(run=_data_prepare)

    show = data_commands.add_parser("show", help="counts, classes, sample grid, mean and PCA")
    show.add_argument("store")
    show.add_argument("--out", help="folder for the pictures (default: STORE/show)")
    show.add_argument("--split", default="train")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=_data_show)

    bench = commands.add_parser("bench", help="measure speed on this machine")
    bench_commands = bench.add_subparsers(dest="bench_command", required=True, metavar="WHAT")
    bench_data = bench_commands.add_parser(
        "data", help="views from a store, and prepare's decoding, per core"
    )
    bench_data.add_argument(
        "--photos",
        help="a folder of ImageNet-sized JPEGs for the decoding benchmark (default: made from "
        "scikit-image's sample photographs when it is installed)",
    )
    bench_data.add_argument("--images", type=int, default=2048, help="views per measurement")
    bench_data.add_argument("--repeats", type=int, default=5)
    _report_options(bench_data)
    bench_data.set_defaults(run=_bench_data)

    from alexnet.bench_model import DTYPES, MODELS, MODES

    bench_model = bench_commands.add_parser(
        "model",
        help="training and inference images/s of the networks, against the matmul limit",
        description="Images/s of training steps and inference for each network and precision, "
        "as a ratio to alexnet_owt (torchvision's architecture, plain eager PyTorch) and as a "
        "fraction of this machine's measured matrix-multiply throughput.",
    )
    bench_model.add_argument("--batch", type=int, default=128)
    bench_model.add_argument("--repeats", type=int, default=5, help="rounds (default: 5)")
    bench_model.add_argument("--steps", type=int, default=1, help="steps timed per round")
    bench_model.add_argument(
        "--warmup", type=int, default=2, help="untimed steps per configuration first (default: 2)"
    )
    bench_model.add_argument("--models", default=",".join(MODELS), help=MODELS_HELP)
    bench_model.add_argument(
        "--dtypes",
        default="auto",
        help="fp32,bf16; auto (default): fp32, and bf16 where the hardware has bf16 "
        "instructions (without them bf16 runs about 30x slower)",
    )
    bench_model.add_argument("--modes", default=",".join(MODES), help="train,infer")
    bench_model.add_argument("--device", default="cpu", help="cpu or cuda")
    bench_model.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    bench_model.add_argument(
        "--channels-last",
        nargs="?",
        const="all",
        metavar="MODELS",
        help="channels_last memory for every model, or for these (comma-separated)",
    )
    bench_model.add_argument(
        "--compile",
        nargs="?",
        const="all",
        metavar="MODELS",
        help="torch.compile every model, or these (comma-separated)",
    )
    bench_model.add_argument(
        "--no-fuse", action="store_true", help="run ReLU, LRN and pooling as separate layers"
    )
    bench_model.add_argument(
        "--lrn-backend",
        default="auto",
        choices=LRN_BACKENDS,
        help="torch: LRN as torch operations, also on CPU; triton: the GPU kernels "
        "(torch and triton imply --no-fuse)",
    )
    bench_model.add_argument(
        "--tower-conv",
        default="auto",
        choices=TOWER_CONV_MODES,
        help="conv2, conv4, conv5 as one grouped call or one call per tower (auto: grouped "
        "on CPU, split on CUDA)",
    )
    bench_model.add_argument(
        "--conv1-grad",
        default="auto",
        choices=IMAGE_GRAD_MODES,
        help="conv1's weight gradient on CPU in fp32 (auto: space-to-depth with AVX-512, "
        "direct elsewhere)",
    )
    bench_model.add_argument(
        "--malloc",
        default="keep",
        choices=("keep", "system"),
        help="system: glibc's defaults, which page-fault every step's activations afresh",
    )
    bench_model.add_argument(
        "--in-process",
        action="store_true",
        help="run every configuration in this process (default: a process per model and "
        "dtype, as training runs one; their allocations then do not interleave)",
    )
    _report_options(bench_model)
    bench_model.set_defaults(run=_bench_model)

    bench_fused = bench_commands.add_parser(
        "fused",
        help="the fused ReLU-LRN-pool kernel alone, forward and backward, on conv1's and "
        "conv2's blocks",
    )
    bench_fused.add_argument("--batch", type=int, default=128)
    bench_fused.add_argument("--repeats", type=int, default=7)
    bench_fused.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    _report_options(bench_fused)
    bench_fused.set_defaults(run=_bench_fused)

    bench_profile = bench_commands.add_parser(
        "profile",
        help="where a step's time goes, operation by operation (torch.profiler)",
        description="The steps of `alexnet bench model`, recorded with torch.profiler: for "
        "each network the operations that take the most time per step (device time on a "
        "GPU, each operation's own CPU time on the CPU).",
    )
    bench_profile.add_argument("--models", default=",".join(MODELS), help=MODELS_HELP)
    bench_profile.add_argument("--mode", default="train", choices=MODES)
    bench_profile.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", *DTYPES),
        help=AUTO_PRECISION_HELP + " (the default)",
    )
    bench_profile.add_argument("--batch", type=int, default=128)
    bench_profile.add_argument("--steps", type=int, default=5, help="steps recorded")
    bench_profile.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    bench_profile.add_argument("--device", default="cpu", help="cpu or cuda")
    bench_profile.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    bench_profile.add_argument("--channels-last", action="store_true")
    bench_profile.add_argument("--compile", action="store_true", help="torch.compile the models")
    bench_profile.add_argument("--no-fuse", action="store_true")
    bench_profile.add_argument("--lrn-backend", default="auto", choices=LRN_BACKENDS)
    bench_profile.add_argument("--tower-conv", default="auto", choices=TOWER_CONV_MODES)
    bench_profile.add_argument("--conv1-grad", default="auto", choices=IMAGE_GRAD_MODES)
    bench_profile.add_argument("--top", type=int, default=15, help="operations listed per model")
    bench_profile.add_argument("--trace", metavar="DIR", help="also write Chrome traces here")
    bench_profile.add_argument(
        "--by-shape", action="store_true", help="a row per operation and input shapes"
    )
    _report_options(bench_profile)
    bench_profile.set_defaults(run=_bench_profile)

    bench_train = bench_commands.add_parser(
        "train",
        help="training from the store against the same steps on synthetic input",
        description="Alternating rounds of a recipe's training step fed by the real loader "
        "and by one batch held in memory; their ratio is what the data path costs.",
    )
    bench_train.add_argument(
        "--config", required=True, help="a recipe, e.g. configs/fashion-mnist.yaml"
    )
    bench_train.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    bench_train.add_argument("--steps", type=int, default=20, help="timed steps per round")
    bench_train.add_argument("--rounds", type=int, default=3)
    _report_options(bench_train)
    bench_train.set_defaults(run=_bench_train)

    train = commands.add_parser(
        "train",
        help="train with a recipe (configs/*.yaml); resumable",
        description="Train with the paper's recipe on a prepared store. Writes a run "
        "directory (config, metrics.jsonl, TensorBoard events, checkpoints). Ctrl-C saves "
        "a checkpoint first; --resume continues exactly where a run stopped.",
    )
    train.add_argument("--config", help="the recipe, e.g. configs/fashion-mnist.yaml")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one key of the recipe, e.g. run.epochs=10 (repeatable)",
    )
    train.add_argument("--out", help="run directory (default: runs/RECIPE-DATE-TIME)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser(
        "eval",
        help="top-1/top-5 error of a checkpoint (or an ensemble) on a store",
        description="Top-1 and top-5 error, per-class error and the most confused classes, "
        "as JSON and a PNG. Several checkpoints are an ensemble: their softmax outputs are "
        "averaged, as in the paper's 5-CNN entry.",
    )
    evaluate.add_argument(
        "--checkpoint",
        nargs="+",
        required=True,
        metavar="C",
        help="checkpoint files or run directories (their last.pt)",
    )
    evaluate.add_argument("--data", required=True, help="a prepared store")
    evaluate.add_argument("--split", default="val")
    evaluate.add_argument(
        "--views",
        choices=("center", "ten-crop"),
        default="center",
        help="ten-crop: average the softmax over 5 patches and reflections",
    )
    evaluate.add_argument("--batch", type=int, default=128, help="images per batch")
    evaluate.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16", "auto"),
        default="fp32",
        help=AUTO_PRECISION_HELP,
    )
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--workers", type=int, default=1)
    evaluate.add_argument("--limit", type=int, help="only the first N images")
    evaluate.add_argument(
        "--out",
        help="folder for eval.json and eval.png (default: beside the first checkpoint's run)",
    )
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(run=_eval)

    pred = commands.add_parser(
        "predict",
        help="the five most probable classes of images",
        description="Each image is prepared as the training data was and classified.",
    )
    pred.add_argument("image", nargs="+")
    pred.add_argument("--checkpoint", required=True, help="a checkpoint file or run directory")
    pred.add_argument("--views", choices=("center", "ten-crop"), default="center")
    pred.add_argument("--top", type=int, default=5)
    pred.add_argument("--device", default="auto")
    pred.add_argument("--json", action="store_true")
    pred.set_defaults(run=_predict)

    figures = commands.add_parser("figures", help="the paper's pictures for a checkpoint")
    figure_commands = figures.add_subparsers(dest="figure", required=True)
    filt = figure_commands.add_parser(
        "filters",
        help="conv1's kernels as a grid, tower A above tower B (Figure 3)",
        description="The conv1 kernels, each stretched to its own range, tower A's above "
        "tower B's, and per tower the mean color specificity: the share of a kernel's "
        "variance that lies between its color channels (0: gray).",
    )
    filt.add_argument("--checkpoint", required=True, help="a checkpoint file or run directory")
    filt.add_argument("--out", help="folder (default: RUN_DIR/figures)")
    filt.set_defaults(run=_figures_filters)
    preds = figure_commands.add_parser(
        "predictions",
        help="images with their five most probable labels (Figure 4, left)",
    )
    preds.add_argument("--checkpoint", required=True, help="a checkpoint file or run directory")
    preds.add_argument("--data", required=True, help="a prepared store")
    preds.add_argument("--split", default="val")
    preds.add_argument("--count", type=int, default=8, help="images shown")
    preds.add_argument("--seed", type=int, default=0, help="which images: drawn with this seed")
    preds.add_argument("--device", default="auto")
    preds.add_argument("--out", help="folder (default: RUN_DIR/figures)")
    preds.set_defaults(run=_figures_predictions)

    near = commands.add_parser(
        "neighbors",
        help="nearest training images by fc7, by pixels, and by binary codes (Figure 4)",
        description="Builds (once) an index of the training images' fc7 vectors, then finds "
        "each query's nearest training images by fc7 and by raw pixels, and with --codes "
        "by Hamming distance between binary codes an autoencoder learns from fc7. Reports "
        "precision at k (neighbors with the query's label) and queries per second.",
    )
    near.add_argument("--checkpoint", required=True, help="a checkpoint file or run directory")
    near.add_argument("--data", required=True, help="a prepared store")
    near.add_argument("--query", nargs="+", metavar="IMAGE", help="image files to look up too")
    near.add_argument("--codes", metavar="BITS", help="code lengths, e.g. 16,64,256")
    near.add_argument("--k", type=int, default=8, help="neighbors per query")
    near.add_argument("--queries", type=int, default=1000, help="val images scored")
    near.add_argument("--shown", type=int, default=6, help="val queries in the figure")
    near.add_argument("--limit", type=int, help="index only the first N training images")
    near.add_argument("--epochs", type=int, default=10, help="autoencoder epochs")
    near.add_argument("--batch", type=int, default=128)
    near.add_argument("--workers", type=int, default=1)
    near.add_argument("--device", default="auto")
    near.add_argument(
        "--precision",
        choices=("fp32", "bf16", "auto"),
        default="fp32",
        help=AUTO_PRECISION_HELP,
    )
    near.add_argument("--seed", type=int, default=0)
    near.add_argument("--out", help="folder (default: RUN_DIR/neighbors)")
    near.add_argument("--json", action="store_true")
    near.set_defaults(run=_neighbors)

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
    abl.set_defaults(run=_ablate)

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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except ValueError as err:  # a user's mistake: one line, no traceback
        print(f"alexnet {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
