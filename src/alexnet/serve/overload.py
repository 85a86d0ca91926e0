"""`alexnet bench serve`'s overload phases: the server past its capacity.

Capacity is what the closed-loop load (alexnet.serve.load) answered per second. Then, each
phase bounded in requests and seconds and stopping by itself, against a server letting in
`queue` requests:

- open loop at `multiples` of that capacity: requests arrive at a fixed rate whether or not
  the earlier ones were answered (a connection each while it waits, reused once answered),
  as traffic from many independent users does;
- a retry storm: `storm_clients` clients that send again the moment they are answered,
  refused or not (clients that ignore Retry-After);
- the cost of a refusal: a server letting in nobody (`--max-queue 0`) refuses `refusals`
  requests from 8 clients; its CPU seconds (Linux's /proc) per refusal.

For each phase: requests answered per second against the capacity, the admitted requests'
p99 latency against the closed-loop load's ("unloaded": at capacity, not past it), how many
were refused, and the CPU seconds the server and this process (the clients, on the same
machine) used. The curve is drawn by `draw`.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from pathlib import Path

from alexnet.serve.traffic import (
    HOST,
    Server,
    exchange,
    ms,
    percentile,
    request_bytes,
    run_clients,
    summarize,
)

CLOCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process so far (Linux's /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK  # utime, stime


def scrape(url: str) -> dict[str, float]:
    """The server's histogram sums and counts now (its /metrics)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    wanted = ("alexnet_inference_duration_seconds", "alexnet_batch_size",
              "alexnet_queue_wait_seconds")  # fmt: skip
    return {sample.name: sample.value for family in text_string_to_metric_families(text)
            if family.name in wanted for sample in family.samples
            if sample.name.endswith(("_sum", "_count"))}  # fmt: skip


