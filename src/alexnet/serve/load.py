"""`alexnet bench serve`: the server under load, on the loopback address only.

The server runs in its own process (`alexnet serve`, as a user starts it); clients are
asyncio connections of this process that each send one request, wait for the answer, and
send the next (HTTP/1.1 keep-alive, the photo's raw bytes). Every phase is bounded in
requests and seconds and stops by itself:

- load: `clients` clients, at most `requests` requests or `seconds` seconds: requests/s,
  p50/p99 latency, errors, and the server's peak resident memory (VmHWM);
- past capacity (alexnet.serve.overload): open-loop arrivals at 3x and 10x what the load
  answered, a retry storm of `overload_clients` clients, the CPU a refusal costs.

The reference is the same network on prepared inputs in this process, at batch 128 (what
`alexnet bench model` times) and at a batch of `clients` (the largest batch `clients`
clients can make), measured before and after the load, the server idle.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import urllib.request
from pathlib import Path

from alexnet.core.errors import UserError
from alexnet.serve.traffic import Server, request_bytes, run_clients, summarize


def bench_serve(
    checkpoint: str,
    images: list[str],
    clients: int = 8,
    requests: int = 2000,
    seconds: float = 60,
    overload_clients: int = 64,
    overload_queue: int | None = None,
    overload_requests: int = 20000,
    overload_seconds: float = 20,
    server_options: tuple[str, ...] = (),
    reference_images: int = 512,
    rounds: int = 3,
    multiples: tuple[float, ...] = (3.0, 10.0),
    refusals: int = 5000,
) -> dict:
    import torch

    from alexnet.bench.common import device_name, machine
    from alexnet.bench.predict import inference_rate
    from alexnet.models import checkpoint as ckpt
    from alexnet.serve.overload import means, scrape

    if not images:
        raise UserError("no images to send: give image files or a folder")
    payloads = []
    for path in images:
        kind = {".png": "image/png", ".gif": "image/gif", ".bmp": "image/bmp",
                ".webp": "image/webp"}.get(Path(path).suffix.lower(), "image/jpeg")  # fmt: skip
        payloads.append((Path(path).read_bytes(), kind))
    loaded = ckpt.load(checkpoint)
    reference = {"batch_128": inference_rate(loaded, 128, reference_images),
                 f"batch_{clients}": inference_rate(loaded, clients, reference_images)}  # fmt: skip
    for run in reference.values():
        run()  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in reference}
    rounds_out = []

    result = {
        "machine": (host := machine()),
        "device": device_name(torch.device("cpu"), host["cpu"]),
    }
    with Server(checkpoint, *server_options) as server:
        before = server.memory()
        port = server.port
        wire = [request_bytes("/v1/predict", b, k, port) for b, k in payloads]
        asyncio.run(run_clients(port, wire, min(clients, 2), 2 * clients, 30))  # warm-up
        # Rounds alternate the reference (server idle) and the load, so that both see the
        # same machine: a shared machine's speed drifts from minute to minute.
        for _ in range(rounds):
            for name, run in reference.items():
                rates[name].append(run())
            batches = _health(server)["batches"]
            metrics_before = scrape(server.url)
            results, wall = asyncio.run(run_clients(port, wire, clients, requests, seconds))
            load = summarize(results, wall)
            load["batches"] = means(metrics_before, scrape(server.url))
            load["mean_batch"] = round(
                sum(s == 200 for s, _ in results) / max(1, _health(server)["batches"] - batches), 2
            )
            load["vs_batch_128"] = round(load["answered_per_s"] / rates["batch_128"][-1], 3)
            load[f"vs_batch_{clients}"] = round(
                load["answered_per_s"] / rates[f"batch_{clients}"][-1], 3
            )
            rounds_out.append(load)
        model = json.loads(urllib.request.urlopen(server.url + "/v1/model").read())
        memory = {"before": before, "after": server.memory()}
        healthy = server.healthy()
    result["reference_images_per_s"] = {k: [round(v, 1) for v in vs] for k, vs in rates.items()}
    median = lambda key: round(statistics.median(r[key] for r in rounds_out), 3)  # noqa: E731
    load = {
        "clients": clients,
        "rounds": rounds_out,
        "answered_per_s": median("answered_per_s"),
        "vs_batch_128": median("vs_batch_128"),
        f"vs_batch_{clients}": median(f"vs_batch_{clients}"),
        "errors": sum(r["errors"] for r in rounds_out),
        "memory": memory,
        "healthy_after": healthy,
    }
    from alexnet.serve.overload import bench_overload

    unloaded_p99 = statistics.median(r["latency_ms"]["p99"] for r in rounds_out) / 1000
    overload = bench_overload(
        checkpoint, payloads, load["answered_per_s"], unloaded_p99,
        queue=overload_queue or clients, multiples=multiples, seconds=overload_seconds,
        storm_clients=overload_clients, storm_requests=overload_requests, refusals=refusals,
        server_options=server_options,
    )  # fmt: skip
    result.update({
        "settings": {"checkpoint": str(checkpoint), "network": model["network"],
                     "images": len(images), "server_options": list(server_options),
                     "limits": model["limits"], "precision": model["precision"],
                     "runtime": model["runtime"]},
        "load": load, "overload": overload,
    })  # fmt: skip
    result["table"] = table(result)
    return result


def _health(server: Server) -> dict:
    return json.loads(urllib.request.urlopen(server.url + "/healthz").read())


def table(r: dict) -> str:
    load, over, ref = r["load"], r["overload"], r["reference_images_per_s"]
    clients = load["clients"]
    settings = r["settings"]
    lines = [
        f"alexnet bench serve on {r['device']}: {settings['network']}, "
        f"{settings['images']} photos, {settings['runtime']} {settings['precision']}",
        f"{'round':>5} {'answered/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
        f"{'batch':>5} {'net@128/s':>9} {f'net@{clients}/s':>9} {'/128':>5} {f'/{clients}':>5}",
    ]
    for i, row in enumerate(load["rounds"]):
        lines.append(
            f"{i + 1:>5} {row['answered_per_s']:>10,.1f} {row['latency_ms']['p50']:>7} "
            f"{row['latency_ms']['p99']:>7} {row['errors']:>6} {row['mean_batch']:>5} "
            f"{ref['batch_128'][i]:>9,.1f} {ref[f'batch_{clients}'][i]:>9,.1f} "
            f"{row['vs_batch_128']:>5.2f} {row[f'vs_batch_{clients}']:>5.2f}"
        )
    lines += [
        f"{clients} clients, median of {len(load['rounds'])} rounds: served / the network at "
        f"batch 128 = {load['vs_batch_128']:.2f}, / at batch {clients} = "
        f"{load[f'vs_batch_{clients}']:.2f}; peak memory "
        f"{load['memory']['after']['peak_rss_mib']:,.0f} MiB",
        f"past capacity ({over['capacity_per_s']:,.1f}/s answered at {clients} clients, "
        f"p99 {over['unloaded_p99_ms']} ms), a server letting {over['queue']} wait:",
        f"{'phase':>26} {'offered/s':>9} {'answered/s':>10} {'/capacity':>9} {'p99 ms':>7} "
        f"{'/unloaded':>9} {'refused':>7} {'cpu server':>10} {'cpu clients':>11}",
    ]
    for row in over["phases"]:
        offered = (f"{row['offered_vs_capacity'] * over['capacity_per_s']:,.0f}"
                   if row["offered_vs_capacity"] else "-")  # fmt: skip
        lines.append(
            f"{row['phase']:>26} {offered:>9} {row['answered_per_s']:>10,.1f} "
            f"{row['vs_capacity']:>9.2f} {row['latency_ms']['p99']!s:>7} "
            f"{row['admitted_p99_vs_unloaded']!s:>9} {row['refused_503']:>7,} "
            f"{row['cpu_seconds']['server']:>10} {row['cpu_seconds']['clients']:>11}"
        )
    refusal = over["refusal"]
    lines.append(
        f"a refusal (503 at the door): {refusal['server_cpu_ms_per_refusal']} ms of the "
        f"server's CPU, {refusal['refused_per_s']:,.0f} refused per second from 8 clients"
    )
    return "\n".join(lines)
