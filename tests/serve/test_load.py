"""The load test's machinery, bounded and small: clients that stop by themselves, counts
that add up, and an overloaded server that refuses quickly and stays up."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from alexnet.serve.traffic import Server, request_bytes, run_clients, summarize


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


def test_open_loop_sends_at_its_rate_whether_answered_or_not(server, photos):
    from alexnet.serve.overload import open_loop

    wire = [request_bytes("/v1/predict", p.read_bytes(), "image/png", server.port)
            for p in photos]  # fmt: skip
    results, wall = asyncio.run(open_loop(server.port, wire, rate=40, seconds=1, limit=30))
    assert len(results) == 30 and all(s == 200 for s, _ in results)  # the limit, all answered
    assert wall < 20


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_overload_phases_are_bounded_and_a_refusal_is_timed(served, photos):
    from alexnet.serve.overload import bench_overload, draw

    payloads = [(p.read_bytes(), "image/png") for p in photos]
    over = bench_overload(str(served), payloads, capacity=50, unloaded_p99=0.05, queue=2,
                          multiples=(4,), seconds=1, storm_clients=16, storm_requests=200,
                          refusals=500)  # fmt: skip
    open_loop_phase, storm = over["phases"]
    assert open_loop_phase["requests"] == 200 and storm["requests"] == 200
    # every request answered or refused at the door, none lost (how many of each depends on
    # how fast this machine is at the moment: the refusal's own count is checked below)
    for phase in (open_loop_phase, storm):
        assert set(phase["statuses"]) <= {"200", "503"}, phase["statuses"]
        assert phase["answered_per_s"] > 0 and phase["refused_503"] == phase["statuses"].get(
            "503", 0), phase  # fmt: skip
    assert not over["crashed"]
    assert over["refusal"]["refused_503"] == 500  # enough CPU to show in /proc's 10 ms ticks
    assert over["refusal"]["server_cpu_ms_per_refusal"] > 0
    assert all(p["healthy_after"] for p in over["phases"])
    draw(over, str(Path(photos[0]).parent / "curve.png"), "test")
