"""Requests to a test server: through http.client for well-formed ones, a raw socket for
what http.client would refuse to send."""

from __future__ import annotations

import http.client
import json
import re
import select
import socket
import uuid


def request(port: int, method: str, path: str, body: bytes = b"", headers=None, timeout=60):
    """(status, headers, body as JSON where it is JSON, else text)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        kind = response.getheader("content-type", "")
        parsed = (
            json.loads(data)
            if kind.startswith("application/json")
            else data.decode("utf-8", "replace")
        )
        return response.status, dict(response.getheaders()), parsed
    finally:
        connection.close()


def multipart(fields: dict[str, tuple[str | None, bytes]], boundary: str | None = None):
    """(body, content type) of a multipart/form-data body: name -> (file name or None, data)."""
    boundary = boundary or uuid.uuid4().hex
    parts = []
    for name, (filename, data) in fields.items():
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
        if filename is not None:
            head += "Content-Type: application/octet-stream\r\n"
        parts.append(head.encode() + b"\r\n" + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def predict(port: int, data: bytes, query: str = "", kind: str = "image/png", headers=None,
            **kw):  # fmt: skip
    sent = {"Content-Type": kind, **(headers or {})}
    return request(port, "POST", f"/v1/predict{query}", data, sent, **kw)


def raw(port: int, payload: bytes, timeout: float = 30) -> bytes:
    """Send bytes as they are, a piece at a time, and stop sending once the server answers
    (it may answer before the body ends, and then close); its first answer (or what came
    before it closed or went quiet)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        for start in range(0, len(payload), 1 << 16):
            if select.select([sock], [], [], 0)[0]:
                break  # an answer (or the close) came early
            try:
                sock.sendall(payload[start : start + (1 << 16)])
            except (BrokenPipeError, ConnectionResetError):
                break
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
                head, found, body = answer.partition(b"\r\n\r\n")
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if found and length and len(body) >= int(length.group(1)):
                    break  # one whole answer: the connection may stay open
        except (TimeoutError, ConnectionResetError):
            pass
        return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def json_of(answer: bytes):
    head, _, body = answer.partition(b"\r\n\r\n")
    return json.loads(body) if b"application/json" in head.lower() else None
