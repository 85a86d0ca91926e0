"""Checkpoints: everything a run needs to continue exactly, in a file that loads safely.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts, saved with torch.save
and read with `torch.load(weights_only=True)`, so loading one never runs pickled code. It
holds the model (its variant name and full AlexNetConfig, so it can be rebuilt without the
recipe), the optimizer, the schedule, the position (epoch, step within it, global step),
every random number generator's state, the resolved recipe, and the network's record
(`alexnet.models.record.ModelRecord`: its classes, how a photo becomes its input, where it
came from), under "record". `load` also reads the weights-only safetensors files of
`alexnet.models.tensorfile`, and checkpoints of format 1 (the record as untyped `model` and
`data` dicts), whose record it migrates. `load_network` (`alexnet.load`) is the short way
from a file to the network and its record.

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
from alexnet.core.errors import UserError
from alexnet.core.files import atomic_write
from alexnet.models.alexnet import AlexNet
from alexnet.models.record import ModelRecord, from_v1, plain
from alexnet.models.tensorfile import is_safetensors, load_weights

FORMAT = "alexnet-checkpoint"
#: 2: the typed record under "record"; 1: untyped "model" and "data" dicts (still read)
VERSION = 2


class CheckpointError(UserError):
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


def save(path: str | Path, checkpoint: dict) -> None:
    """Write atomically. A full disk raises CheckpointError saying the old file is intact."""
    path = Path(path)
    payload = {"format": FORMAT, "version": VERSION, **checkpoint}
    payload.pop("path", None)  # where it was read from: not part of it
    if isinstance(payload.get("record"), ModelRecord):
        payload["record"] = payload["record"].to_state()
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
        except UserError as error:
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
    if checkpoint.get("version") not in (1, VERSION):
        raise CheckpointError(
            f"{path} has checkpoint format {checkpoint.get('version')}; this version reads "
            f"1 and {VERSION}"
        )
    saved = checkpoint.pop("digest", None)  # absent from files written before it existed
    if saved is not None and content_digest(checkpoint) != saved:
        raise CheckpointError(
            f"{path} is damaged: its contents do not match the SHA-256 saved with them (the "
            "file changed after it was written: a bad disk, a bad copy, a flipped bit). Use "
            "another checkpoint (each run keeps `last.pt` and `best.pt`)"
        )
    try:
        if checkpoint["version"] == 1:
            model, data = checkpoint.pop("model"), checkpoint.pop("data")
            checkpoint["record"] = from_v1(model, data, checkpoint)
        else:
            checkpoint["record"] = ModelRecord.from_state(checkpoint["record"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path} holds no usable model record ({error})") from None
    checkpoint["version"] = VERSION  # as it is in memory now
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
    record: ModelRecord = checkpoint["record"]
    try:
        model = record.network.build()
    except UserError as error:  # a name or an option the registry refuses, with its reason
        raise CheckpointError(
            f"{checkpoint.get('path', 'checkpoint')} names a network this release cannot "
            f"build: {error}"
        ) from None
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:  # missing, unexpected or misshapen tensors
        raise CheckpointError(
            f"{checkpoint.get('path', 'checkpoint')}: its weights do not fit the network it "
            f"names ({str(error).splitlines()[0][:200]})"
        ) from None
    return model.eval()


def load_network(
    source: str | Path, *, device: str | torch.device | None = None, map_location="cpu"
) -> tuple[AlexNet, ModelRecord]:
    """A trained network and its record, from a checkpoint, a run directory (its
    last.pt) or an exported .safetensors file; the network is in evaluation mode, on
    `device` if given. Loading runs no pickled code (weights_only).

        model, record = alexnet.load("runs/x/checkpoints/best.pt")
        x = record.transform(Image.open("cat.jpg"))  # (3, 224, 224), as predict makes it
        probs = model(x[None]).softmax(1)
        print(record.classes.names[probs.argmax()])
    """
    checkpoint = load(source, map_location=map_location)
    model = load_model(checkpoint)
    if device is not None:
        model.to(device)
    return model, checkpoint["record"]


def check_same_model(checkpoint: dict, model: AlexNet) -> None:
    """Refuse to resume a run into a different network."""
    saved = checkpoint["record"].network
    mine = {"name": model.name, "config": plain(asdict(model.config))}
    # a checkpoint from before a config field existed has that field's default
    defaults = {f.name: f.default for f in fields(type(model.config)) if f.default is not MISSING}
    config = {**plain(defaults), **saved.config}
    if saved.name != mine["name"] or config != mine["config"]:
        differences = {
            k: (config.get(k), v) for k, v in mine["config"].items() if config.get(k) != v
        }
        raise CheckpointError(
            f"{checkpoint.get('path')} holds {saved.name} and the recipe asks for "
            f"{mine['name']}; differing settings (checkpoint, recipe): {differences}. "
            "Resume with the run's own recipe, or start a new run"
        )
