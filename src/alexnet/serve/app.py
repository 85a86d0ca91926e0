"""The HTTP API and the page: `alexnet serve`.

    GET  /              the page: pick or drop a photo; top-5 with bars, Grad-CAM, neighbors
    POST /v1/predict    an image (multipart field `file`, or the raw bytes) -> JSON
    GET  /v1/model      the network, its classes, its preprocessing, the version
    GET  /healthz       200 while the server can answer
    GET  /docs          the OpenAPI page (served from this machine), /openapi.json

Limits, each answered with a JSON body {"error": message, "status": code}:

- a body over `max_body` bytes: 413, before any of it is read when its length is declared,
  as soon as the limit is passed when it is not;
- a file that is not JPEG, PNG, WebP, BMP or GIF (its first frame), or that is truncated,
  corrupt, empty or a decompression bomb (the limit `alexnet data prepare` uses): 400;
- more than `max_queue` requests in the server already: 503 at once, with Retry-After;
- a request not answered within `timeout` seconds: 504.

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
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException

from alexnet.core.version import __version__
from alexnet.data.images import WEB_FORMATS, BadImage
from alexnet.serve.batcher import Batcher
from alexnet.serve.engine import Engine

log = logging.getLogger("alexnet.serve")

MiB = 1 << 20


@dataclass
class Limits:
    """What one server accepts and how it batches; `alexnet serve --help` names each."""

    max_body: int = 8 * MiB
    max_queue: int = 64  # requests inside the server (read, decoded, waiting, computed)
    timeout: float = 30.0  # seconds from the request's arrival to its answer
    max_batch: int = 32  # views per forward pass
    max_wait: float = 0.02  # seconds a batch waits at most for requests on their way
    decode_threads: int = 2
    neighbors: int = 8


class Refused(Exception):
    """A request the server answers with `status` and `message` (a JSON body)."""

    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def error_body(status: int, message: str) -> dict:
    return {"error": message, "status": status}


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


def create_app(engine: Engine, limits: Limits | None = None):
    """The FastAPI application serving `engine` within `limits`."""
    limits = limits or Limits()
    # inside: requests let in and not yet answered; preparing: those of them whose photo is
    # still being read or decoded (the batcher waits for them)
    state = {"inside": 0, "preparing": 0, "served": 0, "refused_busy": 0, "timed_out": 0}
    batcher = Batcher(engine, limits.max_batch, limits.max_wait, lambda: state["preparing"])
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

    @app.exception_handler(Refused)
    async def refused(request, error: Refused):
        return JSONResponse(error_body(error.status, error.message), error.status, error.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request, error: HTTPException):
        return JSONResponse(error_body(error.status_code, str(error.detail)), error.status_code,
                            getattr(error, "headers", None))  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def invalid(request, error: RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: {e['msg']}"
            for e in error.errors()
        )
        return JSONResponse(error_body(422, f"invalid parameters: {problems}"), 422)

    @app.exception_handler(Exception)
    async def failed(request, error: Exception):  # a bug of ours: the client hears why
        log.exception("unexpected error on %s", request.url.path)
        return JSONResponse(error_body(500, f"internal error ({type(error).__name__})"), 500)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(PAGE)

    @app.get("/healthz", summary="200 while the server answers")
    async def healthz():
        return {"status": "ok", "inside": state["inside"], "batches": batcher.batches}

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
        if state["inside"] >= limits.max_queue:
            state["refused_busy"] += 1
            raise Refused(503, f"busy: {limits.max_queue} requests are inside already; "
                          "retry shortly", {"Retry-After": "1"})  # fmt: skip
        if neighbors and engine.index is None:
            raise Refused(400, "neighbors=true needs a server started with --index")
        if explain and engine.explainer is None:
            raise Refused(400, "explain=true needs the network's weights (this server runs "
                          "an ONNX file)")  # fmt: skip
        state["inside"] += 1
        start = time.perf_counter()
        try:
            answer = await asyncio.wait_for(
                _answer(request, top, views, explain, neighbors), limits.timeout
            )
        except asyncio.TimeoutError:
            state["timed_out"] += 1
            raise Refused(504, f"no answer within {limits.timeout:g} s; the server is "
                          "loaded or the upload is slow", CLOSE) from None  # fmt: skip
        finally:
            state["inside"] -= 1
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
        probs = await batcher.probabilities(prepared.views)
        answer = {"network": engine.record.network.name, "views": views,
                  "top": engine.top(probs, top)}  # fmt: skip
        if explain:
            answer["explain"] = await batcher.run(engine.explain, prepared)
        if neighbors:
            answer["neighbors"] = await batcher.run(engine.neighbors, prepared, limits.neighbors)
        return answer

    _docs(app)
    return app


# An oversized or stalled body is left unread: the connection cannot carry another request.
CLOSE = {"Connection": "close"}


async def read_image(request, max_body: int) -> bytes:
    """The image bytes of a request: its multipart `file` field or its raw body; refuses an
    oversized body before reading it (declared length) or as soon as it passes the limit."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Refused(400, f"Content-Length {declared[:40]!r} is not a number")
        if int(declared) > max_body:
            raise Refused(413, f"the body is {int(declared):,} bytes; the limit is "
                          f"{max_body:,}", CLOSE)  # fmt: skip
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    multipart = kind == "multipart/form-data"
    if not (multipart or kind.startswith("image/") or kind == "application/octet-stream"):
        sent = kind or "no content type"
        raise Refused(415, "send the image as multipart/form-data (field 'file') or as its raw "
                      f"bytes with an image/* content type, not {sent}")  # fmt: skip
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_body:
            raise Refused(413, f"the body passed the limit of {max_body:,} bytes", CLOSE)
    if not multipart:
        if not body:
            raise Refused(400, "the body is empty: send the image's bytes")
        return bytes(body)
    return await _multipart_file(request.headers, bytes(body))


async def _multipart_file(headers, body: bytes) -> bytes:
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def stream():
        yield body

    parser = MultiPartParser(headers, stream(), max_files=1, max_fields=16)
    try:
        form = await parser.parse()
    except MultiPartException as error:
        raise Refused(400, f"malformed multipart body: {error.message}") from None
    except Exception as error:  # the parser's other complaints about what it was sent
        raise Refused(400, f"malformed multipart body ({type(error).__name__})") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            names = ", ".join(repr(k) for k in form) or "none"
            raise Refused(400, f"the multipart body has no file field 'file' (fields: {names})")
        data = await upload.read()
    finally:
        await form.close()
    if not data:
        raise Refused(400, "the uploaded file is empty")
    return data


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
