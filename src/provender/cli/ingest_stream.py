"""``provender ingest-stream``: consume a feature table's Kafka topic into the online store until stopped."""

from __future__ import annotations

import gc
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from provender.cli.state import CliState
from provender.errors import MissingExtraError

if TYPE_CHECKING:
    from provender.ingestion.stream import StreamIngestionJob


@click.command("ingest-stream")
@click.option("--table", "-t", "table", required=True, help="Feature table whose stream_source to consume.")
@click.option(
    "--group",
    "group_id",
    default=None,
    help="Consumer group (default provender-<project>-<table>). Processes in one group share the partitions.",
)
@click.option(
    "--instance-id",
    default=None,
    help="Static group member id, stable across restarts (e.g. a pod name); a restart resumes at once.",
)
@click.option(
    "--offline-log",
    type=click.Path(path_type=Path),
    default=None,
    help="Also append the records to date-partitioned Parquet under this directory (for historical retrieval).",
)
@click.option("--batch-rows", type=click.IntRange(min=1), default=None, help="Most records per micro-batch.")
@click.option("--linger-ms", type=click.IntRange(min=0), default=None, help="Wait this long for more records.")
@click.option(
    "--status-interval",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds between status lines on stderr.",
)
@click.option(
    "--metrics-port", type=click.IntRange(0, 65535), default=None, help="Serve Prometheus metrics on this port."
)
@click.pass_obj
def ingest_stream(
    state: CliState,
    table: str,
    group_id: str | None,
    instance_id: str | None,
    offline_log: Path | None,
    batch_rows: int | None,
    linger_ms: int | None,
    status_interval: float,
    metrics_port: int | None,
) -> None:
    """Consume TABLE's stream into the online store until SIGTERM or Ctrl-C, then stop cleanly.

    Records are validated against the table's types and written in micro-batches; the offsets
    of written records are committed every stream.commit_interval_seconds (5 s) and at a stop
    (at-least-once; replays are harmless). Bad records go to
    <topic>.dlq with the reason in their headers. Every --status-interval seconds a status line
    shows records/s, dead letters, events too late for windowed aggregations (if any), lag per
    partition and freshness (write time minus event time). On SIGTERM or SIGINT the current
    batch is written and committed before exiting.

    \b
    Example:
      provender ingest-stream --table driver_trips --group trips-ingest
    """
    client = state.client()
    if metrics_port is not None:
        _serve_metrics(metrics_port)
    job = client.start_stream_to_online_ingestion(
        table,
        group_id=group_id,
        instance_id=instance_id,
        offline_log=offline_log,
        batch_rows=batch_rows,
        linger_ms=linger_ms,
    )
    click.echo(
        f"Consuming {job.topic!r} into {table} (group {job.group_id!r}); SIGTERM or Ctrl-C stops cleanly.", err=True
    )
    # Everything allocated so far (modules, client, job) lives as long as the process: moving it out
    # of the garbage collector's view makes its full collections a few ms instead of tens of ms,
    # which would otherwise stall the stream (freshness p99) several times a minute.
    gc.freeze()
    with _stop_on_signals(job):
        status = StatusLine(job)
        while not job.is_done:
            job.wait_done(status_interval)
            if not job.is_done:
                click.echo(status.render(), err=True)
    started = job.started_at
    seconds = (job.finished_at - started).total_seconds() if started and job.finished_at else 0.0
    job.wait()  # raises the job's error, if it failed
    late = ""
    if job.records_too_late:
        late = f", {job.records_too_late:,} too late for the online aggregations"
    click.echo(
        f"Stopped {table}: {job.records_written:,} records written, {job.records_dead_lettered:,} dead-lettered"
        f"{late}, {job.records_consumed:,} consumed in {seconds:.1f} s; offsets committed."
    )


class StatusLine:
    """Render a job's progress since the previous line."""

    def __init__(self, job: StreamIngestionJob) -> None:
        self._job = job
        self._at = time.monotonic()
        self._written = job.records_written

    def render(self) -> str:
        """One line: rate, totals, dead letters, lag per partition, freshness."""
        job, now = self._job, time.monotonic()
        rate = (job.records_written - self._written) / max(now - self._at, 1e-9)
        self._at, self._written = now, job.records_written
        lag = " ".join(f"p{p}={n:,}" for p, n in sorted(job.lag.items())) or "-"
        fresh = job.freshness_seconds()
        freshness = "-" if fresh is None else f"p50 {fresh[0] * 1000:,.0f} ms p99 {fresh[1] * 1000:,.0f} ms"
        late = f" | too late {job.records_too_late:,}" if job.records_too_late else ""
        return (
            f"[{job.table}] {rate:,.0f} records/s | written {job.records_written:,} | "
            f"dead letters {job.records_dead_lettered:,}{late} | lag {lag} | freshness {freshness}"
        )


@contextmanager
def _stop_on_signals(job: StreamIngestionJob) -> Iterator[None]:
    """Turn SIGTERM and SIGINT into a clean stop of ``job`` while the block runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: FrameType | None) -> None:
        click.echo(f"{signal.Signals(signum).name}: stopping after the current batch...", err=True)
        job.cancel()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _serve_metrics(port: int) -> None:
    try:
        from prometheus_client import start_http_server
    except ImportError:
        raise MissingExtraError("--metrics-port", extra="serving", missing="prometheus-client") from None
    start_http_server(port)
