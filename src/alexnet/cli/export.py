"""`alexnet export`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from alexnet.core.errors import UserError

FORMATS = ("onnx", "pt2", "safetensors")


def _export(args: argparse.Namespace) -> None:
    from alexnet.models import checkpoint as ckpt

    out = Path(args.out)
    if not out.parent.is_dir():
        raise UserError(f"the folder of --out does not exist: {out.parent}")
    if out.is_dir():
        raise UserError(f"--out names a folder ({out}); give a file name")
    checkpoint = ckpt.load(args.checkpoint)
    ckpt.load_model(checkpoint)  # weights that do not fit their network are refused here
    if args.format == "safetensors":
        from alexnet.models.tensorfile import save_weights

        save_weights(checkpoint, out)
    elif args.format == "onnx":
        from alexnet.export.onnx import export_onnx

        export_onnx(checkpoint, out)
    else:
        from alexnet.export.program import export_program

        export_program(checkpoint, out)
    print(f"wrote {out} ({out.stat().st_size / 2**20:,.1f} MiB, {args.format})")
    if args.check:
        report = _check(args.format, checkpoint, out)
        path = out.with_name(out.name + ".check.json")
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report, indent=2))
        print(f"wrote {path}")


def _check(kind: str, checkpoint: dict, out: Path) -> dict:
    """What the written file gives back, against the package."""
    import torch

    from alexnet.cli.common import command_line
    from alexnet.models import checkpoint as ckpt

    report = {"file": str(out), "format": kind, "network": checkpoint["record"].network.name,
              "command": command_line()}  # fmt: skip
    if kind == "onnx":
        from alexnet.export.onnx import check_onnx, check_parity

        check_onnx(out)
        report["onnx_checker"] = "full check passed"
        report.update(check_parity(checkpoint, out))
    elif kind == "pt2":
        from alexnet.export.onnx import example_input
        from alexnet.export.program import load_program

        module, _ = load_program(out)
        model = ckpt.load_model(checkpoint)
        differences = {}
        for batch in (1, 8):
            x = example_input(checkpoint, batch, seed=batch)
            with torch.no_grad():
                differences[str(batch)] = float((module(x) - model(x)).abs().max())
        report["max_abs_logit_difference"] = differences
    else:
        loaded = ckpt.load(out)
        same = all(torch.equal(v, loaded["state_dict"][k])
                   for k, v in checkpoint["state_dict"].items())  # fmt: skip
        report["weights_identical"] = same and loaded["state_dict"].keys() == (
            checkpoint["state_dict"].keys()
        )
    return report


def add_commands(commands) -> None:
    export = commands.add_parser(
        "export",
        help="write a checkpoint's network as ONNX, a torch.export program or safetensors",
        description="onnx: for ONNX Runtime and the engines that serve ONNX (any batch size; "
        "the preprocessing in the file's metadata). pt2: a torch.export program that loads "
        "without this package. safetensors: the weights without pickle, with the network and "
        "its preprocessing; eval, predict and the rest take it as a checkpoint.",
    )
    export.add_argument("--checkpoint", required=True, help="a checkpoint file or run directory")
    export.add_argument("--format", required=True, choices=FORMATS)
    export.add_argument("--out", required=True, help="the file to write")
    export.add_argument(
        "--check",
        action="store_true",
        help="read the file back and compare it with the package (onnx: onnx.checker's full "
        "check and ONNX Runtime's logits at batch 1 and 8, top-5 on 64 inputs); writes "
        "OUT.check.json",
    )
    export.set_defaults(run=_export)
