"""The server's door: the bearer token, the metrics Prometheus scrapes, and a body over the
limit answered with its 413 however the client sends it (urllib, httpx, curl; whole,
chunked, or waiting for 100 Continue)."""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import urllib.error
import urllib.request

import pytest

from alexnet.serve.traffic import Server

from fixtures import cli
from wire import predict, raw, request, status_of

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

TOKEN = "s3cret-token-for-the-tests-0123456789"


@pytest.fixture(scope="module")
def guarded(served, tmp_path_factory):
    """A server with a bearer token, one request inside at a time, a 1 MiB body limit, and
    batches of at most 4 views: the non-default limits exercised over HTTP."""
    path = tmp_path_factory.mktemp("token") / "token"
    path.write_text(TOKEN + "\n")
    with Server(served, "--token-file", str(path), "--max-body-mib", "1", "--max-batch", "4",
                "--access-log", "--log-level", "info") as running:  # fmt: skip
        yield running


def _auth(token: str | None) -> dict:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def test_a_token_guards_inference_metadata_and_metrics_and_leaves_health_open(guarded, photos):
    data = photos[0].read_bytes()
    guarded_routes = [
        ("POST", "/v1/predict", data, {"Content-Type": "image/png"}),
        ("GET", "/v1/model", b"", {}),
        ("GET", "/metrics", b"", {}),
        ("GET", "/v2/models/alexnet2012", b"", {}),
        ("GET", "/v2", b"", {}),
        ("POST", "/v2/models/alexnet2012/infer", b"{}", {}),
    ]
    for method, path, body, headers in guarded_routes:
        for token in (None, "wrong-token-of-some-length", TOKEN[:-1], TOKEN + "x"):
            status, answer_headers, answer = request(guarded.port, method, path, body,
                                                     {**headers, **_auth(token)})  # fmt: skip
            assert status == 401, (path, token, status)
            assert answer_headers["www-authenticate"].startswith("Bearer")
            assert "bearer token" in answer["error"]
        status, _, _ = request(guarded.port, method, path, body, {**headers, **_auth(TOKEN)})
        assert status in (200, 400), (path, status)  # 400: the empty inference request
    assert request(guarded.port, "GET", "/v1/model", headers={"Authorization": TOKEN})[0] == 401
    for path in ("/healthz", "/v2/health/live", "/v2/health/ready", "/"):
        assert request(guarded.port, "GET", path)[0] == 200, path
    assert predict(guarded.port, data, headers=None)[0] == 401


def test_the_token_is_never_logged(served, tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN)
    printed = tmp_path / "printed"
    server = Server(served, "--token-file", str(path), "--access-log", "--log-level", "debug",
                    log=str(printed))  # fmt: skip
    try:
        request(server.port, "GET", "/v1/model", headers=_auth(TOKEN))
        request(server.port, "GET", "/v1/model", headers=_auth("wrong-token-of-some-length"))
    finally:
        server.stop()
        log = server.process.stderr.read() + printed.read_text()
    assert "/v1/model" in log and TOKEN not in log and "wrong-token" not in log


def test_listening_beyond_this_machine_needs_a_token_or_no_auth_on_purpose(served, tmp_path):
    done = cli("serve", "--checkpoint", str(served), "--host", "0.0.0.0", "--port", "1")
    assert done.returncode == 2 and "--no-auth" in done.stderr and "--token-file" in done.stderr
    short = tmp_path / "short"
    short.write_text("abc")
    done = cli("serve", "--checkpoint", str(served), "--token-file", str(short))
    assert done.returncode == 2 and "at least 16 characters" in done.stderr
    done = cli("serve", "--checkpoint", str(served), "--token-file", str(tmp_path / "none"))
    assert done.returncode == 2 and "cannot read the token file" in done.stderr


def _families(port: int, token: str | None = None) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    status, headers, text = request(port, "GET", "/metrics", headers=_auth(token))
    assert status == 200 and headers["content-type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(text)}


def _value(families, family: str, sample: str, **labels) -> float:
    def chosen(s) -> bool:
        return s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())

    return sum(s.value for s in families[family].samples if chosen(s))


