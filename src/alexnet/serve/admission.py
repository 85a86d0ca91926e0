"""Who and what gets in: the server's door, ASGI middleware in front of the application.

Every request passes here before routing and before a byte of its body is read:

- the bearer token (when the server has one) for everything but the health checks, the
  page and the API's description: 401 without it, compared in constant time, never logged;
- on the routes that run the network (POST /v1/predict, POST /v2/models/{name}/infer):
  a Content-Length that is not a number (400) or over the limit (413), a content type the
  route does not read (415), a server with `max_queue` requests already waiting (503, with
  Retry-After).

The queue is the requests let in and not yet in a forward pass (being read, decoded, or
waiting for the network), as Triton's `max_queue_size` counts them: the batch the network
is computing is not in it, so that the next batch forms while one computes. Counting the
computing batch too left the network idle under overload while its slots refilled after
each pass (a quarter of the time at 3x capacity on 2 cores).

A refusal here is a few dozen microseconds of Python: no routing, no parsing, a prepared
JSON body. Its answer is sent whole at once, and then the body the client is still sending
is read and thrown away, up to `LINGER_BYTES` and `LINGER_SECONDS` (what nginx's lingering
close does), before the connection closes: a client that writes its whole body before
reading (urllib, requests) reads the 413 and its message instead of a connection reset. A
client that sent `Expect: 100-continue` is answered without being asked for the body.
The same holds for the application's own early answers (a chunked body cut at the limit).
A busy server's 503 is the exception: a declared body of at most `DRAIN_BYTES` is read
first (it has usually arrived with the head), so that the connection stays open for the
client's next request instead of costing both sides a new one per refusal (at 10x capacity
on 2 cores this raised the answered rate by a third and cut the admitted p99 by half).

Each answer is counted here (alexnet.serve.metrics): route, method, status, duration, and
the refusals by reason.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import time

LINGER_BYTES = 64 << 20
LINGER_SECONDS = 5.0
LINGER_IDLE = 1.0  # seconds with nothing arriving: the client has stopped sending
# A busy server's refusal reads a body this small first and keeps the connection open.
DRAIN_BYTES = 64 << 10
DRAIN_SECONDS = 0.05

# Open without the token: what a load balancer or an orchestrator probes, and the page and
# the API's description, which hold nothing of the model's (the page asks for the token).
OPEN = frozenset({"/", "/healthz", "/v2/health/live", "/v2/health/ready", "/docs",
                  "/openapi.json", "/static"})  # fmt: skip

_MODEL = re.compile(r"^/v2/models/[^/]+(?:/versions/[^/]+)?(/ready|/infer)?$")
_ROUTES = {"/", "/healthz", "/metrics", "/docs", "/openapi.json", "/v1/predict", "/v1/model",
           "/v2", "/v2/health/live", "/v2/health/ready"}  # fmt: skip
METHODS = frozenset({"GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"})

# What each status says about a refusal (alexnet_refusals_total's reason).
REASON = {400: "bad_request", 401: "unauthorized", 413: "body_too_large", 422: "bad_request",
          415: "unsupported_media_type", 503: "queue_full", 504: "timeout"}  # fmt: skip


def route_of(path: str) -> str:
    """The API's template for `path` (the metrics' route label), or "other"."""
    if path in _ROUTES:
        return path
    if path.startswith("/static/"):
        return "/static"
    if match := _MODEL.match(path):
        return "/v2/models/{name}" + (match.group(1) or "")
    return "other"


def accepted_kind(route: str, kind: str) -> bool:
    """Whether a route that runs the network reads a body of this content type."""
    if route == "/v1/predict":
        return kind in ("multipart/form-data", "application/octet-stream") or (
            kind.startswith("image/") and kind != "image/"
        )
    # The protocol's JSON, or JSON and binary tensors (tritonclient sends no content type)
    return kind in ("", "application/json", "application/octet-stream")


WORK = ("/v1/predict", "/v2/models/{name}/infer")


def error_json(status: int, message: str, path: str) -> bytes:
    """The error body: the protocol's {"error": ...} under /v2, with the status elsewhere."""
    v2 = path == "/v2" or path.startswith("/v2/")
    body = {"error": message} if v2 else {"error": message, "status": status}
    return json.dumps(body).encode()


