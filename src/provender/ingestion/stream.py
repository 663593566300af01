"""Stream-to-online ingestion: consume a topic, validate, write micro-batches, commit after the write.

One loop, used by ``Client.start_stream_to_online_ingestion`` (in a background thread) and by
``provender ingest-stream`` (a long-lived process)::

    poll -> micro-batch (batch_rows records or linger_ms after its first record)
         -> decode (formats.py) -> validate into normalized Arrow rows (rows.py)
         -> write to the online store (event-time guard) [-> offline log (offline_log.py)]
         -> dead letters to <topic>.dlq, flushed -> commit the batch's offsets

Delivery is at-least-once: offsets are committed only after everything before them is written
(with an offline log, after the rows are in a Parquet file), so a crash replays at most the
uncommitted records, and replays are harmless because the store keeps the newest
(event, created) time per key. A bad record goes to the dead-letter topic and its offset is
committed with the others, so it never blocks its partition. When the group rebalances, the
pending batch is written and committed before the partitions are given up.

A retryable store, registry or broker failure is retried with backoff (the batch is kept and
nothing is committed); any other failure ends the job with status FAILED.

The broker is behind :class:`StreamSource` (``kafka.py`` is the Kafka implementation), so the
loop is tested without one.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from provender.definitions import FeatureTable, KafkaSource, ValueType
from provender.errors import BackendError, DataError, DefinitionError, MissingExtraError
from provender.ingestion.batch import IngestionJob
from provender.ingestion.offline_log import OfflineLog
from provender.ingestion.rows import EVENT_TIMESTAMP, DeadLetterReason, RowBuilder, check_avro_schema, column_specs
from provender.ingestion.stream_metrics import StreamMetrics, stream_metrics

if TYPE_CHECKING:
    from provender.config import StreamSection
    from provender.ingestion.formats import MessageDecoder

log = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 0.1
TICK_SECONDS = 1.0
FRESHNESS_WINDOW_SECONDS = 10.0
_RETRY_FIRST_SECONDS = 0.2
_RETRY_MAX_SECONDS = 5.0

T = TypeVar("T")


class Polled(NamedTuple):
    """Messages from one poll, column by column (aligned lists)."""

    values: list[bytes | None]
    partitions: list[int]
    offsets: list[int]
    keys: list[bytes | None]


class DeadLetter(NamedTuple):
    """A record the job could not store, and why."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: DeadLetterReason
    error: str


RevokeHandler = Callable[[Sequence[int], bool], None]
"""Called with the partitions about to be taken away, and whether they are already lost."""


class StreamSource(Protocol):
    """A partitioned topic read as a member of a consumer group, with a dead-letter destination."""

    topic: str

    def subscribe(self, on_revoke: RevokeHandler) -> None:
        """Join the group; ``on_revoke`` runs (inside :meth:`poll`) before partitions are given up."""
        ...

    def poll(self, max_records: int, timeout_seconds: float) -> Polled:
        """Return up to ``max_records`` messages, waiting at most ``timeout_seconds`` for them.

        Raises:
            BackendError: the broker failed for good (``retryable`` if it may come back).
        """
        ...

    def commit(self, offsets: Mapping[int, int]) -> None:
        """Commit, per partition, the offset of the next record to read (synchronously).

        A commit refused because the partition moved to another member is not an error: the
        new owner re-reads those records.

        Raises:
            BackendError: the commit failed (``retryable`` if it may succeed later).
        """
        ...

    def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        """Publish dead letters and return once they are durable.

        Raises:
            BackendError: they could not be published.
        """
        ...

    def lag(self) -> dict[int, int]:
        """Records not yet consumed, per assigned partition (from cached high watermarks)."""
        ...

    def close(self) -> None:
        """Leave the group and release connections."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamJobSpec:
    """What a stream job ingests, and how.

    Attributes:
        table: the feature table; its ``stream_source`` is read.
        entity_types: the value type of each registered entity.
        group_id: the consumer group; processes with the same group share the partitions.
        instance_id: a static group member id (``group.instance.id``): a restarted process with
            the same id takes its predecessor's partitions at once, without a rebalance.
        offline_log: where to append the records as date-partitioned Parquet (None: nowhere).
        options: batching, dead letters, schema registry and consumer settings.
    """

    table: FeatureTable
    entity_types: Mapping[str, ValueType]
    group_id: str
    options: StreamSection
    instance_id: str | None = None
    offline_log: str | Path | None = None

    @property
    def source(self) -> KafkaSource:
        """The table's stream source."""
        source = self.table.stream_source
        if source is None:
            raise DefinitionError(
                f"FeatureTable {self.table.name!r}", "stream_source", "is not set; add a KafkaSource to ingest a stream"
            )
        return source


