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
loop (``stream_loop.py``: a consumer thread that batches, decodes and validates, and a writer
thread that writes and commits, so that the two overlap) is tested without one.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np
import pyarrow as pa

from provender.definitions import FeatureTable, KafkaSource, ValueType
from provender.errors import DataError, DefinitionError, MissingExtraError
from provender.ingestion.batch import IngestionJob
from provender.ingestion.offline_log import OfflineLog
from provender.ingestion.rows import DeadLetterReason, RowBuilder, check_avro_schema, column_specs
from provender.online.tile_writer import TileWriter

if TYPE_CHECKING:
    from provender.config import StreamSection
    from provender.online.tiles import TileStore

log = logging.getLogger(__name__)

FRESHNESS_WINDOW_SECONDS = 10.0


RecordHeaders = list[tuple[str, str | bytes | None]] | None
"""A record's own headers (kept on its dead-letter copy)."""


class Polled(NamedTuple):
    """Messages from one poll, column by column (aligned lists)."""

    values: list[bytes | None]
    partitions: list[int]
    offsets: list[int]
    keys: list[bytes | None]
    headers: list[RecordHeaders]


class DeadLetter(NamedTuple):
    """A record the job could not store, and why."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: DeadLetterReason
    error: str
    headers: RecordHeaders = None


RevokeHandler = Callable[[Sequence[int], bool], None]
"""Called with the partitions about to be taken away, and whether they are already lost."""


class StreamSource(Protocol):
    """A partitioned topic read as a member of a consumer group, with a dead-letter destination.

    ``subscribe``, ``poll``, ``commit``, ``lag`` and ``close`` are called from one thread (a
    Kafka consumer belongs to one thread); ``dead_letter`` from another (the job's writer).
    """

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

    def commit(self, offsets: Mapping[int, int], *, wait: bool = True) -> None:
        """Commit, per partition, the offset of the next record to read.

        With ``wait`` the commit is done on return; without, it is sent in the background (a
        failed background commit only means that more records are re-read after a restart).
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
        records_too_late: events of a table with windowed aggregations later than the allowed
            lateness (``stream.allowed_lateness_seconds``): written to the offline log but not
            added to the online tiles.
        records_replayed: records already added to the tiles (re-read after a restart), skipped.
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
        self.records_too_late = 0
        self.records_replayed = 0
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

    def record_freshness(self, seconds: np.ndarray[Any, Any]) -> None:
        """Remember the freshness (seconds) of a written batch's records, for the last 10 s."""
        now = time.monotonic()
        self._freshness.append((now, seconds))
        while self._freshness and self._freshness[0][0] < now - FRESHNESS_WINDOW_SECONDS:
            self._freshness.popleft()


def start_stream_job(
    spec: StreamJobSpec, write: Callable[[pa.Table], int], *, tiles: TileStore | None = None
) -> StreamIngestionJob:
    """Validate ``spec`` and start its job in a background thread.

    Args:
        spec: the table, group and options.
        write: stores normalized rows under the event-time guard (``OnlineStore.write`` of the
            table); returns the number of keys written.
        tiles: where a table with windowed aggregations keeps its tiles (the online store).

    Raises:
        DefinitionError: the table has no stream source, or its Avro schema is invalid.
        DataError: the Avro schema lacks a field of the table, or its type does not fit; or the
            table has windowed aggregations and no ``tiles`` store was given.
        MissingExtraError: the ``kafka`` extra is not installed.
    """
    source = spec.source
    tile_writer = None
    if spec.table.aggregations:
        if tiles is None:
            raise DataError(
                f"Feature table {spec.table.name!r} has windowed aggregations: stream ingestion needs the "
                "online store's tiles to keep them fresh."
            )
        lateness = timedelta(seconds=spec.options.allowed_lateness_seconds)
        tile_writer = TileWriter(tiles, spec.table, allowed_lateness=lateness)
    try:
        from provender.ingestion import formats
        from provender.ingestion.kafka import KafkaStream
        from provender.ingestion.stream_loop import StreamLoop
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
        tiles=tile_writer,
    )
    log.info("starting %s", job.description)
    job.start(lambda _: loop.run())
    return job
