"""Prometheus metrics of the core service, exposed at ``GET /metrics``.

==============================================  ===================================================
``provender_core_requests_total``               requests by ``method``, ``route`` and ``status``
``provender_core_request_duration_seconds``     latency histogram, same labels
``provender_core_jobs_failed_stale_total``      RUNNING jobs failed because their runner stopped beating
``provender_core_jobs_started_total``           jobs started in the service (``run_on="core"``), by ``kind``
==============================================  ===================================================

``route`` is the route's pattern (``/v1/projects/{project}/apply``), so labels stay few.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS_SECONDS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class CoreMetrics:
    """The core service's metrics, in their own registry (several services may live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "provender_core_requests",
            "Requests handled, by method, route and HTTP status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "provender_core_request_duration_seconds",
            "Time from receiving a request to sending its response, in seconds.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=self.registry,
        )
        self.jobs_failed_stale = Counter(
            "provender_core_jobs_failed_stale",
            "RUNNING jobs marked FAILED because their runner stopped beating.",
            registry=self.registry,
        )
        self.jobs_started = Counter(
            "provender_core_jobs_started",
            "Jobs started inside the core service (run_on='core'), by kind.",
            ["kind"],
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count a request and its latency."""
        labels = (method, route, str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """Return the exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
