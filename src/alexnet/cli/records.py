"""`alexnet report-docs`: the docs' tables and figures, drawn again from their records."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alexnet.core.errors import UserError


def _report_docs(args: argparse.Namespace) -> None:
    from alexnet.records.pages import PAGES, draw, regenerate

    root = Path(args.root)
    missing = [page for page in PAGES if not (root / page).is_file()]
    if missing:
        raise UserError(f"{root.resolve()} is not the project's root: {missing[0]} is missing")
    outcome = regenerate(root, check=args.check)
    if args.check:
        if outcome.changed:
            sys.stdout.write(outcome.output)
            raise UserError(f"{len(outcome.changed)} page(s) differ from their records: "
                            f"{', '.join(outcome.changed)}; run `alexnet report-docs`")  # fmt: skip
        print(f"{len(PAGES)} pages agree with their records")
        return
    print(f"{len(outcome.changed)} of {len(PAGES)} pages rewritten from their records"
          + "".join(f"\n  {page}" for page in outcome.changed))  # fmt: skip
    if args.figures:
        drawn = draw(root)
        print(f"{len(drawn)} figures drawn from their records")


def add_commands(commands: argparse._SubParsersAction) -> None:
    rep = commands.add_parser(
        "report-docs",
        help="write the docs' tables (and figures) from the committed records",
        description="Every table between generator markers in the results, benchmarks and "
        "reproduction pages is written again from its record under docs/runs or docs/bench. "
        "--check only compares, and fails when a page differs from its records.",
    )
    rep.add_argument("--check", action="store_true",
                     help="change nothing; fail if a page differs from its records")  # fmt: skip
    rep.add_argument("--figures", action="store_true",
                     help="also redraw the figures (PNG) from their records")  # fmt: skip
    rep.add_argument("--root", default=".", help="the project's root (default: here)")
    rep.set_defaults(run=_report_docs)
