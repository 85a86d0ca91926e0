"""The Open Inference Protocol (KServe's v2 protocol, which Triton, MLServer, KServe and
OpenVINO Model Server speak): its inference requests read and its answers written, with
the binary tensor data extension and the classification extension, without HTTP.

The served model has two inputs, of which a request gives one:

    input   FP32  [-1, C, crop, crop]  views already prepared as the model's record says
                                       (alexnet.load's `record.transform`): logits per view
    image   BYTES [-1]                 encoded photos (JPEG, PNG, WebP, BMP, GIF), prepared
                                       by the server; request parameter "views": "center"
                                       (default) or "ten-crop" (section 4.1: probabilities
                                       are the mean of the ten softmaxes, logits the mean
                                       of the ten views' logits)

and two outputs, both FP32 [-1, classes]: `logits` and `probabilities` (a softmax per row).
An output asked for with `"parameters": {"classification": k}` is instead BYTES [-1, k],
the top k as "score:index:label", as Triton writes them.

Binary tensor data: a request whose header `Inference-Header-Content-Length` is N has N
bytes of JSON and then the inputs' bytes, each input's `binary_data_size` of them, in
order: FP32 little-endian, BYTES as 4-byte little-endian lengths each followed by the
element. Outputs come back binary when asked (`"binary_data": true` on the output, or
`"binary_data_output": true` on the request), after the JSON, the same way. In JSON,
an `image` element is the photo's bytes in base64.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass, field

import numpy as np

INPUTS = ("input", "image")
OUTPUTS = ("logits", "probabilities")
VIEWS = ("center", "ten-crop")
EXTENSIONS = ("binary_tensor_data", "classification")


class ProtocolError(Exception):
    """A request the protocol refuses: `status` (400, or 404 for an unknown model)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Asked:
    """An output asked for: binary or JSON, and the top k classes instead of the tensor."""

    name: str
    binary: bool = False
    classification: int = 0


@dataclass
class Request:
    """An inference request, read: the one input given, the outputs asked for."""

    input: str  # "input" or "image"
    tensor: np.ndarray | None = None  # "input": (n, C, h, w) float32
    images: list[bytes] = field(default_factory=list)  # "image": the encoded photos
    views: str = "center"
    outputs: list[Asked] = field(default_factory=list)
    id: str | None = None

    @property
    def count(self) -> int:
        return len(self.images) if self.tensor is None else len(self.tensor)


def read_request(
    body: bytes, header_length: str | None, view_shape: tuple[int, int, int], max_items: int
) -> Request:
    """The request in `body`; `view_shape` (C, crop, crop) is what the `input` tensor's
    rows must be; at most `max_items` rows or photos. ProtocolError says what is wrong."""
    binary = b""
    if header_length is not None:
        if not header_length.isdigit() or not 0 < int(header_length) <= len(body):
            raise ProtocolError(f"Inference-Header-Content-Length {header_length[:20]!r} is "
                                f"not a length within the body's {len(body):,} bytes")  # fmt: skip
        body, binary = body[: int(header_length)], body[int(header_length) :]
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ProtocolError(f"the request is not JSON ({error})") from None
    if not isinstance(document, dict):
        raise ProtocolError("the request must be a JSON object with 'inputs'")
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise ProtocolError(f"give exactly one input, {' or '.join(map(repr, INPUTS))}")
    parameters = _object(document.get("parameters"), "the request's parameters")
    request = Request(input=str(inputs[0].get("name")), id=_id(document.get("id")))
    views = parameters.get("views", "center")
    if views not in VIEWS:
        raise ProtocolError(f"parameter views must be one of {', '.join(VIEWS)}, not {views!r}")
    request.views = views
    data, used = _input_data(inputs[0], binary)
    if used != len(binary):
        raise ProtocolError(f"the body holds {len(binary):,} bytes after the JSON; the inputs "
                            f"say {used:,}")  # fmt: skip
    if request.input == "input":
        request.tensor = _views(inputs[0], data, view_shape, max_items)
    elif request.input == "image":
        request.images = _images(inputs[0], data, max_items)
    else:
        raise ProtocolError(f"no input named {request.input!r}: the inputs are "
                            f"{', '.join(INPUTS)}")  # fmt: skip
    request.outputs = _asked(document.get("outputs"), parameters)
    return request


