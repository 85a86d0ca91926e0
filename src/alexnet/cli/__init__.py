"""The `alexnet` command: a parser skeleton; each command group's options and handlers
live beside each other in this package's modules (models, data, bench, train, evaluate,
export, studies), and `common` holds what several of them share.

A user's mistake (alexnet.core.errors.UserError: a wrong path, a bad recipe, a refused
option) ends here with one line and exit status 2; `alexnet --debug COMMAND` adds its
traceback. Any other exception is a bug: its traceback is shown, with exit status 1. A
stopped command (Ctrl-C, or SIGTERM, which the trainer turns into KeyboardInterrupt once
it has saved its checkpoint) ends here with one line and exit status 130, never a traceback.
A command whose work can be continued says how with `set_defaults(interrupted=HINT)`,
HINT taking the parsed arguments and returning the line's second half."""

from __future__ import annotations

import argparse
import sys
import traceback

from alexnet.cli import bench, data, evaluate, export, models, records, serve, studies, train
from alexnet.core.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alexnet",
        description="AlexNet as Krizhevsky, Sutskever and Hinton (2012) describe it.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of a user's mistake too"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    models.add_commands(commands)
    data.add_commands(commands)
    bench.add_commands(commands)
    train.add_commands(commands)
    evaluate.add_commands(commands)
    export.add_commands(commands)
    serve.add_commands(commands)
    studies.add_commands(commands)
    records.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except UserError as err:  # a user's mistake: one line
        if args.debug:
            traceback.print_exc()
        print(f"alexnet {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = args.interrupted(args) if hasattr(args, "interrupted") else None
        print("interrupted" + (f": {hint}" if hint else ""), file=sys.stderr)
        return 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C
    except Exception:  # a bug, whatever its type: all of it, to be reported
        traceback.print_exc()
        print(f"alexnet {args.command}: an internal error (a bug in alexnet); please report "
              "it with the traceback above", file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
