"""A network's weights as a safetensors file: no pickle, so loading it runs no code.

Beside the weights the file holds what the rest of the package needs to use them, the way a
checkpoint does: the network's record (alexnet.models.record: the network, its classes, its
preprocessing, its provenance) as JSON in the metadata ("record"), with the mean as a tensor
of its own ("record.mean"). Files of weights format 1 (untyped "model" and "data" metadata,
"data.mean_image" and "data.scale" tensors) are still read, their record migrated. `eval`,
`predict`, `features` and `--init-from` take such a file as they take a checkpoint
(`checkpoint.load` reads either). The optimizer and the run's position are not kept: it is
for using a network, not for resuming its training. The metadata holds the
SHA-256 of the tensors and the rest of the metadata (`alexnet.core.digest`), checked on
reading: safetensors checks the header's offsets, not the values.
"""

from __future__ import annotations

import json
from pathlib import Path

from alexnet.core.digest import content_digest
from alexnet.core.errors import UserError
from alexnet.models.record import ModelRecord, from_v1

FORMAT = "alexnet-weights"
VERSION = 2  # 1: the record as untyped "model" and "data" metadata (still read)
_MEAN = "record.mean"  # the tensor of the record's mean
_DATA = "data."  # format 1: prefix of the tensors of the data record


def is_safetensors(path: str | Path) -> bool:
    """A safetensors file: an 8-byte little-endian header length, then a JSON header."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") > 1


def save_weights(checkpoint: dict, path: str | Path) -> None:
    """The checkpoint's network, weights and record, as a safetensors file."""
    from alexnet.core.files import atomic_write

    tensors = {k: v.detach().cpu().contiguous() for k, v in checkpoint["state_dict"].items()}
    record, mean = checkpoint["record"].to_json()
    if mean is not None:
        tensors[_MEAN] = mean.contiguous()
    metadata = {
        "format": FORMAT,
        "version": str(VERSION),
        "record": json.dumps(record, sort_keys=True),
        "config": json.dumps(checkpoint.get("config"), sort_keys=True),
        "alexnet_version": str(checkpoint.get("alexnet_version", "")),
    }
    everything = dict(sorted(tensors.items()))  # the same bytes each time
    metadata["digest"] = content_digest({"tensors": everything, "metadata": metadata})
    # written whole or not at all: a kill never leaves half a file under the name
    atomic_write(Path(path), lambda handle: handle.write(_serialize(everything, metadata)))


def _serialize(tensors: dict, metadata: dict) -> bytes:
    """safetensors' bytes with the JSON header's keys sorted: its writer orders the metadata
    by a hash map, so the same weights would give other bytes on each save."""
    from safetensors.torch import save

    raw = save(tensors, metadata=metadata)
    length = int.from_bytes(raw[:8], "little")
    header = json.dumps(json.loads(raw[8 : 8 + length]), sort_keys=True, separators=(",", ":"))
    header += " " * (-len(header) % 8)  # the format pads the header with spaces to 8 bytes
    return len(header).to_bytes(8, "little") + header.encode() + raw[8 + length :]


def load_weights(path: str | Path) -> dict:
    """A checkpoint-shaped dict (record, state_dict, config) from a safetensors file;
    ValueError naming what is wrong if it is not one of ours."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except Exception as error:  # a truncated or foreign file
        raise UserError(
            f"{path} is not a readable safetensors file ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:200] if str(error) else ''})"
        ) from None
    if metadata.get("format") != FORMAT:
        raise UserError(
            f"{path} is a safetensors file without this package's metadata (format "
            f"{metadata.get('format')!r}); write one with `alexnet export --format safetensors`"
        )
    if metadata.get("version") not in ("1", str(VERSION)):
        raise UserError(
            f"{path} has weights format {metadata.get('version')}; this version reads 1 and "
            f"{VERSION}"
        )
    saved = metadata.pop("digest", None)
    if saved is not None and content_digest({"tensors": tensors, "metadata": metadata}) != saved:
        raise UserError(
            f"{path} is damaged: its contents do not match the SHA-256 saved with them (the "
            "file changed after it was written: a bad disk, a bad copy, a flipped bit)"
        )
    config = json.loads(metadata["config"])
    version = metadata.get("alexnet_version")
    if metadata["version"] == "1":
        data = json.loads(metadata["data"])
        data.update({k[len(_DATA) :]: tensors.pop(k) for k in list(tensors) if k.startswith(_DATA)})
        extra = {"config": config, "alexnet_version": version}
        record = from_v1(json.loads(metadata["model"]), data, extra)
    else:
        record = ModelRecord.from_json(json.loads(metadata["record"]), tensors.pop(_MEAN, None))
    return {"record": record, "state_dict": tensors, "config": config,
            "alexnet_version": version}  # fmt: skip
