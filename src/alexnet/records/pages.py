"""Regenerate the docs' generated tables (cogapp) and figures from the committed records."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alexnet.records import tables

#: The pages whose tables are generated, relative to the repository's root.
PAGES = (
    "README.md",
    "docs/results.md",
    "docs/results-fashion-mnist.md",
    "docs/results-transfer.md",
    "docs/results-large-batch.md",
    "docs/results-figures.md",
    "docs/results-torchvision.md",
    "docs/benchmarks.md",
    "docs/benchmarks-model.md",
    "docs/benchmarks-model-more.md",
    "docs/benchmarks-runtimes.md",
    "docs/benchmarks-gpu.md",
    "docs/reproduction.md",
    "docs/reproduction-lrn.md",
    "docs/reproduction-more.md",
    "docs/serving-load.md",
    "docs/scaling.md",
    "docs/imagenet.md",
    "docs/runs/fashion-mnist-h100/README.md",
    "docs/runs/fashion-mnist-cpu/README.md",
    "docs/runs/fashion-mnist-plateau/README.md",
    "docs/runs/fashion-mnist-holdout/README.md",
    "docs/runs/tiny-a-first/README.md",
    "docs/runs/tiny-a/README.md",
    "docs/runs/tiny-a3/README.md",
    "docs/runs/transfer-b-first/README.md",
    "docs/runs/transfer-b/README.md",
    "docs/runs/transfer-b3/README.md",
)
#: What the generator blocks see: the table functions, by name.
PROLOGUE = "from alexnet.records.tables import *"
#: cogapp's exit status when --check finds a page that would change.
CHECK_FAILED = 5


@dataclass
class Outcome:
    changed: list[str]  # pages that differ from their records (check) or were rewritten
    output: str  # cogapp's report, its diff included


def regenerate(root: Path, check: bool = False, pages: tuple[str, ...] = PAGES) -> Outcome:
    """Run every page's generator blocks; rewrite the pages, or with `check` only compare."""
    import cogapp

    root = Path(root).resolve()
    files = [str(root / page) for page in pages]
    before = {f: Path(f).read_text() for f in files}
    argv = ["cog", "-P", "-p", PROLOGUE, "--verbosity", "1"]
    argv += ["--check", "--diff"] if check else ["-r"]
    out = io.StringIO()
    saved, tables.ROOT = tables.ROOT, root
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            status = cogapp.Cog().main([*argv, *files])
    finally:
        tables.ROOT = saved
    if status not in (0, CHECK_FAILED):  # an error in a block (cogapp stops there)
        raise RuntimeError(out.getvalue())
    if check:
        changed = [page for page, f in zip(pages, files, strict=True)
                   if f"Checking {f}  (changed)" in out.getvalue()]  # fmt: skip
    else:
        after = {f: Path(f).read_text() for f in files}
        changed = [page for page, f in zip(pages, files, strict=True) if after[f] != before[f]]
    return Outcome(changed, out.getvalue())


@dataclass(frozen=True)
class Figure:
    """A PNG in the docs and what draws it from its record (paths from the project's root)."""

    png: str
    record: str
    draw: Callable[[Path, Path], None]  # (record, png)


def figures() -> list[Figure]:
    """Every figure of the results, benchmarks and reproduction pages that a record draws."""
    from alexnet.records import figures as draw

    studies = ["ablate-relu-tanh", "ablate-lrn", "ablate-lrn-cifar4",
               "ablate-lrn-cifar-local", "ablate-lrn-lr0.003", "ablate-pooling",
               "ablate-pooling-cifar4", "ablate-towers", "ablate-dropout",
               "ablate-pca-lighting", "ablate-depth", "ablate-torchvision",
               "ablate-torchvision-lr0.003"]  # fmt: skip
    found = [Figure(f"docs/runs/{s}/ablate.png", f"docs/runs/{s}/ablate.json", draw.ablation)
             for s in studies]  # fmt: skip
    grids = ("transfer-b-first", "transfer-b", "transfer-b3")
    found += [Figure(f"docs/runs/{s}/transfer.png", f"docs/runs/{s}/transfer.json",
                     draw.transfer_study) for s in grids]  # fmt: skip
    found += [
        Figure("docs/runs/transfer-compare/compare.png", "docs/runs/transfer-compare/compare.json",
               draw.transfer_compare),
        Figure("docs/runs/large-batch/held-out.png", "docs/runs/large-batch/summary.json",
               draw.large_batch),
        Figure("docs/bench/speed-by-host.png", ".", draw.speed_by_host),
    ]  # fmt: skip
    found += [Figure(f"docs/runs/{r}/curves.png", f"docs/runs/{r}/metrics.jsonl", draw.curves)
              for r in ("fashion-mnist-holdout", "fashion-mnist-h100", "fashion-mnist-cpu",
                        "fashion-mnist-plateau", "tiny-imagenet-60min", "tiny-a-first", "tiny-a",
                        "tiny-a3", "tiny-sub-h100")]  # fmt: skip
    return found


def draw(root: Path, out: Path | None = None) -> list[Path]:
    """Redraw every figure from its record: in place, or under `out` (the same paths)."""
    root = Path(root)
    drawn = []
    for figure in figures():
        png = (out or root) / figure.png
        png.parent.mkdir(parents=True, exist_ok=True)
        figure.draw(root / figure.record, png)
        drawn.append(png)
    return drawn
