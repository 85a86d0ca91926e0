"""A digest of a nested value's content (tensors, arrays, numbers, strings, lists, dicts),
for files whose format does not check what it reads.

torch.save's zip archive holds no checksum that torch.load verifies: a bit flipped in a
checkpoint's tensor data loads without complaint, as other weights. A checkpoint therefore
carries the SHA-256 of its own content, computed before it is written and compared after it
is read (`alexnet.models.checkpoint`); the safetensors files likewise in their metadata.
The digest is of the values, not of the file's bytes, so it does not depend on how the
serializer lays them out.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def content_digest(value) -> str:
    """SHA-256 (hex) of `value`'s content: each tensor or array by its dtype, shape and
    bytes, dicts in the order of their keys' repr, other leaves by their repr."""
    digest = hashlib.sha256()
    _feed(digest, value)
    return digest.hexdigest()


def _feed(digest, value) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"tensor {tensor.dtype} {tuple(value.shape)};".encode())
        digest.update(memoryview(tensor.view(torch.uint8).numpy()))
    elif isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        digest.update(f"array {array.dtype} {array.shape};".encode())
        digest.update(memoryview(array.reshape(-1).view(np.uint8)))
    elif isinstance(value, dict):
        digest.update(f"dict {len(value)};".encode())
        for key in sorted(value, key=repr):
            digest.update(f"{key!r}:".encode())
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__} {len(value)};".encode())
        for item in value:
            _feed(digest, item)
    else:
        digest.update(f"{type(value).__name__} {value!r};".encode())
