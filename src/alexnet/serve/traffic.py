"""Traffic for a server: `alexnet serve` in a child process on the loopback address, and
asyncio clients that send it requests, each phase bounded in requests and seconds
(`alexnet bench serve`'s machinery, alexnet.serve.load and alexnet.serve.overload; the
server's tests)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """`alexnet serve` in a child process on 127.0.0.1; stopped on leaving the `with`.
    `options`: more of `alexnet serve`'s options."""

    def __init__(self, checkpoint: str, *options: str, start_timeout: float = 180,
                 log: str | None = None) -> None:  # fmt: skip
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        # what the server prints (its access log): to `log`, or nowhere
        self.log = open(log or os.devnull, "w")  # noqa: SIM115 (closed in stop)
        command = [sys.executable, "-m", "alexnet", "serve", "--checkpoint", str(checkpoint),
                   "--host", HOST, "--port", str(self.port), *options]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.PIPE,
                                        text=True)  # fmt: skip
        deadline = time.monotonic() + start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.process.stderr.read()[-2000:]}")
            if self.healthy():
                return
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"the server did not answer within {start_timeout:g} s")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    def memory(self) -> dict:
        """The server's resident memory now and at its peak, MiB (Linux's /proc)."""
        fields = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
        return {"rss_mib": round(fields["VmRSS"], 1), "peak_rss_mib": round(fields["VmHWM"], 1)}

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def request_bytes(path: str, body: bytes, content_type: str, port: int) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")  # fmt: skip
    return head.encode("ascii") + body


async def exchange(reader, writer, request: bytes) -> tuple[int, bytes, bool]:
    """Send one request and read its answer: (status, body, whether the server closes)."""
    writer.write(request)
    await writer.drain()
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    status = int(status_line.split()[1])
    length, close = 0, False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "connection" and value.strip().lower() == "close":
            close = True
    return status, await reader.readexactly(length), close


async def run_clients(port: int, requests: list[bytes], clients: int, limit: int, seconds: float):
    """`clients` connections, each sending the next request once it has its answer, until
    `limit` requests are sent or `seconds` have passed. Returns (status, seconds) pairs."""
    results: list[tuple[int, float]] = []
    sent = 0
    deadline = time.perf_counter() + seconds

    async def client(number: int) -> None:
        nonlocal sent
        reader = writer = None
        while sent < limit and time.perf_counter() < deadline:
            request = requests[sent % len(requests)]
            sent += 1
            if writer is None:
                reader, writer = await asyncio.open_connection(HOST, port)
            start = time.perf_counter()
            try:
                status, _, close = await exchange(reader, writer, request)
            except (ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
                status, close = 0, True  # no answer: counted as an error
            results.append((status, time.perf_counter() - start))
            if close:
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return results, time.perf_counter() - start


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarize(results: list[tuple[int, float]], wall: float) -> dict:
    ok = [t for s, t in results if s == 200]
    statuses: dict[str, int] = {}
    for s, _ in results:
        statuses[str(s)] = statuses.get(str(s), 0) + 1
    return {
        "requests": len(results),
        "seconds": round(wall, 2),
        "answered_per_s": round(len(ok) / wall, 1),
        "statuses": statuses,
        "errors": len(results) - len(ok),
        "latency_ms": {
            "p50": ms(percentile(ok, 0.5)),
            "p99": ms(percentile(ok, 0.99)),
            "max": ms(max(ok, default=None)),
        },
    }


def ms(value):
    return None if value is None else round(1000 * value, 1)
