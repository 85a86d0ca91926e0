"""The load test's machinery, bounded and small: clients that stop by themselves, counts
that add up, and an overloaded server that refuses quickly and stays up."""

from __future__ import annotations

import asyncio

import pytest

from alexnet.serve.load import Server, request_bytes, run_clients, summarize


def test_clients_stop_at_their_bound_and_every_answer_is_counted(server, photos):
    wire = [request_bytes("/v1/predict", p.read_bytes(), "image/png", server.port)
            for p in photos]  # fmt: skip
    results, wall = asyncio.run(run_clients(server.port, wire, clients=4, limit=30, seconds=60))
    summary = summarize(results, wall)
    assert summary["requests"] == 30 and summary["statuses"] == {"200": 30}
    assert summary["errors"] == 0
    assert (
        summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"] <= summary["latency_ms"]["max"]
    )
    # the time bound stops them too, long before the request bound
    results, wall = asyncio.run(run_clients(server.port, wire, clients=2, limit=10**6, seconds=1))
    assert wall < 10 and 0 < len(results) < 10**6


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_overload_is_refused_fast_and_the_server_stays_up(served, photos):
    with Server(served, "--max-queue", "2") as server:
        wire = [request_bytes("/v1/predict", p.read_bytes(), "image/png", server.port)
                for p in photos]  # fmt: skip
        results, wall = asyncio.run(
            run_clients(server.port, wire, clients=24, limit=300, seconds=60)
        )
        summary = summarize(results, wall)
        assert summary["requests"] == 300
        assert set(summary["statuses"]) == {"200", "503"}, summary["statuses"]
        assert summary["statuses"]["503"] > 0 and summary["statuses"]["200"] > 0
        assert server.healthy() and server.process.poll() is None
