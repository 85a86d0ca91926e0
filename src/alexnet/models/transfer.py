"""Starting a network from another's weights, layer by layer (fine-tuning, the paper's
pretrain-then-fine-tune of section 6, and imported weights).

Weights load by layer name (`conv1` ... `fc8`). A layer whose shape differs in the source
(fc8 for another number of classes), or that the source lacks, must be named in `reinit`:
it keeps its fresh initialization. Anything else that does not fit is refused with the
list of such layers, so that a recipe never silently trains from half-loaded weights.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from torch import nn

from alexnet.models.checkpoint import CheckpointError


def layer_of(key: str) -> str:
    """'fc8.weight' -> 'fc8'."""
    return key.rsplit(".", 1)[0]


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_layers(model: nn.Module, source: dict, reinit: list[str] = ()) -> dict:
    """Copy `source`'s weights (a loaded checkpoint) into `model` by layer name, except the
    layers in `reinit`. Returns what was done: the layers copied and kept fresh."""
    where = source.get("path", "the source")
    name = source["record"].network.name
    if name != getattr(model, "name", name):
        raise CheckpointError(
            f"{where} holds {name}; this recipe trains {model.name}, and weights load only "
            "into the network they were trained in (model.name)"
        )
    state, weights = model.state_dict(), source["state_dict"]
    layers = list(dict.fromkeys(layer_of(k) for k in state))
    unknown = [r for r in reinit if r not in layers]
    if unknown:
        raise CheckpointError(
            f"model.reinit names {', '.join(unknown)}, not layers of {model.name}; its layers "
            f"are: {', '.join(layers)}"
        )
    misfits = {}
    for key, value in state.items():
        if layer_of(key) in reinit:
            continue
        if key not in weights:
            misfits.setdefault(layer_of(key), "missing in the source")
        elif tuple(weights[key].shape) != tuple(value.shape):
            there, here = tuple(weights[key].shape), tuple(value.shape)
            misfits.setdefault(layer_of(key), f"{there} there, {here} here")
    if misfits:
        listed = "; ".join(f"{layer}: {why}" for layer, why in misfits.items())
        raise CheckpointError(
            f"layers of {where} that do not fit this network: {listed}. Name them in "
            f"model.reinit (e.g. --set 'model.reinit=[{', '.join(misfits)}]') to start them "
            "afresh"
        )
    merged = {k: (v if layer_of(k) in reinit else weights[k].to(v.dtype)) for k, v in state.items()}
    model.load_state_dict(merged)
    return {
        "copied": [layer for layer in layers if layer not in reinit],
        "reinit": list(reinit),
    }
