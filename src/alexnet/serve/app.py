"""The HTTP API and the page: `alexnet serve`.

    GET  /              the page: pick or drop a photo; top-5 with bars, Grad-CAM, neighbors
    POST /v1/predict    an image (multipart field `file`, or the raw bytes) -> JSON
    GET  /v1/model      the network, its classes, its preprocessing, the version
    GET  /healthz       200 while the server can answer
    GET  /metrics       Prometheus's text format (alexnet.serve.metrics)
    GET  /docs          the OpenAPI page (served from this machine), /openapi.json
    /v2/...             the Open Inference Protocol (alexnet.serve.protocol): GET /v2,
                        /v2/health/live, /v2/health/ready, /v2/models/{name}[/ready],
                        POST /v2/models/{name}/infer, and the /versions/{v} forms

Limits, each answered with a JSON body {"error": message, "status": code} ({"error":
message} on /v2, as the protocol says):

- a body over `max_body` bytes: 413, before any of it is read when its length is declared,
  as soon as the limit is passed when it is not;
- a file that is not JPEG, PNG, WebP, BMP or GIF (its first frame), or that is truncated,
  corrupt, empty or a decompression bomb (the limit `alexnet data prepare` uses): 400;
- `max_queue` requests waiting already (read, decoded or waiting for the network; not the
  batch it computes): 503 at once, with Retry-After;
- a request not answered within `timeout` seconds: 504;
- without the bearer token, when the server has one: 401.

Admission (the token, the declared length, the content type, the queue) is decided before
routing and before the body is read, by alexnet.serve.admission.

Photos are decoded on `decode_threads` threads (the decoded pixels of a photo near the
pixel limit take a few hundred MiB, so their number is bounded) and the network runs on
its own thread, fed by the micro-batcher (alexnet.serve.batcher.Batcher).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException

from alexnet.core.version import __version__
from alexnet.data.images import WEB_FORMATS, BadImage
from alexnet.serve import protocol, v2
from alexnet.serve.admission import Admission
from alexnet.serve.batcher import Batcher
from alexnet.serve.engine import Engine, mean_softmax
from alexnet.serve.metrics import Metrics
from alexnet.serve.requests import CLOSE, Refused, error_response, read_image

log = logging.getLogger("alexnet.serve")

MiB = 1 << 20


@dataclass
class Limits:
    """What one server accepts and how it batches; `alexnet serve --help` names each."""

    max_body: int = 8 * MiB
    max_queue: int = 64  # requests waiting (read, decoded, waiting; not those computed)
    timeout: float = 30.0  # seconds from the request's arrival to its answer
    max_batch: int = 32  # views per forward pass
    max_wait: float = 0.02  # seconds a batch waits at most for requests on their way
    decode_threads: int = 2
    neighbors: int = 8
    max_items: int = 64  # photos or views in one Open Inference Protocol request


# The request body of POST /v1/predict, for the OpenAPI page (the handler reads the body
# itself, so that it can refuse an oversized one before reading it).
PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            **{
                kind: {"schema": {"type": "string", "format": "binary"}}
                for kind in (
                    "image/jpeg",
                    "image/png",
                    "image/webp",
                    "image/bmp",
                    "image/gif",
                    "application/octet-stream",
                )
            },
        },
    }
}


def create_app(
    engine: Engine, limits: Limits | None = None, token: str | None = None,
    model_name: str | None = None,
):  # fmt: skip
    """The FastAPI application serving `engine` within `limits`; `token`: the bearer token
    every request but the health checks must carry (None: no check); `model_name`: the
    model's name on /v2 (default: the network's)."""
    limits = limits or Limits()
    # inside: requests let in and not yet answered; preparing: those of them whose photo is
    # still being read or decoded (the batcher waits for them)
    state = {"inside": 0, "preparing": 0, "served": 0, "timed_out": 0}
    metrics = Metrics()
    batcher = Batcher(engine, limits.max_batch, limits.max_wait, lambda: state["preparing"],
                      metrics)  # fmt: skip
    decoders = ThreadPoolExecutor(limits.decode_threads, thread_name_prefix="alexnet-decode")

    @contextlib.asynccontextmanager
    async def lifespan(app) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.stop()
        decoders.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="alexnet",
        summary="The network of Krizhevsky, Sutskever and Hinton (2012), served",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,  # served below from this machine, not from a CDN
        redoc_url=None,
    )
    app.state.engine, app.state.batcher, app.state.counts = engine, batcher, state
    app.state.metrics = metrics
    app.add_middleware(Admission, limits=limits, metrics=metrics, counts=state, token=token,
                       computing=lambda: batcher.computing)  # fmt: skip

    @app.exception_handler(Refused)
    async def refused(request, error: Refused):
        return error_response(request, error.status, error.message, error.headers)

    @app.exception_handler(protocol.ProtocolError)
    async def protocol_error(request, error: protocol.ProtocolError):
        return error_response(request, error.status, error.message)

    @app.exception_handler(HTTPException)
    async def http_error(request, error: HTTPException):
        return error_response(request, error.status_code, str(error.detail),
                              getattr(error, "headers", None))  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def invalid(request, error: RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: {e['msg']}"
            for e in error.errors()
        )
        return error_response(request, 422, f"invalid parameters: {problems}")

    @app.exception_handler(Exception)
    async def failed(request, error: Exception):  # a bug of ours: the client hears why
        log.exception("unexpected error on %s", request.url.path)
        return error_response(request, 500, f"internal error ({type(error).__name__})")

    async def within_timeout(work):
        """The answer of `work`, or 504 after `limits.timeout` seconds."""
        try:
            return await asyncio.wait_for(work, limits.timeout)
        except asyncio.TimeoutError:
            state["timed_out"] += 1
            raise Refused(504, f"no answer within {limits.timeout:g} s; the server is "
                          "loaded or the upload is slow", CLOSE) from None  # fmt: skip

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(PAGE)

    @app.get("/healthz", summary="200 while the server answers")
    async def healthz():
        return {"status": "ok", "inside": state["inside"], "batches": batcher.batches}

    @app.get("/metrics", summary="Prometheus's text format", response_class=Response)
    async def prometheus():
        return Response(metrics.exposition(), media_type=metrics.content_type)

    @app.get("/v1/model", summary="The network, its classes, its preprocessing, the version")
    async def model():
        return {**engine.describe(), "limits": asdict(limits)}

    @app.post(
        "/v1/predict",
        summary="Classify a photo",
        description="The image as multipart/form-data (field `file`) or as the raw bytes "
        f"with an image content type. Formats: {', '.join(WEB_FORMATS)}; at most "
        f"{limits.max_body:,} bytes.",
        openapi_extra=PREDICT_BODY,
    )
    async def predict(
        request: Request,
        top: int = Query(5, ge=1, le=1000, description="how many classes to return"),
        views: Literal["center", "ten-crop"] = Query(
            "center", description="the center patch, or the paper's ten patches averaged"
        ),
        explain: bool = Query(False, description="a Grad-CAM overlay of the top class"),
        neighbors: bool = Query(False, description="the nearest training images in fc7"),
    ):
        if neighbors and engine.index is None:
            raise Refused(400, "neighbors=true needs a server started with --index")
        if explain and engine.explainer is None:
            raise Refused(400, "explain=true needs the network's weights (this server runs "
                          "an ONNX file)")  # fmt: skip
        start = time.perf_counter()
        answer = await within_timeout(_answer(request, top, views, explain, neighbors))
        state["served"] += 1
        answer["milliseconds"] = round(1000 * (time.perf_counter() - start), 1)
        return answer

    async def _answer(request, top: int, views: str, explain: bool, neighbors: bool) -> dict:
        state["preparing"] += 1
        try:
            data = await read_image(request, limits.max_body)
            loop = asyncio.get_running_loop()
            try:
                prepared = await loop.run_in_executor(decoders, engine.prepare, data, views)
            except BadImage as error:
                raise Refused(400, f"cannot use the image: {error}") from None
        finally:
            state["preparing"] -= 1
            batcher.nudge()
        probs = mean_softmax(await batcher.submit(prepared.views))
        answer = {"network": engine.record.network.name, "views": views,
                  "top": engine.top(probs, top)}  # fmt: skip
        if explain:
            answer["explain"] = await batcher.run(engine.explain, prepared)
        if neighbors:
            answer["neighbors"] = await batcher.run(engine.neighbors, prepared, limits.neighbors)
        return answer

    v2.add_routes(app, engine, limits, batcher, decoders, state, within_timeout, model_name)
    _docs(app)
    return app


def _docs(app) -> None:
    """The OpenAPI page with Swagger UI's files from the swagger-ui-bundle package (no CDN:
    the server may have no internet, and the page must not fetch from elsewhere)."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    try:
        import swagger_ui_bundle
    except ImportError:  # the JSON is there without it
        return
    app.mount("/static/swagger", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path),
              name="swagger")  # fmt: skip

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="alexnet: API",
            swagger_js_url="/static/swagger/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger/swagger-ui.css",
            swagger_favicon_url="/static/swagger/favicon-32x32.png",
        )


PAGE = resources.files("alexnet.serve").joinpath("page.html").read_text(encoding="utf-8")