class StreamIngestionJob(IngestionJob):
    """A running stream-to-online ingestion: it runs until :meth:`stop` (or a failure).

    ``status`` is RUNNING while it consumes, SUCCEEDED after a clean :meth:`stop` (everything
    consumed was written and committed) and FAILED after an error (see ``error``; ``wait()``
    raises it).

    Attributes:
        topic: the topic consumed.
        group_id: the consumer group.
        records_consumed: records read from the topic (good and bad).
        records_written: records written to the online store (``rows_written`` counts the
            entity keys that changed: keys whose stored values were newer are skipped).
        records_dead_lettered: records sent to the dead-letter topic.
        dead_letters_by_reason: the same, per :class:`~provender.ingestion.rows.DeadLetterReason`.
        batches: micro-batches written.
        commits: offset commits.
        lag: per partition, records not consumed yet (updated every second).
    """

    def __init__(self, *, table: str, topic: str, group_id: str) -> None:
        super().__init__(table=table, description=f"stream ingestion of {table} from {topic!r} (group {group_id!r})")
        self.topic = topic
        self.group_id = group_id
        self.records_consumed = 0
        self.records_written = 0
        self.records_dead_lettered = 0
        self.dead_letters_by_reason: dict[str, int] = {}
        self.batches = 0
        self.commits = 0
        self.lag: dict[int, int] = {}
        self._freshness: deque[tuple[float, np.ndarray[Any, Any]]] = deque()

    def stop(self, timeout_seconds: float | None = 60.0) -> StreamIngestionJob:
        """Stop consuming, write and commit what was read, leave the group; wait for it.

        Returns:
            The job (its ``status`` is SUCCEEDED, or FAILED if the last write failed).

        Raises:
            TimeoutError: the job is still stopping after ``timeout_seconds``.
        """
        self.cancel()
        if not self._done.wait(timeout_seconds):
            raise TimeoutError(f"job {self.id} ({self.description}) still stopping after {timeout_seconds} s")
        return self

    def wait_done(self, timeout_seconds: float | None = None) -> bool:
        """Wait up to ``timeout_seconds`` for the job to end; return whether it has (never raises)."""
        return self._done.wait(timeout_seconds)

    def wait_until(self, condition: Callable[[StreamIngestionJob], bool], timeout_seconds: float) -> bool:
        """Poll ``condition(job)`` until it holds (True), the job ends, or the time is up (False)."""
        deadline = time.monotonic() + timeout_seconds
        while not condition(self):
            if self.is_done or time.monotonic() > deadline:
                return condition(self)
            self._done.wait(0.02)
        return True

    def freshness_seconds(self, quantiles: Sequence[float] = (0.5, 0.99)) -> tuple[float, ...] | None:
        """Quantiles of write time minus event time over the records written in the last 10 s.

        Returns:
            One value in seconds per quantile, or None when nothing was written recently.
        """
        window = list(self._freshness)
        horizon = time.monotonic() - FRESHNESS_WINDOW_SECONDS
        arrays = [values for at, values in window if at >= horizon]
        if not arrays:
            return None
        return tuple(float(q) for q in np.quantile(np.concatenate(arrays), quantiles))

    def pause(self, seconds: float) -> None:
        """Sleep up to ``seconds``, waking early when the job is asked to stop."""
        self._cancel.wait(seconds)

    def __repr__(self) -> str:
        return (
            f"StreamIngestionJob(id={self.id!r}, table={self.table!r}, topic={self.topic!r}, status={self.status}, "
            f"records_written={self.records_written}, records_dead_lettered={self.records_dead_lettered})"
        )

    def _record_freshness(self, seconds: np.ndarray[Any, Any]) -> None:
        now = time.monotonic()
        self._freshness.append((now, seconds))
        while self._freshness and self._freshness[0][0] < now - FRESHNESS_WINDOW_SECONDS:
            self._freshness.popleft()


