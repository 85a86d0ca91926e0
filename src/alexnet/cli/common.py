"""What several command groups share: option parsing, the choices spelled out (so that
`--help` imports no kernel), and writing a command's JSON result.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

#: alexnet.kernels.lrn.BACKENDS, spelled out so that `--help` does not import numba.
LRN_BACKENDS = ("auto", "kernel", "torch", "triton")


#: alexnet.nn.conv.TOWER_CONV_MODES, likewise.
TOWER_CONV_MODES = ("auto", "grouped", "split")


#: alexnet.nn.conv.IMAGE_GRAD_MODES, likewise.
IMAGE_GRAD_MODES = ("auto", "direct", "space-to-depth")


MODELS_HELP = (
    "comma-separated networks, each a name from `alexnet models` with any config options as "
    ":KEY=VALUE, e.g. alexnet2012:lrn=False (default: %(default)s)"
)


#: `--runtime`: PyTorch, or alexnet.export.runtimes.RUNTIMES (not imported for --help's sake)
RUNTIME_CHOICES = ("torch", "onnxruntime", "openvino")

AUTO_PRECISION_HELP = "auto: bf16 where the hardware has bf16 instructions, else fp32"


def parse_option(text: str) -> tuple[str, str]:
    """KEY=VALUE, the value's text as given (read by the network's field type once the
    network is known: `alexnet.models.registry.option_value`)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), raw


def run_folder(checkpoint: str, name: str, out: str | None) -> Path:
    """--out, or NAME in the run directory the checkpoint belongs to."""
    if out:
        return Path(out)
    path = Path(checkpoint)
    run_dir = path if path.is_dir() else path.parent.parent
    return run_dir / name


def write_result(args: argparse.Namespace, result: dict) -> None:
    """A benchmark's table (or JSON with --json), and its JSON in --output."""
    print(json.dumps(result, indent=2) if args.json else result["table"])
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2))


def add_report_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--output", help="also write the JSON here")


def argv_is_cli() -> bool:
    return Path(sys.argv[0]).name in ("alexnet", "__main__.py")


def command_line() -> str | None:
    """The command as typed, for a result's record, so that it can be run again (None when
    the command was called from Python, as the tests do)."""
    return "alexnet " + shlex.join(sys.argv[1:]) if argv_is_cli() else None
