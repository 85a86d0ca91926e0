"""Checkpoints: everything a run needs to continue exactly, in a file that loads safely.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts, saved with torch.save
and read with `torch.load(weights_only=True)`, so loading one never runs pickled code. It
holds the model (its variant name and full AlexNetConfig, so it can be rebuilt without the
recipe), the optimizer, the schedule, the position (epoch, step within it, global step),
every random number generator's state, the resolved recipe, and what `predict` needs to
turn a photograph into the network's input (the mean image, the class names, the sizes).
`load` also reads the weights-only safetensors files of `alexnet.models.tensorfile`.

Files are written atomically (temporary file, fsync, rename): a kill or a full disk leaves
the previous checkpoint as it was. Each carries the SHA-256 of its content
(`alexnet.core.digest`), checked when it is read: torch.load checks nothing of the tensor
data, so a file damaged after it was written (a flipped bit, a bad disk or copy) would
otherwise load as other weights.
"""

from __future__ import annotations

import errno
import random
import warnings
from dataclasses import MISSING, asdict, fields
from pathlib import Path

import numpy as np
import torch

from alexnet.core.digest import content_digest
from alexnet.core.files import atomic_write
from alexnet.models.alexnet import AlexNet
from alexnet.models.registry import create_model
from alexnet.models.tensorfile import is_safetensors, load_weights

FORMAT = "alexnet-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message says what to do."""


def rng_state() -> dict:
    """The state of every generator a run can touch."""
    numpy_state = np.random.get_state(legacy=False)
    python_version, python_state, python_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "python": [python_version, list(python_state), python_gauss],
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])
    n = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )
    version, values, gauss = state["python"]
    random.setstate((version, tuple(values), gauss))


def model_record(model: AlexNet) -> dict:
    return {"name": model.name, "config": asdict(model.config)}


def build_model(record: dict) -> AlexNet:
    """The network a checkpoint's `model` record describes, with fresh weights."""
    config = dict(record["config"])
    num_classes, in_chans = config.pop("num_classes"), config.pop("in_chans")
    return create_model(record["name"], num_classes=num_classes, in_chans=in_chans, **config)


def save(path: str | Path, checkpoint: dict) -> None:
    """Write atomically. A full disk raises CheckpointError saying the old file is intact."""
    path = Path(path)
    payload = {"format": FORMAT, "version": VERSION, **checkpoint}
    payload.pop("path", None)  # where it was read from: not part of it
    payload["digest"] = content_digest(payload)
    try:
        atomic_write(path, lambda handle: torch.save(payload, handle))
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            kept = "is intact" if path.exists() else "was never written"
            raise CheckpointError(
                f"disk full while writing {path}; the previous checkpoint there {kept}. "
                "Free some space, then continue with --resume"
            ) from error
        raise


def load(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if path.is_dir():
        path = find(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    if is_safetensors(path):  # weights exported by `alexnet export --format safetensors`
        try:
            checkpoint = load_weights(path)
        except ValueError as error:
            raise CheckpointError(str(error)) from None
        checkpoint["path"] = str(path)
        return checkpoint
    try:
        with warnings.catch_warnings():  # a foreign pickle's protocol: it is refused below
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # truncated zip, wrong file type, foreign pickle ...
        said = (str(error).splitlines() or ["no message"])[0][:200]
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(error).__name__}: {said}); it may be "
            "truncated or corrupt. Use another one (each run keeps `last.pt` and `best.pt`)"
        ) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an alexnet checkpoint")
    if checkpoint.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {checkpoint.get('version')}; this version reads "
            f"{VERSION}"
        )
    saved = checkpoint.pop("digest", None)  # absent from files written before it existed
    if saved is not None and content_digest(checkpoint) != saved:
        raise CheckpointError(
            f"{path} is damaged: its contents do not match the SHA-256 saved with them (the "
            "file changed after it was written: a bad disk, a bad copy, a flipped bit). Use "
            "another checkpoint (each run keeps `last.pt` and `best.pt`)"
        )
    checkpoint["path"] = str(path)
    return checkpoint


def find(run_dir: str | Path, which: str = "last") -> Path:
    """RUN_DIR/checkpoints/{which}.pt, or a message saying the folder holds none."""
    run_dir = Path(run_dir)
    path = run_dir / "checkpoints" / f"{which}.pt"
    if not path.is_file():
        raise CheckpointError(
            f"{run_dir} holds no checkpoint ({path} is missing); start a new run with "
            "`alexnet train --config ...` instead of --resume"
        )
    return path


def load_model(checkpoint: dict) -> AlexNet:
    """The checkpoint's network with its weights, in evaluation mode."""
    try:
        model = build_model(checkpoint["model"])
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, RuntimeError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{checkpoint.get('path', 'checkpoint')}: its weights do not fit the network it "
            f"names ({str(error).splitlines()[0][:200]})"
        ) from None
    return model.eval()


def check_same_model(checkpoint: dict, model: AlexNet) -> None:
    """Refuse to resume a run into a different network."""
    saved = dict(checkpoint["model"])
    mine = model_record(model)
    # a checkpoint from before a config field existed has that field's default
    defaults = {f.name: f.default for f in fields(type(model.config)) if f.default is not MISSING}
    saved["config"] = {**defaults, **saved["config"]}
    if saved["name"] != mine["name"] or saved["config"] != mine["config"]:
        differences = {
            k: (saved["config"].get(k), v)
            for k, v in mine["config"].items()
            if saved["config"].get(k) != v
        }
        raise CheckpointError(
            f"{checkpoint.get('path')} holds {saved['name']} and the recipe asks for "
            f"{mine['name']}; differing settings (checkpoint, recipe): {differences}. "
            "Resume with the run's own recipe, or start a new run"
        )
