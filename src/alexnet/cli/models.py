"""`alexnet models`, `alexnet summary` and `alexnet import`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from alexnet.cli.common import parse_option
from alexnet.core.errors import UserError
from alexnet.models.registry import DEFAULT_MODEL, VARIANTS, list_models, option_value


def _summary(args: argparse.Namespace) -> None:
    from alexnet.models.summary import summarize

    summary = summarize(
        args.model,
        input_size=args.input_size,
        num_classes=args.num_classes,
        in_chans=args.in_chans,
        **{key: option_value(args.model, key, raw) for key, raw in args.option},
    )
    print(json.dumps(summary.to_dict(), indent=2) if args.json else summary.table())


def _models(args: argparse.Namespace) -> None:
    if args.json:
        out = {n: {"summary": v.summary, "differences": v.differences} for n, v in VARIANTS.items()}
        print(json.dumps(out, indent=2))
        return
    for name, variant in VARIANTS.items():
        print(f"{name}\n    {variant.summary}\n    differences: {variant.differences}")


def _import_torchvision(args: argparse.Namespace) -> None:
    import torch

    from alexnet.models import checkpoint as ckpt
    from alexnet.models.transfer import sha256
    from alexnet.models.weights import torchvision_checkpoint

    out = Path(args.out)
    if not out.parent.is_dir():
        raise UserError(f"the folder of --out does not exist: {out.parent}")
    try:
        state = torch.load(args.file, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"no file at {args.file}") from None
    except Exception as error:  # not a torch file, or one that pickles code
        raise UserError(f"{args.file} is not a readable state dict ({type(error).__name__}: "
                         f"{str(error).splitlines()[0][:200]})") from None  # fmt: skip
    if not isinstance(state, dict):
        raise UserError(f"{args.file} holds a {type(state).__name__}, not a state dict")
    checkpoint = torchvision_checkpoint(state, source=str(args.file), sha256=sha256(args.file))
    ckpt.save(out, checkpoint)
    classes = len(checkpoint["record"].classes)
    print(f"wrote {out}: alexnet_owt, {classes} classes, torchvision's preprocessing")


def add_commands(commands) -> None:
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

    imports = commands.add_parser("import", help="weights from other codebases as checkpoints")
    sources = imports.add_subparsers(dest="source", required=True, metavar="SOURCE")
    tv = sources.add_parser(
        "torchvision",
        help="torchvision's AlexNet state dict (e.g. its IMAGENET1K_V1 file)",
        description="The weights become an alexnet_owt checkpoint with the ILSVRC-2012 class "
        "ids and names (for 1,000 outputs) and torchvision's preprocessing (shorter side "
        "256, center 224, per-channel mean and std), which eval, predict, explain, export "
        "and --init-from take as they take this package's checkpoints.",
    )
    tv.add_argument("file", help="the state dict (.pth), loaded without running pickled code")
    tv.add_argument("--out", required=True, help="the checkpoint to write")
    tv.set_defaults(run=_import_torchvision)
