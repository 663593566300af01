"""Prometheus metrics of stream ingestion jobs (optional: needs ``prometheus_client``).

=================================================  ===================================================
``provender_stream_records_consumed_total``        records read from the topic, by ``table``
``provender_stream_records_written_total``         records written to the online store, by ``table``
                                                   (``rate()`` of it is the records/s)
``provender_stream_dead_letters_total``            records sent to the dead-letter topic, by
                                                   ``table`` and ``reason``
``provender_stream_batches_total``                 micro-batches written, by ``table``
``provender_stream_records_too_late_total``        events later than the allowed lateness, not
                                                   aggregated online (windowed aggregations), by ``table``
``provender_stream_lag_records``                   records in a partition not yet consumed, by
                                                   ``table``, ``topic`` and ``partition``
``provender_stream_freshness_seconds``             write time minus event time of written records
                                                   (histogram), by ``table``
=================================================  ===================================================

The metrics live in the process's default registry (``prometheus_client.REGISTRY``), so any
exporter in the process shows them: ``provender ingest-stream --metrics-port`` starts one.
Without ``prometheus_client`` (``pip install 'provender[serving]'``) the jobs still count, in
their own attributes, and :func:`stream_metrics` returns None.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge

FRESHNESS_BUCKETS_SECONDS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
)  # fmt: skip

_lock = threading.Lock()
_metrics: StreamMetrics | None = None


class StreamMetrics:
    """The stream ingestion metrics (one set per process, labelled by table)."""

    def __init__(self) -> None:
        from prometheus_client import REGISTRY, Counter, Gauge

        self.consumed: Counter = Counter(
            "provender_stream_records_consumed", "Records read from the stream topic.", ["table"]
        )
        self.written: Counter = Counter(
            "provender_stream_records_written", "Records written to the online store.", ["table"]
        )
        self.dead_letters: Counter = Counter(
            "provender_stream_dead_letters", "Records sent to the dead-letter topic, by reason.", ["table", "reason"]
        )
        self.batches: Counter = Counter("provender_stream_batches", "Micro-batches written.", ["table"])
        self.too_late: Counter = Counter(
            "provender_stream_records_too_late",
            "Events later than the allowed lateness, left out of the online windowed aggregations.",
            ["table"],
        )
        self.lag: Gauge = Gauge(
            "provender_stream_lag_records",
            "Records in a partition that the job has not consumed yet.",
            ["table", "topic", "partition"],
        )
        self.freshness = FreshnessHistogram()
        REGISTRY.register(self.freshness)

    def observe_freshness(self, table: str, seconds: np.ndarray[Any, Any]) -> None:
        """Record the freshness of each written record (one numpy pass per batch)."""
        self.freshness.observe_many(table, seconds)


class FreshnessHistogram:
    """``provender_stream_freshness_seconds``: a Prometheus histogram fed a batch at a time.

    ``prometheus_client``'s Histogram takes one value per call (about 1 us each); a batch of
    records is bucketed here with numpy instead, and the collector reports the same series.
    """

    name = "provender_stream_freshness_seconds"

    def __init__(self, buckets: Sequence[float] = FRESHNESS_BUCKETS_SECONDS) -> None:
        self._bounds = np.asarray(buckets, dtype=np.float64)
        self._lock = threading.Lock()
        self._counts: dict[str, np.ndarray[Any, Any]] = {}
        self._sums: dict[str, float] = {}

    def observe_many(self, table: str, seconds: np.ndarray[Any, Any]) -> None:
        """Count each value in its bucket (``le`` semantics: the first bound >= the value)."""
        counts = np.bincount(np.searchsorted(self._bounds, seconds, side="left"), minlength=len(self._bounds) + 1)
        with self._lock:
            if table in self._counts:
                self._counts[table] += counts
                self._sums[table] += float(seconds.sum())
            else:
                self._counts[table], self._sums[table] = counts, float(seconds.sum())

    def describe(self) -> list[Any]:
        """No samples at registration time (the metric's name and type)."""
        return [self._family()]

    def collect(self) -> list[Any]:
        """The cumulative buckets, count and sum per table."""
        family = self._family()
        with self._lock:
            snapshot = {table: (counts.cumsum(), self._sums[table]) for table, counts in self._counts.items()}
        labels = [*(repr(float(b)) for b in self._bounds), "+Inf"]
        for table, (cumulative, total) in snapshot.items():
            family.add_metric([table], list(zip(labels, (int(c) for c in cumulative), strict=True)), total)
        return [family]

    def _family(self) -> Any:
        from prometheus_client.core import HistogramMetricFamily

        return HistogramMetricFamily(
            self.name,
            "Time from a record's event time to its write into the online store, in seconds.",
            labels=["table"],
        )


def stream_metrics() -> StreamMetrics | None:
    """Return the process's stream metrics, created on first use; None without prometheus_client."""
    global _metrics  # noqa: PLW0603 - one registry of metrics per process, made on first use
    with _lock:
        if _metrics is None:
            try:
                _metrics = StreamMetrics()
            except ImportError:
                return None
        return _metrics
