"""`alexnet models` and `alexnet summary`."""

from __future__ import annotations

import argparse
import json

from alexnet.cli.common import parse_option
from alexnet.models.registry import DEFAULT_MODEL, VARIANTS, list_models


def _summary(args: argparse.Namespace) -> None:
    from alexnet.models.summary import summarize

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