def start_stream_job(spec: StreamJobSpec, write: Callable[[pa.Table], int]) -> StreamIngestionJob:
    """Validate ``spec`` and start its job in a background thread.

    Args:
        spec: the table, group and options.
        write: stores normalized rows under the event-time guard (``OnlineStore.write`` of the
            table); returns the number of keys written.

    Raises:
        DefinitionError: the table has no stream source, or its Avro schema is invalid.
        DataError: the Avro schema lacks a field of the table, or its type does not fit.
        MissingExtraError: the ``kafka`` extra is not installed.
    """
    source = spec.source
    try:
        from provender.ingestion import formats
        from provender.ingestion.kafka import KafkaStream
    except ImportError as exc:
        raise MissingExtraError("stream ingestion", extra="kafka", missing=exc.name or "confluent-kafka") from None
    decoder = formats.decoder_for(source.message_format, schema_registry_url=spec.options.schema_registry_url)
    trusted: frozenset[str] = frozenset()
    if isinstance(decoder, formats.AvroDecoder):
        columns = column_specs(spec.table, source, spec.entity_types)
        trusted = check_avro_schema(decoder.schema, columns, table=spec.table.name)
    builder = RowBuilder(spec.table, source, spec.entity_types, decoder.timestamp_units, trusted_fields=trusted)
    offline_log = None
    if spec.offline_log is not None:
        offline_log = OfflineLog(
            spec.offline_log,
            max_rows=spec.options.offline_log_max_rows,
            max_seconds=spec.options.offline_log_max_seconds,
        )
    stream = KafkaStream(
        source,
        group_id=spec.group_id,
        instance_id=spec.instance_id,
        table=spec.table.name,
        options=spec.options,
    )
    job = StreamIngestionJob(table=spec.table.name, topic=source.topic, group_id=spec.group_id)
    loop = StreamLoop(
        job=job,
        source=stream,
        decoder=decoder,
        builder=builder,
        write=write,
        options=spec.options,
        offline_log=offline_log,
    )
    log.info("starting %s", job.description)
    job.start(lambda _: loop.run())
    return job