def _id(value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 256:
        raise ProtocolError("the request's id must be a string of at most 256 characters")
    return value


def _object(value, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} must be a JSON object")
    return value


def _count(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError(f"{what} must be a whole number, 0 or more, not {value!r}")
    return value


def _input_data(spec: dict, binary: bytes) -> tuple[object, int]:
    """The input's data: JSON's `data`, or its bytes from the binary part; and how many
    binary bytes it used."""
    parameters = _object(spec.get("parameters"), "an input's parameters")
    if "binary_data_size" in parameters:
        size = _count(parameters["binary_data_size"], "binary_data_size")
        if size > len(binary):
            raise ProtocolError(f"binary_data_size is {size:,} bytes; the body holds "
                                f"{len(binary):,} after the JSON")  # fmt: skip
        if "data" in spec:
            raise ProtocolError("an input has both 'data' and binary_data_size")
        return binary[:size], size
    if "data" not in spec:
        raise ProtocolError("an input needs 'data' (or binary_data_size, with "
                            "Inference-Header-Content-Length)")  # fmt: skip
    return spec["data"], 0


def _shape(spec: dict) -> list[int]:
    shape = spec.get("shape")
    if not isinstance(shape, list) or not shape:
        raise ProtocolError("an input needs 'shape', a list of sizes")
    return [_count(s, "a shape's size") for s in shape]


def _views(spec, data, view_shape: tuple[int, int, int], max_items: int) -> np.ndarray:
    if spec.get("datatype") != "FP32":
        raise ProtocolError(f"input 'input' is FP32, not {spec.get('datatype')!r}")
    shape = _shape(spec)
    expected = [-1, *view_shape]
    if len(shape) != 4 or tuple(shape[1:]) != tuple(view_shape):
        raise ProtocolError(f"input 'input' has shape {expected} (views as the model's "
                            f"record prepares them), not {shape}")  # fmt: skip
    if not 1 <= shape[0] <= max_items:
        raise ProtocolError(f"input 'input' holds 1 to {max_items} views, not {shape[0]}")
    count = math.prod(shape)
    if isinstance(data, bytes):
        if len(data) != 4 * count:
            raise ProtocolError(f"shape {shape} is {4 * count:,} bytes of FP32; "
                                f"binary_data_size says {len(data):,}")  # fmt: skip
        array = np.frombuffer(data, dtype="<f4")
    else:
        try:
            array = np.asarray(data, dtype=np.float32).reshape(-1)
        except (TypeError, ValueError) as error:
            raise ProtocolError(f"input 'input' data are not numbers in a regular "
                                f"array ({error})") from None  # fmt: skip
        if array.size != count:
            raise ProtocolError(f"shape {shape} is {count:,} values; data holds "
                                f"{array.size:,}")  # fmt: skip
    return array.reshape(shape).astype(np.float32, copy=True)


def _images(spec, data, max_items: int) -> list[bytes]:
    if spec.get("datatype") != "BYTES":
        raise ProtocolError(f"input 'image' is BYTES, not {spec.get('datatype')!r}")
    count = math.prod(_shape(spec))
    if not 1 <= count <= max_items:
        raise ProtocolError(f"input 'image' holds 1 to {max_items} photos, not {count}")
    if isinstance(data, bytes):
        images = unpack_bytes(data)
    else:
        if not isinstance(data, list) or not all(isinstance(d, str) for d in data):
            raise ProtocolError("input 'image' in JSON is a list of base64 strings")
        try:
            images = [base64.b64decode(d, validate=True) for d in data]
        except (binascii.Error, ValueError):
            raise ProtocolError("input 'image' holds a string that is not base64") from None
    if len(images) != count:
        raise ProtocolError(f"input 'image' has shape {spec['shape']} ({count} photos); its "
                            f"data hold {len(images)}")  # fmt: skip
    return images


def unpack_bytes(data: bytes) -> list[bytes]:
    """BYTES elements of the binary extension: each a 4-byte little-endian length and then
    that many bytes."""
    out, at = [], 0
    while at < len(data):
        if at + 4 > len(data):
            raise ProtocolError("a BYTES element's length is cut short")
        size = int.from_bytes(data[at : at + 4], "little")
        if at + 4 + size > len(data):
            raise ProtocolError(f"a BYTES element says {size:,} bytes; "
                                f"{len(data) - at - 4:,} are left")  # fmt: skip
        out.append(data[at + 4 : at + 4 + size])
        at += 4 + size
    return out


def pack_bytes(elements: list[bytes]) -> bytes:
    return b"".join(len(e).to_bytes(4, "little") + e for e in elements)


def _asked(outputs, parameters: dict) -> list[Asked]:
    everything = parameters.get("binary_data_output", False)
    if not isinstance(everything, bool):
        raise ProtocolError("parameter binary_data_output must be true or false")
    if outputs is None:
        return [Asked(name, everything) for name in OUTPUTS]
    if not isinstance(outputs, list) or not outputs:
        raise ProtocolError("'outputs' must be a list of outputs asked for")
    asked = []
    for spec in outputs:
        if not isinstance(spec, dict) or spec.get("name") not in OUTPUTS:
            name = spec.get("name") if isinstance(spec, dict) else spec
            raise ProtocolError(f"no output named {name!r}: the outputs are "
                                f"{', '.join(OUTPUTS)}")  # fmt: skip
        p = _object(spec.get("parameters"), "an output's parameters")
        binary = p.get("binary_data", everything)
        if not isinstance(binary, bool):
            raise ProtocolError("parameter binary_data must be true or false")
        k = _count(p.get("classification", 0), "classification")
        asked.append(Asked(spec["name"], binary, k))
    return asked


def answer(
    request: Request, logits: np.ndarray, probabilities: np.ndarray, names: list[str],
    model: str, version: str,
) -> tuple[bytes, dict]:  # fmt: skip
    """The response's body and headers for `logits` and `probabilities` (n, classes)."""
    tensors = {"logits": logits, "probabilities": probabilities}
    classes = logits.shape[1]
    outputs, binary = [], []
    for asked in request.outputs:
        values = tensors[asked.name]
        if asked.classification:
            k = min(asked.classification, classes)
            top = np.argsort(-values, axis=1, kind="stable")[:, :k]
            rows = [f"{values[i, j]:f}:{j}:{names[j]}" for i in range(len(values)) for j in top[i]]
            output = {"name": asked.name, "datatype": "BYTES", "shape": [len(values), k]}
            if asked.binary:
                binary.append(pack_bytes([r.encode() for r in rows]))
            else:
                output["data"] = rows
        else:
            output = {"name": asked.name, "datatype": "FP32", "shape": list(values.shape)}
            if asked.binary:
                binary.append(np.ascontiguousarray(values, dtype="<f4").tobytes())
            else:
                output["data"] = values.reshape(-1).tolist()
        if asked.binary:
            output["parameters"] = {"binary_data_size": len(binary[-1])}
        outputs.append(output)
    document = {"model_name": model, "model_version": version, "outputs": outputs}
    if request.id is not None:
        document["id"] = request.id
    head = json.dumps(document, separators=(",", ":")).encode()
    if not binary:
        return head, {"content-type": "application/json"}
    return head + b"".join(binary), {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(head)),
    }
