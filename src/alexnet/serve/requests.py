"""What the server reads of a request, and how it says no: the body within its limit, the
image in it (multipart or raw), and the refusals as JSON answers."""

from __future__ import annotations

from alexnet.serve.admission import error_json


class Refused(Exception):
    """A request the server answers with `status` and `message` (a JSON body)."""

    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def error_response(request, status: int, message: str, headers=None):
    """The JSON error answer, in the form of the request's route (/v1 or the protocol's)."""
    from fastapi.responses import Response

    body = error_json(status, message, request.url.path)
    return Response(body, status, headers, media_type="application/json")


# An oversized or stalled body is left unread: the connection cannot carry another request.
CLOSE = {"Connection": "close"}


async def read_body(request, max_body: int) -> bytes:
    """The request's body, refused as soon as it passes the limit (a declared length over
    it, and a content type the route does not read, were refused at the door)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_body:
            raise Refused(413, f"the body passed the limit of {max_body:,} bytes", CLOSE)
    return bytes(body)


async def read_image(request, max_body: int) -> bytes:
    """The image bytes of a request: its multipart `file` field or its raw body."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    multipart = kind == "multipart/form-data"
    body = await read_body(request, max_body)
    if not multipart:
        if not body:
            raise Refused(400, "the body is empty: send the image's bytes")
        return body
    return await _multipart_file(request.headers, body)


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
