"""`alexnet train`."""

from __future__ import annotations

import argparse
import os
import sys


def _train(args: argparse.Namespace) -> None:
    from alexnet.train.trainer import TrainingError, run_from_args

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


def add_commands(commands) -> None:
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