class StreamLoop:
    """The consume -> decode -> validate -> write -> commit loop of one job (see the module doc)."""

    def __init__(
        self,
        *,
        job: StreamIngestionJob,
        source: StreamSource,
        decoder: MessageDecoder,
        builder: RowBuilder,
        write: Callable[[pa.Table], int],
        options: StreamSection,
        offline_log: OfflineLog | None = None,
    ) -> None:
        self._job, self._source, self._decoder, self._builder = job, source, decoder, builder
        self._write, self._log = write, offline_log
        self._batch_rows = options.batch_rows
        self._linger = options.linger_ms / 1000
        self._metrics: StreamMetrics | None = stream_metrics()
        self._pending = Polled([], [], [], [])
        self._first_at: float | None = None
        self._uncommitted: dict[int, int] = {}
        self._next_tick = 0.0

    def run(self) -> None:
        """Consume until the job is stopped; then write and commit what was read."""
        self._source.subscribe(self._on_revoke)
        try:
            while not self._job.is_cancelled:
                self._step()
            self._flush_all()
        finally:
            self._source.close()

    def _step(self) -> None:
        pending = len(self._pending.values)
        if not pending:  # wait for the first record; the batch's linger starts with it
            polled = self._source.poll(1, IDLE_POLL_SECONDS)
        else:
            assert self._first_at is not None
            # Short polls even with a long linger, so that a stop is noticed promptly.
            wait = min(IDLE_POLL_SECONDS, max(0.0, self._first_at + self._linger - time.monotonic()))
            polled = self._source.poll(self._batch_rows - pending, wait)
        if polled.values:
            if self._first_at is None:
                self._first_at = time.monotonic()
            pending_batch = self._pending
            pending_batch.values.extend(polled.values)
            pending_batch.partitions.extend(polled.partitions)
            pending_batch.offsets.extend(polled.offsets)
            pending_batch.keys.extend(polled.keys)
        pending = len(self._pending.values)
        if pending and (pending >= self._batch_rows or time.monotonic() >= (self._first_at or 0.0) + self._linger):
            self._write_batch()
        if self._log is not None and self._log.due():
            self._retrying(self._log.flush)
            self._commit()
        now = time.monotonic()
        if now >= self._next_tick:
            self._next_tick = now + TICK_SECONDS
            self._tick()

    def _flush_all(self) -> None:
        if self._pending.values:
            self._write_batch()
        if self._log is not None:
            self._retrying(self._log.flush)
        self._commit()
        self._tick()

    def _on_revoke(self, partitions: Sequence[int], lost: bool) -> None:
        if lost:  # another member owns them already: drop what we hold, the owner re-reads it
            gone = set(partitions)
            held = self._pending
            keep = [i for i, p in enumerate(held.partitions) if p not in gone]
            self._pending = Polled(
                [held.values[i] for i in keep],
                [held.partitions[i] for i in keep],
                [held.offsets[i] for i in keep],
                [held.keys[i] for i in keep],
            )
            self._first_at = self._first_at if keep else None
            for partition in gone:
                self._uncommitted.pop(partition, None)
        else:
            self._flush_all()
        for partition in partitions:
            self._job.lag.pop(partition, None)
        log.info("partitions revoked table=%s partitions=%s lost=%s", self._job.table, list(partitions), lost)

    def _write_batch(self) -> None:
        batch, self._pending, self._first_at = self._pending, Polled([], [], [], []), None
        decoded = self._retrying(lambda: self._decoder.decode(batch.values))
        built = self._builder.build(decoded.records)
        letters = [_letter(batch, i, DeadLetterReason.UNDECODABLE, error) for i, error in decoded.errors]
        for j, error in built.errors.items():
            letters.append(_letter(batch, decoded.positions[j], error.reason, error.message))
        rows = built.rows
        if rows.num_rows:
            positions = [p for j, p in enumerate(decoded.positions) if j not in built.errors]
            rows = self._store(rows, positions, batch, letters)
        if self._log is not None:
            self._log.append(rows)
        if letters:
            self._retrying(lambda: self._source.dead_letter(letters))
        for partition, offset in zip(batch.partitions, batch.offsets, strict=True):
            self._uncommitted[partition] = offset + 1
        self._count(len(batch.values), rows, letters)
        if self._log is None:
            self._commit()

    def _store(self, rows: pa.Table, positions: list[int], batch: Polled, letters: list[DeadLetter]) -> pa.Table:
        """Write ``rows``; if the store refuses the batch, write row by row and dead-letter the refused."""
        try:
            self._job.rows_written += self._retrying(lambda: self._write(rows))
            return rows
        except DataError:
            log.warning("store refused a batch table=%s rows=%d; retrying row by row", self._job.table, rows.num_rows)
        keep = np.ones(rows.num_rows, dtype=bool)
        for k in range(rows.num_rows):
            row = rows.slice(k, 1)
            try:
                self._job.rows_written += self._retrying(lambda row=row: self._write(row))  # type: ignore[misc]
            except DataError as exc:
                keep[k] = False
                letters.append(_letter(batch, positions[k], DeadLetterReason.REJECTED_BY_STORE, str(exc)))
        return rows.filter(pa.array(keep))

    def _retrying(self, action: Callable[[], T]) -> T:
        """Run ``action``, retrying retryable BackendErrors with backoff until the job is stopped."""
        delay = _RETRY_FIRST_SECONDS
        while True:
            try:
                return action()
            except BackendError as exc:
                if not exc.retryable or self._job.is_cancelled:
                    raise
                log.warning("stream ingestion retrying table=%s in=%.1fs error=%s", self._job.table, delay, exc)
                self._job.pause(delay)
                delay = min(delay * 2, _RETRY_MAX_SECONDS)

    def _commit(self) -> None:
        if not self._uncommitted:
            return
        offsets = dict(self._uncommitted)
        try:
            self._source.commit(offsets)
        except BackendError as exc:
            if not exc.retryable:
                raise
            log.warning("commit failed, will retry with the next batch table=%s error=%s", self._job.table, exc)
            return
        for partition, offset in offsets.items():
            if self._uncommitted.get(partition) == offset:
                del self._uncommitted[partition]
        self._job.commits += 1

    def _count(self, consumed: int, rows: pa.Table, letters: list[DeadLetter]) -> None:
        job, metrics, table = self._job, self._metrics, self._job.table
        job.records_consumed += consumed
        job.rows_read += consumed
        job.records_written += rows.num_rows
        job.records_dead_lettered += len(letters)
        job.batches += 1
        for letter in letters:
            reason = str(letter.reason)
            job.dead_letters_by_reason[reason] = job.dead_letters_by_reason.get(reason, 0) + 1
        freshness = None
        if rows.num_rows:
            event_us = pc.cast(rows.column(EVENT_TIMESTAMP), pa.int64()).to_numpy()
            freshness = (time.time_ns() // 1000 - event_us) / 1e6
            job._record_freshness(freshness)
        if metrics is not None:
            metrics.consumed.labels(table).inc(consumed)
            metrics.written.labels(table).inc(rows.num_rows)
            metrics.batches.labels(table).inc()
            for letter in letters:
                metrics.dead_letters.labels(table, letter.reason).inc()
            if freshness is not None:
                metrics.observe_freshness(table, freshness)

    def _tick(self) -> None:
        lag = self._source.lag()
        self._job.lag = lag
        if self._metrics is not None:
            for partition, records in lag.items():
                self._metrics.lag.labels(self._job.table, self._source.topic, str(partition)).set(records)


def _letter(batch: Polled, index: int, reason: DeadLetterReason, error: str) -> DeadLetter:
    return DeadLetter(
        batch.partitions[index], batch.offsets[index], batch.keys[index], batch.values[index], reason, error
    )
