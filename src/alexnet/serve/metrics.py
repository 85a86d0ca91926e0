"""What the server counts, for Prometheus: `GET /metrics` (prometheus-client's text format).

Names and units follow Prometheus's conventions (base units, `_total` on counters,
`_seconds` on durations). Each server has its own registry, so that two servers in one
process (tests) count apart. Routes are the API's templates, never the raw path, so that a
client cannot grow the label set.

    alexnet_http_requests_total{route, method, status}   answered requests
    alexnet_http_request_duration_seconds{route}          arrival to the answer's end
    alexnet_queue_wait_seconds                            a request's views waiting for a batch
    alexnet_inference_duration_seconds                    one forward pass of a batch
    alexnet_batch_size                                    views per forward pass
    alexnet_requests_inside                               requests admitted and not yet answered
    alexnet_refusals_total{reason}                        requests refused, by why
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Seconds: from a lone photo on a fast machine (~2 ms) to the server's default timeout.
LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)

# Why a request was refused (the label values of alexnet_refusals_total).
REASONS = ("queue_full", "body_too_large", "unsupported_media_type", "unauthorized",
           "bad_request", "timeout")  # fmt: skip


class Metrics:
    """One server's counters, histograms and gauges."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "alexnet_http_requests", "HTTP requests answered, by route, method and status",
            ("route", "method", "status"), registry=registry,
        )  # fmt: skip
        self.duration = Histogram(
            "alexnet_http_request_duration_seconds",
            "Seconds from a request's arrival to the end of its answer, by route",
            ("route",), buckets=LATENCY, registry=registry,
        )  # fmt: skip
        self.queue_wait = Histogram(
            "alexnet_queue_wait_seconds",
            "Seconds a request's views waited for the batch that carried them",
            buckets=LATENCY, registry=registry,
        )  # fmt: skip
        self.inference = Histogram(
            "alexnet_inference_duration_seconds", "Seconds of one forward pass of a batch",
            buckets=LATENCY, registry=registry,
        )  # fmt: skip
        self.batch_size = Histogram(
            "alexnet_batch_size", "Views per forward pass", buckets=BATCHES, registry=registry
        )
        self.inside = Gauge(
            "alexnet_requests_inside",
            "Requests admitted and not yet answered (read, decoded, waiting or computed)",
            registry=registry,
        )
        self.refusals = Counter(
            "alexnet_refusals", "Requests refused, by reason", ("reason",), registry=registry
        )
        for reason in REASONS:  # every reason shows from the start, at 0
            self.refusals.labels(reason)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
