"""The network as a torch.export program (.pt2): loads with `torch.export.load` in any
torch of this release or later, without this package (the LRN runs as torch operations),
and carries the preprocessing as an extra file, "alexnet.json" (alexnet.export.metadata)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from alexnet.export import metadata
from alexnet.export.network import exportable
from alexnet.export.onnx import example_input
from alexnet.models import checkpoint as ckpt


def export_program(checkpoint: dict, path: str | Path) -> Path:
    path = Path(path)
    model = ckpt.load_model(checkpoint)
    with exportable(model, lrn="torch") as network:
        program = torch.export.export(
            network,
            (example_input(checkpoint),),
            dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
        )
    extra = {f"{key}.json" if key == "alexnet" else key: value
             for key, value in metadata.as_strings(checkpoint["record"]).items()}  # fmt: skip
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        torch.export.save(program, str(temporary), extra_files=extra)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def load_program(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """The exported network (a module to call on images) and its metadata."""
    extra = {"alexnet.json": ""}
    program = torch.export.load(str(path), extra_files=extra)
    return program.module(), json.loads(extra["alexnet.json"])