def test_metrics_count_requests_latencies_batches_and_refusals(guarded, photos):
    before = _families(guarded.port, TOKEN)
    data = photos[1].read_bytes()
    for _ in range(3):
        assert predict(guarded.port, data, headers=_auth(TOKEN))[0] == 200
    assert predict(guarded.port, data, kind="text/plain", headers=_auth(TOKEN))[0] == 415
    assert predict(guarded.port, data)[0] == 401
    after = _families(guarded.port, TOKEN)

    def moved(family, sample, **labels):
        return _value(after, family, sample, **labels) - _value(before, family, sample, **labels)

    ok = {"route": "/v1/predict", "method": "POST", "status": "200"}
    assert moved("alexnet_http_requests", "alexnet_http_requests_total", **ok) == 3
    duration = "alexnet_http_request_duration_seconds"
    assert moved(duration, f"{duration}_count", route="/v1/predict") == 5
    assert moved("alexnet_batch_size", "alexnet_batch_size_count") == 3
    assert moved("alexnet_batch_size", "alexnet_batch_size_sum") == 3  # one view each
    assert moved("alexnet_queue_wait_seconds", "alexnet_queue_wait_seconds_count") == 3
    assert moved("alexnet_inference_duration_seconds",
                 "alexnet_inference_duration_seconds_count") == 3  # fmt: skip
    assert moved("alexnet_refusals", "alexnet_refusals_total",
                 reason="unsupported_media_type") == 1  # fmt: skip
    assert moved("alexnet_refusals", "alexnet_refusals_total", reason="unauthorized") == 1
    assert _value(after, "alexnet_requests_inside", "alexnet_requests_inside") == 0
    # buckets are cumulative and end at +Inf with the count
    buckets = [s for s in after["alexnet_inference_duration_seconds"].samples
               if s.name.endswith("_bucket")]  # fmt: skip
    assert [s.labels["le"] for s in buckets][-1] == "+Inf"
    assert all(a.value <= b.value for a, b in itertools.pairwise(buckets))


def test_the_limits_given_are_the_limits_kept(guarded, photos):
    status, _, model = request(guarded.port, "GET", "/v1/model", headers=_auth(TOKEN))
    assert model["limits"]["max_body"] == 1 << 20 and model["limits"]["max_batch"] == 4
    big = b"\x89PNG" + bytes((1 << 20) + 10)
    status, _, answer = predict(guarded.port, big, headers=_auth(TOKEN))
    assert status == 413 and "the limit is 1,048,576" in answer["error"]
    # ten crops are 10 views: more than --max-batch 4, so the request goes alone, answered
    status, _, answer = predict(guarded.port, photos[2].read_bytes(), "?views=ten-crop",
                                headers=_auth(TOKEN))  # fmt: skip
    assert status == 200, answer
    families = _families(guarded.port, TOKEN)
    assert _value(families, "alexnet_batch_size", "alexnet_batch_size_bucket", le="8.0") < (
        _value(families, "alexnet_batch_size", "alexnet_batch_size_count"))  # fmt: skip


# A body over the default limit (8 MiB), sent whole by clients that write before they read.
OVER = bytes(12 << 20)


def _expect_413(status: int, body: bytes | str) -> None:
    assert status == 413, status
    assert "the limit is 8,388,608" in json.loads(body)["error"]


def test_urllib_sending_a_body_over_the_limit_reads_the_413(server):
    sent = urllib.request.Request(f"{server.url}/v1/predict", data=OVER, method="POST",
                                  headers={"Content-Type": "image/png"})  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(sent, timeout=60)
    _expect_413(refused.value.code, refused.value.read())


def test_httpx_sending_a_body_over_the_limit_reads_the_413(server):
    import httpx

    answer = httpx.post(f"{server.url}/v1/predict", content=OVER, timeout=60,
                        headers={"Content-Type": "image/png"})  # fmt: skip
    _expect_413(answer.status_code, answer.content)
    # and chunked, with no declared length: cut at the limit, still read as a 413
    answer = httpx.post(f"{server.url}/v1/predict", content=iter([OVER[:1 << 20]] * 12),
                        timeout=60, headers={"Content-Type": "image/png"})  # fmt: skip
    assert answer.status_code == 413 and "passed the limit" in answer.json()["error"]


@pytest.mark.parametrize("expect", [True, False], ids=["expect-100", "no-expect"])
def test_curl_sending_a_body_over_the_limit_reads_the_413(server, tmp_path, expect):
    path = tmp_path / "big.png"
    path.write_bytes(OVER)
    headers = [] if expect else ["-H", "Expect:"]  # curl asks for 100 Continue by default
    done = subprocess.run(
        ["curl", "-sS", "--max-time", "60", "-o", "-", "-w", "\n%{http_code}", "-H",
         "Content-Type: image/png", *headers, "--data-binary", f"@{path}",
         f"{server.url}/v1/predict"],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    body, _, code = done.stdout.rpartition("\n")
    _expect_413(int(code), body)


def test_expect_100_continue_is_honoured(server, photos):
    data = photos[0].read_bytes()
    head = ("POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            "Expect: 100-continue\r\nContent-Length: {}\r\n\r\n")  # fmt: skip
    # over the limit: the 413 at once, and the body is never asked for
    answer = raw(server.port, head.format(100 << 20).encode(), timeout=10)
    assert status_of(answer) == 413 and b"100 Continue" not in answer
    # within it: asked for (100 Continue), then answered
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head.format(len(data)).encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(data)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            answer += sock.recv(65536)
    assert status_of(answer) == 200