class Admission:
    """ASGI middleware: admission, lingering answers, and the count of every answer.

    `counts` is the application's dictionary of counters ("inside": requests admitted to
    the routes that run the network and not yet answered); `computing()` how many of them
    the network is computing now; `token` the bearer token or None (no check)."""

    def __init__(self, app, limits, metrics, counts: dict, token: str | None = None,
                 computing=lambda: 0) -> None:  # fmt: skip
        self.app, self.limits, self.metrics, self.counts = app, limits, metrics, counts
        self.computing = computing
        self.token = None if token is None else token.encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        route = route_of(scope["path"])
        method = scope["method"] if scope["method"] in METHODS else "other"
        headers = dict(scope["headers"])  # the last of repeated headers wins
        counted = False

        def count(status: int) -> None:
            """The answer in the metrics, once, as soon as it is sent whole (not after
            the lingering read of a refused body)."""
            nonlocal counted
            if counted:
                return
            counted = True
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.duration.labels(route).observe(time.perf_counter() - start)
            if status in REASON:
                self.metrics.refusals.labels(REASON[status]).inc()

        door = _Door(receive, send, headers, count)
        status = 500
        try:
            refusal = self._admit(route, scope["method"], headers)
            if refusal is not None:
                status = refusal[0]
                if status == 503:  # a busy server keeps the connection when it can
                    await door.drain_small()
                await door.answer(*refusal, path=scope["path"])
                return
            work = route in WORK and scope["method"] == "POST"
            if work:
                self.counts["inside"] += 1
                self.metrics.inside.set(self.counts["inside"])
            try:
                await self.app(scope, door.receive, door.send)
            finally:
                if work:
                    self.counts["inside"] -= 1
                    self.metrics.inside.set(self.counts["inside"])
            status = door.status or 500
        finally:
            count(status)

    def _admit(self, route: str, method: str, headers: dict) -> tuple | None:
        """None to let the request in, else (status, message, extra headers)."""
        if self.token is not None and route not in OPEN:
            given = headers.get(b"authorization", b"")
            scheme, _, credential = given.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(credential.strip(),
                                                                      self.token):  # fmt: skip
                return (401, "this server needs a bearer token: Authorization: Bearer TOKEN",
                        [(b"www-authenticate", b'Bearer realm="alexnet"')])  # fmt: skip
        if route not in WORK or method != "POST":
            return None
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                shown = declared[:40].decode("latin-1")
                return 400, f"Content-Length {shown!r} is not a number", []
            if int(declared) > self.limits.max_body:
                return (413, f"the body is {int(declared):,} bytes; the limit is "
                        f"{self.limits.max_body:,}", [])  # fmt: skip
        encoding = headers.get(b"content-encoding", b"identity").decode("latin-1").lower()
        if encoding.strip() not in ("", "identity"):
            return 415, f"Content-Encoding {encoding[:40]!r} is not read here: send it as is", []
        kind = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        if not accepted_kind(route, kind):
            return 415, _kind_message(route, kind), []
        if self.counts["inside"] - self.computing() >= self.limits.max_queue:
            return (503, f"busy: {self.limits.max_queue} requests are waiting already; retry "
                    "shortly", [(b"retry-after", b"1")])  # fmt: skip
        return None


def _kind_message(route: str, kind: str) -> str:
    sent = kind[:60] or "no content type"
    if route == "/v1/predict":
        return ("send the image as multipart/form-data (field 'file') or as its raw bytes "
                f"with an image/* content type, not {sent}")  # fmt: skip
    return f"send the inference request as application/json (or binary tensors), not {sent}"


class _Door:
    """One request's receive and send: knows whether its body is all read, and answers
    while the client is still sending by reading the rest of the body after the answer."""

    def __init__(self, receive, send, headers: dict, answered=lambda status: None) -> None:
        self._receive, self._send, self._answered = receive, send, answered
        length = headers.get(b"content-length")
        self.length = int(length) if length is not None and length.isdigit() else None
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        self.pending = chunked or (length is not None and length not in (b"0", b""))
        self.expecting = headers.get(b"expect", b"").lower() == b"100-continue"
        self.asked = False  # whether the body was asked for (a 100 Continue went out)
        self.status = 0
        self._closing = False

    async def receive(self):
        self.asked = True
        message = await self._receive()
        ended = message["type"] == "http.request" and not message.get("more_body", False)
        if ended or message["type"] == "http.disconnect":
            self.pending = False
        return message

    async def send(self, message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            if self.pending:  # answered before the body was read: the connection closes
                self._closing = True
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            if self._closing:  # the answer whole, then what the client still sends read
                await self._send({**message, "more_body": True})
                self._answered(self.status)
                await self._linger()
                await self._send({"type": "http.response.body", "body": b""})
                return
            await self._send(message)
            self._answered(self.status)
            return
        await self._send(message)

    async def drain_small(self) -> None:
        """Read a small declared body that has arrived (or arrives within a moment) before
        refusing, so that the connection stays open for the client's next request: under
        a retry storm a closed connection costs both sides a new one for every refusal."""
        length = self.length
        if not self.pending or self.expecting or length is None or length > DRAIN_BYTES:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_SECONDS
        while self.pending and (left := deadline - loop.time()) > 0:
            try:
                await asyncio.wait_for(self.receive(), left)
            except asyncio.TimeoutError:
                return

    async def answer(self, status: int, message: str, extra: list, path: str) -> None:
        body = error_json(status, message, path)
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode()), *extra]  # fmt: skip
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})

    async def _linger(self) -> None:
        """Read and drop what the client still sends, within the bounds; not a body the
        client waits to be asked for (Expect: 100-continue)."""
        if self.expecting and not self.asked:
            return
        loop = asyncio.get_running_loop()
        deadline, read = loop.time() + LINGER_SECONDS, 0
        while self.pending and read < LINGER_BYTES:
            left = min(LINGER_IDLE, deadline - loop.time())
            if left <= 0:
                return
            try:
                message = await asyncio.wait_for(self.receive(), left)
            except asyncio.TimeoutError:
                return
            read += len(message.get("body", b""))
