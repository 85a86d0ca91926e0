"""`alexnet data prepare` and `alexnet data show`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from alexnet.cli.common import command_line
from alexnet.core.errors import UserError


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
    report = prepare(
        settings,
        args.out,
        workers=args.workers,
        strict=args.strict,
        overwrite=args.overwrite,
        download_to=download_to,
        command=command,
    )
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


def _split_classes(args: argparse.Namespace) -> None:
    import numpy as np

    from alexnet.data.store import Store

    store = Store(args.store)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise UserError(f"the folder above --out does not exist: {out.parent}")
    ids = store.class_ids
    order = np.random.default_rng([args.seed, 0xAB]).permutation(len(ids))
    half = len(ids) // 2
    # each half in the store's order, so labels follow the store's
    parts = {"A": sorted(order[:half].tolist()), "B": sorted(order[half:].tolist())}
    out.mkdir(exist_ok=True)
    for name, members in parts.items():
        (out / f"{name}.txt").write_text("".join(f"{ids[i]}\n" for i in members))
    record = {"store": str(args.store), "seed": args.seed, "command": command_line(),
              **{name: [ids[i] for i in members] for name, members in parts.items()}}  # fmt: skip
    (out / "split.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}/A.txt ({half} classes) and {out}/B.txt ({len(ids) - half}); "
          f"train on one with --set data.class_ids={out}/A.txt")  # fmt: skip


def _data_verify(args: argparse.Namespace) -> None:
    from alexnet.data.store import Store

    report = Store(args.store).verify(progress=lambda name: print(f"  checked {name}"))
    if report["unchecked"]:
        print(f"{args.store} was prepared before stores kept checksums: nothing to compare "
              "(prepare it again to have them)")  # fmt: skip
        return
    for name in report["differ"]:
        print(f"  DIFFERS {name}", file=sys.stderr)
    for name in report["missing"]:
        print(f"  MISSING {name}", file=sys.stderr)
    bad = len(report["differ"]) + len(report["missing"])
    print(f"{args.store}: {len(report['checked'])} files as prepared, {bad} not")
    if bad:
        raise SystemExit(1)


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
    prep.set_defaults(
        run=_data_prepare,
        interrupted=lambda args: (
            f"the work done so far is kept in {args.out}; run the same command again to continue"
        ),
    )

    split = data_commands.add_parser(
        "split-classes",
        help="split a store's classes into two halves, A and B, by a seeded draw",
        description="Yosinski et al. (2014)'s design: the classes into halves A and B (for "
        "pretraining on one and transferring to the other). Writes OUT/A.txt and OUT/B.txt "
        "(class ids, one a line, in the store's order; data.class_ids and features "
        "--class-ids read them) and OUT/split.json.",
    )
    split.add_argument("store", help="a prepared store")
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--out", required=True, help="folder for A.txt, B.txt and split.json")
    split.set_defaults(run=_split_classes)

    verify = data_commands.add_parser(
        "verify",
        help="check a store's files against the SHA-256 its manifest recorded",
        description="Reads every split file of the store and compares its SHA-256 with the "
        "one `alexnet data prepare` recorded; exit status 1 when one differs or is missing.",
    )
    verify.add_argument("store", help="a prepared store")
    verify.set_defaults(run=_data_verify)

    show = data_commands.add_parser("show", help="counts, classes, sample grid, mean and PCA")
    show.add_argument("store")
    show.add_argument("--out", help="folder for the pictures (default: STORE/show)")
    show.add_argument("--split", default="train")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=_data_show)
