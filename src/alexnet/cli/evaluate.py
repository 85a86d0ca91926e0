"""`alexnet eval`, `predict`, `figures` and `neighbors`."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from alexnet.cli.common import AUTO_PRECISION_HELP, RUNTIME_CHOICES, command_line, run_folder
from alexnet.core.errors import UserError


def _figures_filters(args: argparse.Namespace) -> None:
    from alexnet.evaluate.figures import filters

    out = run_folder(args.checkpoint, "figures", args.out)
    result = filters(args.checkpoint, out)
    result["command"] = command_line()
    (out / "filters.json").write_text(json.dumps(result, indent=2))
    scores = result["color_specificity"]
    if scores:
        print("color specificity (mean over kernels): "
              + ", ".join(f"{k} {v['mean']:.3f}" for k, v in scores.items()))  # fmt: skip
    else:
        print(result["note"])
    print(f"wrote {out / 'filters.png'} and {out / 'filters.json'}")


def _figures_predictions(args: argparse.Namespace) -> None:
    from alexnet.evaluate.figures import predictions

    out = run_folder(args.checkpoint, "figures", args.out)
    result = predictions(args.checkpoint, args.data, out, count=args.count, split=args.split,
                         seed=args.seed, device=args.device)  # fmt: skip
    result["command"] = command_line()
    (out / "predictions.json").write_text(json.dumps(result, indent=2))
    right = sum(item["correct"] for item in result["images"])
    print(f"{right} of {len(result['images'])} images right at top-1")
    print(f"wrote {out / 'predictions.png'} and {out / 'predictions.json'}")


def _neighbors(args: argparse.Namespace) -> None:
    from alexnet.evaluate.neighbors import NeighborSearch, run

    out = run_folder(args.checkpoint, "neighbors", args.out)
    bits = [int(b) for b in args.codes.split(",")] if args.codes else []
    search = NeighborSearch(k=args.k, queries=args.queries, shown=args.shown,
                            query_images=args.query, bits=bits, limit=args.limit,
                            epochs=args.epochs, batch=args.batch, workers=args.workers,
                            device=args.device, precision=args.precision, seed=args.seed,
                            progress=not args.json)  # fmt: skip
    result = run(args.checkpoint, args.data, out, search)
    result["command"] = command_line()
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


def _eval(args: argparse.Namespace) -> None:
    split, images = args.split, None
    if args.holdout:  # the images a run held out of its training split
        split, images = _held_out(args.holdout)
    evaluate_and_write(
        args.checkpoint,
        args.data,
        split=split,
        images=images,
        views=args.views,
        batch_size=args.batch,
        precision=args.precision,
        device=args.device,
        workers=args.workers,
        limit=args.limit,
        out=args.out,
        as_json=args.json,
    )


def _held_out(run: str) -> tuple[str, list[int]]:
    """The split and indices of the images `run` held out (its holdout.json)."""
    path = Path(run) / "holdout.json"
    try:
        saved = json.loads(path.read_text())
        return saved["split"], [int(i) for i in saved["indices"]]
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f"{run} has no readable holdout.json ({error}): it held no images "
                         "out (data.holdout)") from None  # fmt: skip


def evaluate_and_write(
    checkpoints, data, *, split, views, out=None, as_json=False, **options
) -> dict:
    """Evaluate, write eval.json and eval.png (beside the first checkpoint's run unless
    `out`), and print the summary; what `alexnet eval` and `alexnet train --test` do."""
    from alexnet.evaluate.eval import evaluate_checkpoints, plot

    result = evaluate_checkpoints(
        checkpoints, data, split=split, views=views, progress=not as_json, **options
    )
    first = Path(result["checkpoints"][0])
    name = split if options.get("images") is None else "holdout"
    out = Path(out) if out else first.parent.parent / f"eval-{name}-{views}"
    out.mkdir(parents=True, exist_ok=True)
    result["command"] = command_line()
    result["confusion"] = result["confusion"].tolist()
    (out / "eval.json").write_text(json.dumps(result, indent=2))
    plot(result, out / "eval.png")
    if as_json:
        print(json.dumps({k: v for k, v in result.items() if k != "confusion"}, indent=2))
        return result
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
    return result


def _predict(args: argparse.Namespace) -> None:
    from alexnet.evaluate.predict import list_photos, predict_files

    out = Path(args.out) if args.out else None
    if out is not None:
        if out.suffix.lower() not in (".csv", ".jsonl"):
            raise UserError(f"--out must end in .csv or .jsonl, got {out.name}")
        if not out.parent.is_dir():
            raise UserError(f"the folder of --out does not exist: {out.parent}")
    files = list_photos(args.image)
    if not files:
        raise UserError("no images found in " + ", ".join(args.image))
    options = {"views": args.views, "top": args.top, "batch_size": args.batch,
               "workers": args.workers, "device": args.device,
               "progress": out is not None}  # fmt: skip
    with contextlib.ExitStack() as stack:
        if args.runtime == "torch":
            rows = predict_files(files, args.checkpoint, precision=args.precision, **options)
        else:
            import logging

            import torch

            from alexnet.core.runtime import resolve_precision
            from alexnet.export.runtimes import exported
            from alexnet.models import checkpoint as ckpt

            loaded = ckpt.load(args.checkpoint)
            cpu, log = torch.device("cpu"), logging.getLogger("alexnet")
            precision = resolve_precision(args.precision, cpu, log)
            network = stack.enter_context(exported(loaded, args.runtime, precision))
            rows = predict_files(files, loaded, network=network, **options)
        failed = _write_predictions(rows, out, args.top) if out else _print_predictions(rows, args)
    if failed:
        print(f"alexnet predict: {failed} of {len(files)} files gave no prediction "
              "(their rows say why)", file=sys.stderr)  # fmt: skip
        raise SystemExit(1)


def _print_predictions(rows, args: argparse.Namespace) -> int:
    failed, results = 0, []
    for row in rows:
        failed += row["error"] is not None
        if args.json:
            results.append(row)
        elif row["error"] is not None:
            print(f"{row['image']}: error: {row['error']}")
        else:
            print(f"{row['image']} ({row['views']})")
            for rank, entry in enumerate(row["top"], 1):
                print(f"  {rank}. {100 * entry['probability']:6.2f}%  {entry['name']}")
    if args.json:
        print(json.dumps(results, indent=2))
    return failed


def _write_predictions(rows, out: Path, top: int) -> int:
    """Rows into a CSV or JSONL file, written under a temporary name and renamed when
    complete: an interrupted run leaves no file that looks finished."""
    import csv

    temporary = out.with_name(f".{out.name}.tmp")
    failed = written = 0
    try:
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            if out.suffix.lower() == ".csv":
                columns = ["file", "error"] + [
                    f"top{k}_{field}"
                    for k in range(1, top + 1)
                    for field in ("id", "name", "probability")
                ]
                writer = csv.writer(handle)
                writer.writerow(columns)
            for row in rows:
                failed += row["error"] is not None
                written += 1
                if out.suffix.lower() == ".csv":
                    cells = [row["image"], row["error"] or ""]
                    for entry in row["top"]:
                        cells += [entry["id"], entry["name"], f"{entry['probability']:.6g}"]
                    writer.writerow(cells + [""] * (len(columns) - len(cells)))
                else:
                    handle.write(json.dumps({"file": row["image"], "error": row["error"],
                                             "top": row["top"]}) + "\n")  # fmt: skip
        os.replace(temporary, out)
    finally:
        temporary.unlink(missing_ok=True)
    print(f"wrote {out}: {written - failed:,} predicted, {failed:,} failed")
    return failed


def _explain(args: argparse.Namespace) -> None:
    from alexnet.evaluate.explain import explain_files
    from alexnet.evaluate.predict import list_photos

    out = Path(args.out)
    if not out.parent.is_dir():
        raise UserError(f"the folder above --out does not exist: {out.parent}")
    files = list_photos(args.image)
    if not files:
        raise UserError("no images found in " + ", ".join(args.image))
    out.mkdir(exist_ok=True)
    results = explain_files(files, args.checkpoint, out, layer=args.layer, top=args.top,
                            device=args.device)  # fmt: skip
    (out / "explain.json").write_text(
        json.dumps({"command": command_line(), "images": results}, indent=2) + "\n"
    )
    for result in results:
        best = result["classes"][0]
        print(f"{result['image']}: {best['name']} {100 * best['probability']:.1f}% -> "
              f"{result['png']}")  # fmt: skip
    print(f"wrote {out / 'explain.json'}")


def _features(args: argparse.Namespace) -> None:
    from alexnet.evaluate.features import features

    if bool(args.data) == bool(args.image):
        raise UserError("give --data STORE or image files, one of the two")
    layers = [name.strip() for name in args.layers.split(",") if name.strip()]
    result = features(args.checkpoint, args.out, layers, data=args.data, split=args.split,
                      paths=args.image or None, batch=args.batch, workers=args.workers,
                      spatial_mean=args.spatial_mean, dtype=args.dtype, limit=args.limit,
                      device=args.device, class_ids=args.class_ids)  # fmt: skip
    for name, shape in result["layers"].items():
        print(f"  {name}: {' x '.join(map(str, shape))} {args.dtype}")
    if result["failed"]:
        print(f"alexnet features: {len(result['failed'])} files could not be read; their rows "
              "are NaN (features.json lists them)", file=sys.stderr)  # fmt: skip
    print(f"wrote {args.out}: {result['images']:,} images")


def _probe(args: argparse.Namespace) -> None:
    from alexnet.evaluate.probe import probe

    result = probe(args.train, args.test, layer=args.layer)
    result["command"] = command_line()
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    test = result["test"]
    print(f"linear probe on {args.layer} ({result['train']['features']:,} features, "
          f"{result['train']['images']:,} training images, l2 {result['l2']:g} chosen on a "
          f"held-out tenth of them)\n  test: top-1 error {100 * test['top1_error']:.2f}%, "
          f"top-5 {100 * test['top5_error']:.2f}% on {test['images']:,} images")  # fmt: skip


def add_commands(commands) -> None:
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
    evaluate.add_argument("--holdout", metavar="RUN", help="the images the run RUN held out "
                          "of its training split (data.holdout) instead of a split")  # fmt: skip
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
        help="the most probable classes of images, files or whole folders",
        description="Each image is prepared as the training data was (turned upright by its "
        "EXIF orientation first) and classified, in batches. A PATH is an image, a folder "
        "(searched recursively for .jpg .jpeg .png .webp .bmp .gif .tif .tiff) or a .txt "
        "or .lst file of paths, one per line. A file that cannot be read becomes an error "
        "row with its reason; the others are still predicted, and the exit status is 1.",
    )
    pred.add_argument("image", nargs="+", metavar="PATH")
    pred.add_argument("--checkpoint", required=True,
                      help="a checkpoint file, run directory or exported .safetensors")  # fmt: skip
    pred.add_argument("--views", choices=("center", "ten-crop"), default="center")
    pred.add_argument("--top", type=int, default=5)
    pred.add_argument("--out", help="write rows to this .csv or .jsonl file (with a progress bar)")
    pred.add_argument("--batch", type=int, default=64, help="images per batch")
    pred.add_argument("--workers", type=int, default=0,
                      help="processes that read and decode the images (0: this one)")  # fmt: skip
    pred.add_argument("--device", default="auto")
    pred.add_argument("--precision", choices=("fp32", "bf16", "fp16", "auto"), default="fp32",
                      help=AUTO_PRECISION_HELP)  # fmt: skip
    pred.add_argument("--runtime", choices=RUNTIME_CHOICES, default="torch",
                      help="what runs the network: PyTorch, or the network exported to ONNX "
                      "and run by ONNX Runtime (fp32) or OpenVINO (fp32, bf16), on the CPU; "
                      "docs/benchmarks.md says which is fastest where")  # fmt: skip
    pred.add_argument("--json", action="store_true", help="print the rows as JSON")
    pred.set_defaults(run=_predict)

    feat = commands.add_parser(
        "features",
        help="any layer's activations for a store's split or image files, as .npy arrays",
        description="The outputs of the named layers (conv1-conv5, fc6, fc7: rectified; fc8: "
        "logits; norm1, pool1, norm2, pool2, pool5) for every image, center crop, written "
        "to OUT/LAYER.npy a batch at a time (constant memory; an interrupted run leaves no "
        "file that looks complete), with OUT/files.txt, OUT/labels.npy for a store, and "
        "OUT/features.json.",
    )
    feat.add_argument("image", nargs="*", metavar="PATH", help="images, folders or lists")
    feat.add_argument("--checkpoint", required=True,
                      help="a checkpoint file, run directory or exported .safetensors")  # fmt: skip
    feat.add_argument("--data", help="a prepared store (instead of image files)")
    feat.add_argument("--split", default="val")
    feat.add_argument("--class-ids", metavar="FILE",
                      help="only the store's images of these classes (a file of ids, one a "
                      "line), labelled by their position in it")  # fmt: skip
    feat.add_argument("--layers", default="fc7", help="comma-separated, e.g. conv5,pool5,fc6,fc7")
    feat.add_argument("--spatial-mean", action="store_true",
                      help="average convolution and pooling maps over their positions")  # fmt: skip
    feat.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                      help="float16 halves the files (ImageNet's training set at fc7 is 21 GB "
                      "in float32)")  # fmt: skip
    feat.add_argument("--batch", type=int, default=128)
    feat.add_argument("--workers", type=int, default=0)
    feat.add_argument("--limit", type=int, help="only the first N images")
    feat.add_argument("--device", default="cpu")
    feat.add_argument("--out", required=True, help="the folder for the arrays")
    feat.set_defaults(run=_features)

    prob = commands.add_parser(
        "probe",
        help="a linear probe (multinomial logistic regression) on extracted features",
        description="Fits multinomial logistic regression on TRAIN/LAYER.npy and "
        "TRAIN/labels.npy (from `alexnet features --data`), the l2 strength chosen on a "
        "held-out tenth of the training features, and reports top-1 and top-5 error on "
        "TEST's.",
    )
    prob.add_argument("--train", required=True, help="features of the training images")
    prob.add_argument("--test", required=True, help="features of the test images")
    prob.add_argument("--layer", default="fc7")
    prob.add_argument("--out", help="also write the result as JSON here")
    prob.set_defaults(run=_probe)

    expl = commands.add_parser(
        "explain",
        help="Grad-CAM: where in each photo the network looked for its top classes",
        description="Grad-CAM (Selvaraju et al. 2017) of each photo's top classes, on the "
        "center crop as predict prepares it: OUT/NAME-gradcam.png (the crop and an overlay "
        "per class), OUT/NAME-gradcam.npy (the raw maps) and OUT/explain.json.",
    )
    expl.add_argument("image", nargs="+", metavar="PATH", help="images, folders or lists")
    expl.add_argument("--checkpoint", required=True,
                      help="a checkpoint file, run directory or exported .safetensors")  # fmt: skip
    expl.add_argument("--out", required=True, help="folder for the pictures and maps")
    expl.add_argument("--layer", default="conv5",
                      help="the layer whose maps are weighed: conv1-conv5 (their rectified "
                      "output), or any module by name (pool5, norm2, ...)")  # fmt: skip
    expl.add_argument("--top", type=int, default=3, help="classes per image")
    expl.add_argument("--device", default="cpu")
    expl.set_defaults(run=_explain)

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
