"""The Open Inference Protocol's REST endpoints (alexnet.serve.protocol reads and writes its
messages): server and model metadata, health, readiness, and inference through the same
micro-batcher as /v1.

    GET  /v2                                    {"name", "version", "extensions"}
    GET  /v2/health/live, /v2/health/ready      200 while the server lives / can answer
    GET  /v2/models/{name}[/versions/{v}]        inputs, outputs, platform (the runtime)
    GET  /v2/models/{name}[/versions/{v}]/ready
    POST /v2/models/{name}[/versions/{v}]/infer
"""

from __future__ import annotations

import asyncio

import torch
from fastapi import Request
from fastapi.responses import Response

from alexnet.core.version import __version__
from alexnet.data.images import BadImage
from alexnet.serve import protocol
from alexnet.serve.engine import mean_softmax
from alexnet.serve.requests import read_body

VERSION = "1"  # the one version of the one model a server holds
PLATFORMS = {"torch": "pytorch", "onnxruntime": "onnxruntime_onnx", "openvino": "openvino"}


def add_routes(app, engine, limits, batcher, decoders, state, within_timeout, name=None):
    """The protocol's endpoints on `app`, for `engine` under the name `name` (default: the
    network's name)."""
    name = name or engine.record.network.name
    p = engine.preprocessing
    view_shape = (p.channels, p.crop_size, p.crop_size)
    classes = len(engine.record.classes.names)

    def check(model: str, version: str | None) -> None:
        if model != name:
            raise protocol.ProtocolError(f"no model {model!r}: this server has {name!r}", 404)
        if version not in (None, VERSION):
            raise protocol.ProtocolError(f"model {name!r} has version {VERSION} only, not "
                                         f"{version!r}", 404)  # fmt: skip

    @app.get("/v2", summary="Open Inference Protocol: the server")
    async def server():
        return {"name": "alexnet", "version": __version__,
                "extensions": list(protocol.EXTENSIONS)}  # fmt: skip

    @app.get("/v2/health/live", summary="Open Inference Protocol: 200 while the server lives")
    async def live():
        return {"live": True}

    @app.get("/v2/health/ready", summary="Open Inference Protocol: 200 when it can answer")
    async def ready():
        return {"ready": True}  # the network is loaded and warmed up before the server starts

    def metadata() -> dict:
        return {
            "name": name,
            "versions": [VERSION],
            "platform": PLATFORMS[engine.runtime],
            "inputs": [
                {"name": "input", "datatype": "FP32", "shape": [-1, *view_shape]},
                {"name": "image", "datatype": "BYTES", "shape": [-1]},
            ],
            "outputs": [
                {"name": out, "datatype": "FP32", "shape": [-1, classes]}
                for out in protocol.OUTPUTS
            ],
            "parameters": {
                "runtime": engine.runtime,
                "precision": engine.precision,
                "device": str(engine.device),
                "network": engine.record.network.name,
                "max_items": limits.max_items,
            },
        }

    @app.get("/v2/models/{model}", summary="Open Inference Protocol: the model's metadata")
    async def model_metadata(model: str):
        check(model, None)
        return metadata()

    @app.get("/v2/models/{model}/versions/{version}", include_in_schema=False)
    async def version_metadata(model: str, version: str):
        check(model, version)
        return metadata()

    @app.get("/v2/models/{model}/ready", summary="Open Inference Protocol: the model is ready")
    async def model_ready(model: str):
        check(model, None)
        return {"name": name, "ready": True}

    @app.get("/v2/models/{model}/versions/{version}/ready", include_in_schema=False)
    async def version_ready(model: str, version: str):
        check(model, version)
        return {"name": name, "ready": True}

    @app.post("/v2/models/{model}/infer", summary="Open Inference Protocol: inference")
    async def infer(model: str, request: Request):
        check(model, None)
        return await within_timeout(_infer(request))

    @app.post("/v2/models/{model}/versions/{version}/infer", include_in_schema=False)
    async def version_infer(model: str, version: str, request: Request):
        check(model, version)
        return await within_timeout(_infer(request))

    async def _infer(request: Request) -> Response:
        loop = asyncio.get_running_loop()
        state["preparing"] += 1
        try:
            body = await read_body(request, limits.max_body)
            header = request.headers.get("inference-header-content-length")
            asked = await loop.run_in_executor(decoders, protocol.read_request, body, header,
                                               view_shape, limits.max_items)  # fmt: skip
            if asked.tensor is not None:
                views, per_photo = torch.from_numpy(asked.tensor), None
            else:
                prepared = await asyncio.gather(*(
                    loop.run_in_executor(decoders, _prepare, engine, i, data, asked.views)
                    for i, data in enumerate(asked.images)
                ))  # fmt: skip
                views, per_photo = torch.cat(prepared), [len(v) for v in prepared]
        finally:
            state["preparing"] -= 1
            batcher.nudge()
        logits = await batcher.submit(views)
        if per_photo is None:
            probabilities = torch.softmax(logits, dim=1)
        else:  # each photo's views: logits averaged, softmaxes averaged (section 4.1)
            parts = logits.split(per_photo)
            probabilities = torch.stack([mean_softmax(v) for v in parts])
            logits = torch.stack([v.mean(0) for v in parts])
        body, headers = protocol.answer(asked, logits.numpy(), probabilities.numpy(),
                                        engine.record.classes.names, name, VERSION)  # fmt: skip
        state["served"] += 1
        return Response(body, headers=headers)


def _prepare(engine, i: int, data: bytes, views: str) -> torch.Tensor:
    try:
        return engine.prepare(data, views).views
    except BadImage as error:
        raise protocol.ProtocolError(f"cannot use image {i}: {error}") from None