def means(before: dict, after: dict) -> dict:
    """Per forward pass between two scrapes: its mean seconds and views, and a request's
    mean wait for its batch."""

    def mean(name: str):
        count = after.get(f"{name}_count", 0) - before.get(f"{name}_count", 0)
        total = after.get(f"{name}_sum", 0) - before.get(f"{name}_sum", 0)
        return None if count <= 0 else total / count

    inference = mean("alexnet_inference_duration_seconds")
    batch, wait = mean("alexnet_batch_size"), mean("alexnet_queue_wait_seconds")
    return {
        "forward_ms": None if inference is None else round(1000 * inference, 1),
        "views_per_batch": None if batch is None else round(batch, 2),
        "queue_wait_ms": None if wait is None else round(1000 * wait, 1),
    }


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def open_loop(port: int, requests: list[bytes], rate: float, seconds: float,
                    limit: int, connections: int = 1000):  # fmt: skip
    """Requests at `rate` per second for `seconds` (at most `limit`), each on an idle
    connection or a new one (at most `connections` open: beyond, the arrival is counted as
    not sent, status -1). Returns ((status, seconds) per request, wall seconds)."""
    results: list[tuple[int, float]] = []
    idle: list[tuple] = []
    opened = 0
    tasks = set()

    async def one(request: bytes) -> None:
        nonlocal opened
        if idle:
            reader, writer = idle.pop()
        elif opened < connections:
            opened += 1
            try:
                reader, writer = await asyncio.open_connection(HOST, port)
            except OSError:
                opened -= 1
                results.append((0, 0.0))
                return
        else:
            results.append((-1, 0.0))
            return
        start = time.perf_counter()
        try:
            status, _, close = await exchange(reader, writer, request)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
            status, close = 0, True
        results.append((status, time.perf_counter() - start))
        if close:
            writer.close()
            opened -= 1
        else:
            idle.append((reader, writer))

    loop = asyncio.get_running_loop()
    start = loop.time()
    count = min(limit, int(rate * seconds))
    for i in range(count):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = loop.create_task(one(requests[i % len(requests)]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=120)
    wall = loop.time() - start
    for _, writer in idle:
        writer.close()
    return results, wall


def _phase(results, wall, capacity: float, unloaded_p99: float, server_cpu: float,
           client_cpu: float) -> dict:  # fmt: skip
    summary = summarize(results, wall)
    admitted = [t for s, t in results if s == 200]
    p99 = percentile(admitted, 0.99)
    summary.update({
        "vs_capacity": round(summary["answered_per_s"] / capacity, 3),
        "admitted_p99_vs_unloaded": None if p99 is None else round(p99 / unloaded_p99, 2),
        "refused_503": sum(s == 503 for s, _ in results),
        "not_sent": sum(s == -1 for s, _ in results),
        "cpu_seconds": {"server": round(server_cpu, 2), "clients": round(client_cpu, 2)},
    })  # fmt: skip
    return summary


def bench_overload(checkpoint: str, payloads: list[tuple[bytes, str]], capacity: float,
                   unloaded_p99: float, queue: int, multiples=(3.0, 10.0),
                   seconds: float = 20, storm_clients: int = 64, storm_requests: int = 20000,
                   refusals: int = 5000, server_options: tuple[str, ...] = ()) -> dict:  # fmt: skip
    """The phases above; `unloaded_p99` in seconds."""
    phases = []
    with Server(checkpoint, *server_options, "--max-queue", str(queue)) as server:
        wire = [request_bytes("/v1/predict", b, k, server.port) for b, k in payloads]
        asyncio.run(run_clients(server.port, wire, 2, 8, 30))  # warm-up

        def measured(name: str, offered: float | None, work) -> None:
            server_before, client_before = cpu_seconds(server.process.pid), own_cpu_seconds()
            metrics_before = scrape(server.url)
            results, wall = asyncio.run(work)
            batches = means(metrics_before, scrape(server.url))
            phase = _phase(results, wall, capacity, unloaded_p99,
                           cpu_seconds(server.process.pid) - server_before,
                           own_cpu_seconds() - client_before)  # fmt: skip
            phase.update({"phase": name, "offered_vs_capacity": offered,
                          "healthy_after": server.healthy(), "batches": batches})  # fmt: skip
            phases.append(phase)

        for multiple in multiples:
            rate = multiple * capacity
            measured(f"open loop {multiple:g}x", multiple,
                     open_loop(server.port, wire, rate, seconds, int(rate * seconds)))  # fmt: skip
        storm = run_clients(server.port, wire, storm_clients, storm_requests, seconds)
        measured(f"retry storm, {storm_clients} clients", None, storm)
        crashed = server.process.poll() is not None
    with Server(checkpoint, *server_options, "--max-queue", "0") as server:
        wire = [request_bytes("/v1/predict", b, k, server.port) for b, k in payloads]
        before = cpu_seconds(server.process.pid)
        results, wall = asyncio.run(run_clients(server.port, wire, 8, refusals, 60))
        used = cpu_seconds(server.process.pid) - before
        refused = sum(s == 503 for s, _ in results)
    return {
        "capacity_per_s": round(capacity, 1),
        "unloaded_p99_ms": ms(unloaded_p99),
        "queue": queue,
        "phases": phases,
        "crashed": crashed,
        "refusal": {
            "requests": len(results),
            "refused_503": refused,
            "server_cpu_ms_per_refusal": round(1000 * used / max(1, refused), 3),
            "refused_per_s": round(refused / wall, 1),
        },
    }


def draw(overload: dict, path: str, title: str) -> None:
    """Answered per second / capacity and the admitted p99 / the unloaded one, per phase."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phases = overload["phases"]
    names = [p["phase"] for p in phases]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    left.bar(names, [p["vs_capacity"] for p in phases], color="#4c72b0")
    left.axhline(0.9, color="#c44e52", linestyle="--", label="0.9 of capacity")
    left.set_ylabel("answered per second / capacity")
    left.set_ylim(0, 1.2)
    left.legend(loc="lower right")
    right.bar(names, [p["admitted_p99_vs_unloaded"] or 0 for p in phases], color="#55a868")
    right.axhline(2.0, color="#c44e52", linestyle="--", label="2x the unloaded p99")
    right.set_ylabel("admitted p99 / unloaded p99")
    right.legend(loc="lower right")
    for axis in (left, right):
        axis.tick_params(axis="x", labelrotation=15)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
