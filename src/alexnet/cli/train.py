"""`alexnet train`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from alexnet.core.errors import UserError


def run_from_args(config_path, overrides, out, resume) -> tuple[dict | None, Path]:
    """What `alexnet train` does: read the recipe (or the run's own), then train; the last
    epoch's metrics and the run directory."""
    import shlex
    import time

    from alexnet.models.checkpoint import CheckpointError
    from alexnet.train.config import load_config
    from alexnet.train.trainer import train

    if resume:
        saved = Path(resume) / "config.yaml"
        if not saved.is_file():
            raise CheckpointError(
                f"{resume} is not a run directory (no config.yaml); start a new run with "
                "`alexnet train --config ...`"
            )
        config = load_config(saved, overrides)
        run_dir = Path(resume)
    else:
        config = load_config(config_path, overrides)
        stem = Path(config_path).stem if config_path else "run"
        run_dir = Path(out) if out else Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    command = "alexnet " + shlex.join(sys.argv[1:])
    return train(config, run_dir, resume=bool(resume), command=command), run_dir


def _train(args: argparse.Namespace) -> None:
    from alexnet.train.trainer import TrainingError

    if args.auto_resume:
        if not args.out or args.resume:
            raise UserError("--auto-resume takes --out RUN_DIR (and --config for the first "
                             "start), not --resume")  # fmt: skip
        if (Path(args.out) / "checkpoints" / "last.pt").is_file():
            # torchrun --max-restarts runs the same command again after a failure: the run
            # goes on from its last checkpoint, with its own recipe
            args.resume, args.config, args.set, args.init_from = args.out, None, [], None
            args.out = None
    if not args.config and not args.resume:
        raise UserError("give a recipe with --config configs/NAME.yaml, or --resume RUN_DIR")
    overrides = list(args.set)
    if args.init_from:
        if args.resume:
            raise UserError("--init-from starts a new run; --resume continues from the run's "
                             "own checkpoints")  # fmt: skip
        overrides.append(("run.init_from", args.init_from))  # a path: never read as YAML
    try:
        metrics, run_dir = run_from_args(args.config, overrides, args.out, args.resume)
    except TrainingError as error:
        print(f"alexnet train: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    if int(os.environ.get("RANK", "0")) != 0:
        return
    if metrics is not None:
        print(
            f"{run_dir}: epoch {metrics['epoch']}, validation top-1 error "
            f"{100 * metrics['val_top1_error']:.2f}%, top-5 {100 * metrics['val_top5_error']:.2f}%"
            f" ({metrics['val_views']}, {metrics['val_images']:,} images)\n"
            f"  checkpoints: {run_dir / 'checkpoints'}  metrics: {run_dir / 'metrics.jsonl'}"
        )
    if args.test:
        _test(Path(run_dir))


def _test(run_dir: Path) -> None:
    """The checkpoint validation chose, on the test of record (data.val_split), with the
    center crop and ten crops: what `alexnet eval --split S` does, for each."""
    from alexnet.cli.evaluate import evaluate_and_write
    from alexnet.train.config import load_config

    config = load_config(run_dir / "config.yaml")
    data = config.data
    if data.holdout is None:
        print(
            f"note: the {data.val_split} split also validated this run (it chose best.pt and "
            "drove the schedule), so its errors below are not test errors; set data.holdout "
            "to validate on held-out training images",
            file=sys.stderr,
        )
    best = run_dir / "checkpoints" / "best.pt"
    for views in ("center", "ten-crop"):
        evaluate_and_write(
            [str(best)],
            data.store,
            split=data.val_split,
            views=views,
            precision=config.run.precision,
            device=config.run.device,
            workers=data.workers,
            out=run_dir / f"test-{data.val_split}-{views}",
        )


def _how_to_continue(args: argparse.Namespace) -> str:
    run_dir = args.resume or args.out or "RUN_DIR"  # --out is the run's folder when given
    return f"continue with `alexnet train --resume {run_dir}`"


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
    train.add_argument(
        "--auto-resume",
        action="store_true",
        help="with --out RUN_DIR: continue the run there if RUN_DIR holds a checkpoint, else "
        "start it with --config. The same command then starts and restarts a run, as "
        "`torchrun --max-restarts=N` and job schedulers that requeue a job need",
    )
    train.add_argument(
        "--init-from",
        metavar="SOURCE",
        help="start from these weights, layer by layer: a checkpoint, run directory or "
        "exported .safetensors of the same network (run.init_from; model.reinit names the "
        "layers that start afresh, e.g. fc8 for another number of classes)",
    )
    train.add_argument(
        "--test",
        action="store_true",
        help="when training ends, evaluate best.pt on data.val_split (the test of record "
        "when data.holdout validates), center and ten crops, into RUN_DIR/test-SPLIT-VIEWS",
    )
    train.set_defaults(run=_train, interrupted=_how_to_continue)
