"""The `alexnet` command."""

from __future__ import annotations

import argparse
import ast
import json
import sys

from alexnet.registry import DEFAULT_MODEL, VARIANTS, list_models


def parse_option(text: str) -> tuple[str, object]:
    """KEY=VALUE, the value read as a Python literal where it is one (2, 0.5, False,
    (48, 128, 192, 192, 256), None) and as a string otherwise (tanh)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key.strip(), value


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
