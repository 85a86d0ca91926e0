"""`alexnet data prepare` and `alexnet data show`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from alexnet.cli.common import command_line


def _data_prepare(args: argparse.Namespace) -> None:
    import logging

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
    command = command_line()
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


def _data_show(args: argparse.Namespace) -> None:
    from alexnet.data.show import show

    info = show(args.store, args.out, args.split)
    if args.json:
        print(json.dumps({k: v for k, v in info.items() if k != "text"}, indent=2))
    else:
        print(info["text"])
        print("  pictures: " + ", ".join(info["pictures"]))


def add_commands(commands) -> None:
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
