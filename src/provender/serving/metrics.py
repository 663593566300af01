"""Prometheus metrics of the serving service, exposed at ``GET /metrics``.

=============================================  =======================================================
``provender_serving_requests_total``           requests by ``protocol``, ``endpoint``, ``status``
``provender_serving_request_duration_seconds`` latency histogram, same labels
``provender_serving_in_flight_requests``       requests being handled, by ``protocol``
``provender_serving_lookups_total``            entity-row lookups by ``project``, ``table`` and
                                               ``status`` (PRESENT, NOT_FOUND, OUTSIDE_MAX_AGE, CORRUPT)
``provender_serving_store_errors_total``       failed online-store reads by ``project``, ``retryable``
``provender_serving_request_log_lines_total``  request-log lines by ``outcome`` (written, dropped)
``provender_serving_registry_refresh_errors_total``  failed registry re-reads
=============================================  =======================================================

``status`` is the HTTP status code for HTTP and the gRPC code name for gRPC. With several worker
processes, each writes its values to files in ``PROMETHEUS_MULTIPROC_DIR`` (set by the
supervisor) and any worker answers ``/metrics`` with the sum over all of them.

Label children are cached, so recording a request costs a dictionary lookup and two updates.
"""

from __future__ import annotations

import os
from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS_SECONDS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip


class _Child:
    """The label children of one (protocol, endpoint, status)."""

    __slots__ = ("count", "latency")

    def __init__(self, count: Counter, latency: Histogram) -> None:
        self.count, self.latency = count, latency


class Metrics:
    """The service's metrics, in their own registry (several services may live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter(
            "provender_serving_requests",
            "Requests handled, by protocol, endpoint and status (HTTP status code or gRPC code name).",
            ["protocol", "endpoint", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "provender_serving_request_duration_seconds",
            "Time from receiving a request to sending its response, in seconds.",
            ["protocol", "endpoint", "status"],
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "provender_serving_in_flight_requests",
            "Requests being handled right now.",
            ["protocol"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.lookups = Counter(
            "provender_serving_lookups",
            "Entity-row lookups per feature table, by status (PRESENT, NOT_FOUND, OUTSIDE_MAX_AGE, CORRUPT).",
            ["project", "table", "status"],
            registry=registry,
        )
        self.store_errors = Counter(
            "provender_serving_store_errors",
            "Online store reads that failed.",
            ["project", "retryable"],
            registry=registry,
        )
        self.request_log_lines = Counter(
            "provender_serving_request_log_lines",
            "Request-log lines written, or dropped because the buffer was full.",
            ["outcome"],
            registry=registry,
        )
        self.registry_refresh_errors = Counter(
            "provender_serving_registry_refresh_errors",
            "Registry re-reads that failed (the last good snapshot stays in use).",
            registry=registry,
        )
        self.corrupt_rows = Counter(
            "provender_serving_corrupt_rows",
            "Stored rows that could not be decoded (answered as CORRUPT, logged with their key).",
            ["table"],
            registry=registry,
        )
        self._children: dict[tuple[str, str, str], _Child] = {}
        self._lookups: dict[tuple[str, str, str], Counter] = {}
        self._in_flight = {name: self.in_flight.labels(name) for name in ("http", "grpc")}
        self.log_written = self.request_log_lines.labels("written")
        self.log_dropped = self.request_log_lines.labels("dropped")

    def started(self, protocol: str) -> None:
        """Count a request as in flight."""
        self._in_flight[protocol].inc()

    def finished(self, protocol: str, endpoint: str, status: str, seconds: float) -> None:
        """Record a finished request (it is no longer in flight)."""
        self._in_flight[protocol].dec()
        self.observe(protocol, endpoint, status, seconds)

    def observe(self, protocol: str, endpoint: str, status: str, seconds: float) -> None:
        """Count a request and its latency (for requests never counted as in flight)."""
        key = (protocol, endpoint, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = _Child(self.requests.labels(*key), self.latency.labels(*key))
        child.count.inc()
        child.latency.observe(seconds)

    def count_lookups(self, project: str, table: str, statuses: Iterable[str], repeat: int = 1) -> None:
        """Count one table's row lookups by status (each of ``statuses`` ``repeat`` times)."""
        if isinstance(statuses, tuple) and len(statuses) == 1:  # one status (every row found): no tally
            self._lookup(project, table, statuses[0]).inc(repeat)
            return
        for status, count in Tally(statuses).items():
            self._lookup(project, table, status).inc(count * repeat)

    def _lookup(self, project: str, table: str, status: str) -> Counter:
        key = (project, table, status)
        child = self._lookups.get(key)
        if child is None:
            child = self._lookups[key] = self.lookups.labels(*key)
        return child

    def store_error(self, project: str, *, retryable: bool) -> None:
        """Count a failed store read."""
        self.store_errors.labels(project, "true" if retryable else "false").inc()

    def render(self) -> tuple[bytes, str]:
        """Return the exposition text and its content type (summed over workers if several)."""
        directory = os.environ.get(MULTIPROC_ENV)
        if directory:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def mark_worker_dead(pid: int) -> None:
    """Drop a dead worker's live gauges from the multi-process files (called by the supervisor)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
