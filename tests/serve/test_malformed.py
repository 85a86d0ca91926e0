"""What a client can send that is wrong, over a hundred ways, on /v1 and on the Open
Inference Protocol's /v2: each answered with the status it calls for (never a 5xx), a
JSON body with a message for every refusal the application makes, the server healthy
afterwards, and its resident memory back within 50 MiB."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from fixtures import bomb_png, encode, every_mode, photo
from wire import json_of, multipart, raw, status_of

HEAD = "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Content-Length: {length}\r\n\r\n"


def http(body: bytes, kind: str | None = "image/png", path: str = "/v1/predict", extra=""):
    # extra: more header lines, each ending in CRLF
    """A well-formed HTTP request carrying whatever body and headers."""
    headers = (f"Content-Type: {kind}\r\n" if kind is not None else "") + extra
    return HEAD.format(path=path, headers=headers, length=len(body)).encode() + body


def cases() -> dict[str, tuple[bytes, int, bool]]:
    """name -> (the request's bytes, the status it must get, whether the application answers
    it: its refusals have a JSON body; HTTP the server cannot parse is refused by uvicorn
    with a plain 400)."""
    jpeg, png = encode(photo(7)), encode(photo(8), "PNG")
    progressive = encode(photo(9, (320, 240)), "JPEG", progressive=True)
    out: dict[str, tuple[bytes, int, bool]] = {}

    def add(name, data, status, app=True):
        out[name] = (data, status, app)

    # Content types and bodies that are not an image.
    for kind in (
        None,
        "text/plain",
        "application/json",
        "application/x-www-form-urlencoded",
        "video/mp4",
        "image",
        "multipart/mixed; boundary=x",
    ):
        add(f"content type {kind}", http(b"not an image", kind), 415)  # fmt: skip
    add("multipart without a body", http(b"not an image", "multipart/form-data"), 400)
    add("empty raw body", http(b""), 400)
    add("one byte", http(b"\xff"), 400)
    for size in (2, 17, 100, 1000, 10_000, 100_000):
        add(f"random {size} bytes", http(bytes((i * 7919 + size) % 256 for i in range(size))),
            400)  # fmt: skip
    add("html named jpg", http(b"<!doctype html><title>x</title>", "image/jpeg"), 400)
    add("json as image", http(b'{"image": "cat.jpg"}', "image/jpeg"), 400)
    add("svg", http(b'<svg xmlns="http://www.w3.org/2000/svg"/>', "image/svg+xml"), 400)
    add("tiff", http(encode(photo(3), "TIFF"), "image/tiff"), 400)
    add("pdf", http(b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF", "image/jpeg"),
        400)  # fmt: skip
    # Truncated and damaged images.
    for cut in (2, 4, 10, 20, 100, 300, len(jpeg) // 2, len(jpeg) - 2):
        add(f"jpeg cut at {cut}", http(jpeg[:cut], "image/jpeg"), 400)
    for cut in (8, 16, 33, 50, 100, len(png) // 2):
        add(f"png cut at {cut}", http(png[:cut]), 400)
    add("png without its end chunk", http(png[:-12]), 200)  # every pixel is there
    for cut in (200, len(progressive) // 3, len(progressive) // 2):
        add(f"progressive jpeg cut at {cut}", http(progressive[:cut], "image/jpeg"), 400)
    for offset in (0, 1, 12, 16, 20, 29, 40, 60):
        broken = bytearray(png)
        broken[offset] ^= 0xFF
        add(f"png with byte {offset} flipped", http(bytes(broken)), 400)
    add("bomb png", http(bomb_png()), 400)
    add("bomb png 65535 squared", http(bomb_png(65535, 65535)), 400)
    add("zero-sized png header", http(bomb_png(0, 0)), 400)
    big = Image.new("L", (12_000, 12_000))  # 144 Mpx, a few hundred KiB as PNG
    buffer = io.BytesIO()
    big.save(buffer, "PNG")
    add("144-megapixel png", http(buffer.getvalue()), 400)
    frames = [Image.new("P", (32, 32), i) for i in range(200)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    add("200-frame gif", http(buffer.getvalue(), "image/gif"), 200)  # its first frame
    for name, data in every_mode(3).items():  # every mode a photo comes in: answered
        add(f"mode {name}", http(data), 200)
    # Multipart bodies.
    body, kind = multipart({"file": ("photo.jpg", jpeg)})
    add("multipart without boundary", http(body, "multipart/form-data"), 400)
    add("multipart with another boundary", http(body, "multipart/form-data; boundary=zzz"), 400)
    add("multipart cut short", http(body[: len(body) // 2], kind), 400)
    add("multipart without its closing line", http(body[:-8], kind), 400)
    add("multipart, no file field", http(*multipart({"image": ("photo.jpg", jpeg)})), 400)
    add("multipart, a text field only", http(*multipart({"file": (None, b"hello")})), 400)
    add("multipart, empty file", http(*multipart({"file": ("empty.jpg", b"")})), 400)
    add("multipart, two files",
        http(*multipart({"file": ("a.jpg", jpeg), "other": ("b", jpeg)})), 400)  # fmt: skip
    add("multipart, not an image", http(*multipart({"file": ("a.jpg", b"GIF89a garbage")})),
        400)  # fmt: skip
    for filename in ("../../../etc/passwd", "/etc/shadow", "C:\\Windows\\system32\\x.jpg",
                     "..", "a" * 5000 + ".jpg", "photo.jpg; rm -rf /", "%00.jpg", "~/.ssh/id_rsa",
                     "con.jpg", "\u00e9\u00e8.jpg"):  # fmt: skip
        # a part header longer than python-multipart reads is refused; the others, answered
        status = 400 if len(filename) > 1000 else 200
        add(f"file name {filename[:30]!r}", http(*multipart({"file": (filename, jpeg)})), status)
    long_header = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="'
                   + b"x" * 70_000 + b'"\r\n\r\n' + jpeg + b"\r\n--b--\r\n")  # fmt: skip
    add("multipart, huge part header", http(long_header, "multipart/form-data; boundary=b"),
        400)  # fmt: skip
    add("multipart, 100 fields",
        http(*multipart({f"f{i}": (None, b"v") for i in range(100)})), 400)  # fmt: skip
    # Parameters.
    for query, status in (
        ("top=0", 422),
        ("top=-1", 422),
        ("top=x", 422),
        ("top=1e9", 422),
        ("top=1001", 422),
        ("views=five", 422),
        ("views=", 422),
        ("explain=maybe", 422),
        ("neighbors=2", 422),
        ("top=5&top=6", 200),  # the last of a repeated parameter counts
        ("views=ten-crop&views=bad", 422),
        ("top=%00", 422),
        ("views=center%0d%0aX-Injected:%201", 422),
        ("unknown=1", 200),  # parameters the API does not have are ignored
        ("top=" + "9" * 400, 422),
    ):
        add(f"query {query[:40]}", http(png, path=f"/v1/predict?{query}"), status)  # fmt: skip
    # Methods and paths.
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        head = HEAD.replace("POST", method).format(path="/v1/predict", headers="", length=0)
        add(f"{method} /v1/predict", head.encode(), 405)
    for path in (
        "/v1/predicts",
        "/v2/predict",
        "/../../etc/passwd",
        "/v1/predict/..",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/" + "a" * 4000,
    ):
        add(f"path {path[:30]}", http(png, path=path), 404)  # fmt: skip
    # the static files are read only (GET), wherever the path points
    add("path /static/swagger/../../app.py", http(png, path="/static/swagger/../../app.py"),
        405)  # fmt: skip
    # The Open Inference Protocol's inference requests.
    infer = "/v2/models/alexnet2012/infer"
    view = {"name": "input", "datatype": "FP32", "shape": [1, 1, 2, 2]}
    for name, document in {
        "wrong datatype": {"inputs": [{**view, "datatype": "FP64", "data": [0] * 4}]},
        "shape not the data": {"inputs": [{**view, "data": [0] * 3}]},
        "negative size": {"inputs": [{**view, "shape": [-1, 1, 2, 2], "data": [0] * 4}]},
        "size not a number": {"inputs": [{**view, "shape": ["1", 1, 2, 2], "data": [0] * 4}]},
        "10,000 inputs": {"inputs": [{**view, "data": [0] * 4}] * 10_000},
        "10,000 photos": {"inputs": [{"name": "image", "datatype": "BYTES",
                                      "shape": [10_000], "data": ["AA=="] * 10_000}]},
        "negative binary size": {"inputs": [{**view, "parameters": {"binary_data_size": -4}}]},
        "inputs not a list": {"inputs": {"name": "input"}},
        "a list, not an object": [1, 2, 3],
        "nested too deep": {"inputs": [{**view, "data": [[[[[[[[0]]]]]]]]}]},
    }.items():  # fmt: skip
        add(f"v2 {name}", http(json.dumps(document).encode(), "application/json", infer), 400)
    head = json.dumps({"inputs": [{**view, "parameters": {"binary_data_size": 16}}]}).encode()
    for name, length, tail in (
        ("header longer than the body", len(head) + 100, bytes(16)),
        ("header of 0", 0, bytes(16)),
        ("header negative", -1, bytes(16)),
        ("binary part short", len(head), bytes(8)),
    ):
        extra = f"Inference-Header-Content-Length: {length}\r\n"
        add(f"v2 {name}", http(head + tail, "application/octet-stream", infer, extra), 400)
    add("v2 not json", http(b"\x00\xff" * 100, "application/json", infer), 400)
    add("v2 as text", http(b"{}", "text/plain", infer), 415)
    add("v2 another model", http(b"{}", "application/json", "/v2/models/x/infer"), 404)
    # Declared lengths and HTTP the server cannot parse.
    add("declared 10 GiB", (b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                            b"Content-Length: 10737418240\r\n\r\n"), 413)  # fmt: skip
    add("declared 9 MiB", (b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                           b"Content-Length: 9437184\r\n\r\n" + png), 413)  # fmt: skip
    add(
        "declared length not a number",
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n",
        400,
        app=False,
    )
    add(
        "declared length negative",
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        400,
        app=False,
    )
    add("two declared lengths",
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 9\r\n"
        b"\r\nabc", 400, app=False)  # fmt: skip
    add("bad chunked encoding",
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400, app=False)  # fmt: skip
    add("request line garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64),
        400, app=False)  # fmt: skip
    add("no HTTP version", b"POST /v1/predict\r\n\r\n", 400, app=False)
    add("header without colon", b"POST /v1/predict HTTP/1.1\r\nHost x\r\n\r\n", 400,
        app=False)  # fmt: skip
    add("header too long",
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nX-Long: " + b"y" * 100_000 + b"\r\n\r\n",
        400, app=False)  # fmt: skip
    return out


CASES = cases()


def test_there_are_over_a_hundred_cases():
    assert len(CASES) >= 100


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_malformed_requests_get_clear_refusals_and_leave_the_server_as_it_was(served, photos):
    from alexnet.serve.traffic import Server

    good = http(photos[0].read_bytes())
    with Server(served) as server:
        for _ in range(3):  # the memory a working server settles at
            assert status_of(raw(server.port, good + b"")) in (200, 0)
        start = rss_mib(server.process.pid)
        failures, answered = [], {}
        for round_ in range(2):  # twice: a leak shows as growth from one round to the next
            for name, (request, expected, app) in CASES.items():
                answer = raw(server.port, request, timeout=30)
                status = status_of(answer)
                answered[status] = answered.get(status, 0) + 1
                if status != expected:
                    failures.append(f"{name}: {status}, not {expected}: {answer[:300]!r}")
                elif status >= 400 and app:
                    body = json_of(answer)
                    # the protocol's errors are {"error": ...}
                    v2 = request.split(b" ", 2)[1].startswith(b"/v2")
                    if not (body and body.get("error") and (v2 or body.get("status") == status)):
                        failures.append(f"{name}: {status} without a JSON error: {answer[:300]!r}")
                if server.process.poll() is not None:
                    pytest.fail(f"the server died on {name!r}")
            if round_ == 0:
                after_one = rss_mib(server.process.pid)
        assert not failures, "\n".join(failures)
        assert server.healthy()
        assert status_of(raw(server.port, good)) == 200
        end = rss_mib(server.process.pid)
    assert end - start < 50, (start, after_one, end)
    assert set(answered) <= {200, 400, 404, 405, 413, 415, 422}, answered
