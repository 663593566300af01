"""The loop of a stream job: a consumer thread and a writer, committing after the write.

The **consumer** (the job's thread) polls the source, gathers micro-batches (``batch_rows``
records, or ``linger_ms`` after a batch's first record), decodes and validates them into
normalized rows (and folds them for the table's tiles) and hands each to the **writer**
(:class:`BatchWriter`, two threads of its own: one writes the rows to the online store, the
other then the tiles, the offline log and the dead letters). The consumer then commits the
offsets of what the writer has finished (a Kafka consumer is used from one thread only). While
the writer waits for the store, the consumer prepares the next batch; at most one batch waits
at each hand-over, so memory stays bounded.

Offsets are committed only after everything before them is written (with an offline log,
after the rows are in a Parquet file). On a rebalance the consumer hands over what it holds,
waits for the writer to finish it and commits before the partitions are given up. A writer
failure stops the consumer: nothing after it is committed, and the job fails.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from provender.definitions.request import EVENT_TIMESTAMP
from provender.errors import BackendError, DataError
from provender.ingestion.rows import DeadLetterReason, RowBuilder
from provender.ingestion.stream import DeadLetter, Polled, StreamIngestionJob, StreamSource
from provender.ingestion.stream_metrics import stream_metrics
from provender.ingestion.validation import violated_by_row

if TYPE_CHECKING:
    from provender.config import StreamSection
    from provender.ingestion.formats import MessageDecoder
    from provender.ingestion.offline_log import OfflineLog
    from provender.online.tile_writer import FoldedBatch, TileWriter

log = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 0.1
TICK_SECONDS = 1.0
_RETRY_FIRST_SECONDS = 0.2
_RETRY_MAX_SECONDS = 5.0

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A decoded and validated micro-batch, ready to write.

    Attributes:
        batch: the messages as polled.
        rows: normalized rows of the good records.
        positions: for each row, the index of its message in ``batch``.
        letters: the bad records.
        offsets: per partition, the offset after the batch's last message.
        folded: the rows folded for the table's tiles (None: the table has none), made on the
            consumer thread so that the writer thread only waits for the store.
    """

    batch: Polled
    rows: pa.Table
    positions: list[int]
    letters: list[DeadLetter]
    offsets: dict[int, int]
    folded: FoldedBatch | None = None


@dataclass(frozen=True, slots=True)
class _Sync:
    """Ask the writer to flush the offline log and commit everything written (dropping ``lost``)."""

    lost: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class _Written:
    """A batch whose rows are in the online store: ``rows`` (each one's message at ``positions``)."""

    prepared: Prepared
    rows: pa.Table
    positions: list[int]


_STOP = object()


def retrying(job: StreamIngestionJob, action: Callable[[], T]) -> T:
    """Run ``action``, retrying retryable BackendErrors with backoff until the job is stopped."""
    delay = _RETRY_FIRST_SECONDS
    while True:
        try:
            return action()
        except BackendError as exc:
            if not exc.retryable or job.is_cancelled:
                raise
            log.warning("stream ingestion retrying table=%s in=%.1fs error=%s", job.table, delay, exc)
            job.pause(delay)
            delay = min(delay * 2, _RETRY_MAX_SECONDS)


class StreamLoop:
    """The consumer side of a job: poll, batch, decode, validate, hand over (see the module doc)."""

    def __init__(  # noqa: PLR0913 - the loop's collaborators, all keyword-only
        self,
        *,
        job: StreamIngestionJob,
        source: StreamSource,
        decoder: MessageDecoder,
        builder: RowBuilder,
        write: Callable[[pa.Table], int],
        options: StreamSection,
        offline_log: OfflineLog | None = None,
        tiles: TileWriter | None = None,
    ) -> None:
        self._job, self._source, self._decoder, self._builder = job, source, decoder, builder
        self._checked = any(e.per_row for f in builder.table.features for e in f.expect)
        self._batch_rows = options.batch_rows
        self._linger = options.linger_ms / 1000
        self._commit_interval = options.commit_interval_seconds
        self._tiles = tiles
        self._writer = BatchWriter(job=job, source=source, write=write, offline_log=offline_log, tiles=tiles)
        self._pending = Polled([], [], [], [], [])
        self._first_at: float | None = None
        self._next_tick = 0.0
        self._next_commit = 0.0
        self._last_sent: dict[int, int] = {}

    def run(self) -> None:
        """Consume until the job is stopped; then write and commit what was read."""
        self._writer.start()
        clean = False
        try:
            self._source.subscribe(self._on_revoke)
            while not self._job.is_cancelled:
                self._step()
            self._hand_over()
            self._writer.sync()
            self._commit()
            clean = True
        finally:
            if not clean:
                self._job.cancel()  # ends the writer's retries: nothing more is written or committed
            self._writer.close()
            self._source.close()

    def _step(self) -> None:
        self._writer.raise_failure()
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
            held = self._pending
            held.values.extend(polled.values)
            held.partitions.extend(polled.partitions)
            held.offsets.extend(polled.offsets)
            held.keys.extend(polled.keys)
            held.headers.extend(polled.headers)
        pending = len(self._pending.values)
        if pending and (pending >= self._batch_rows or time.monotonic() >= (self._first_at or 0.0) + self._linger):
            self._hand_over()
        now = time.monotonic()
        if now >= self._next_commit:
            self._next_commit = now + self._commit_interval
            self._commit(wait=False)
        if now >= self._next_tick:
            self._next_tick = now + TICK_SECONDS
            self._tick()

    def _hand_over(self) -> None:
        """Prepare the pending batch (if any) and queue it for the writer."""
        if not self._pending.values:
            return
        batch, self._pending, self._first_at = self._pending, Polled([], [], [], [], []), None
        self._writer.submit(self._prepare(batch))

    def _prepare(self, batch: Polled) -> Prepared:
        decoded = retrying(self._job, lambda: self._decoder.decode(batch.values))
        built = self._builder.build(decoded.records)
        letters = [_letter(batch, i, DeadLetterReason.UNDECODABLE, error) for i, error in decoded.errors]
        letters.extend(_letter(batch, decoded.positions[j], e.reason, e.message) for j, e in built.errors.items())
        positions = decoded.positions
        if built.errors:
            positions = [p for j, p in enumerate(positions) if j not in built.errors]
        rows = built.rows
        violated = violated_by_row(self._builder.table, rows) if self._checked else {}
        if violated:  # records violating an expectation go to the dead letters, the expectation named
            letters.extend(
                _letter(batch, positions[i], DeadLetterReason.VIOLATED_EXPECTATION, f"expectation {what}")
                for i, what in sorted(violated.items())
            )
            keep = [i for i in range(rows.num_rows) if i not in violated]
            rows, positions = rows.take(keep), [positions[i] for i in keep]
        offsets: dict[int, int] = {}
        for partition, offset in zip(batch.partitions, batch.offsets, strict=True):
            offsets[partition] = offset + 1
        folded = None
        if self._tiles is not None and rows.num_rows:
            folded = self._tiles.fold(rows, *_stream_positions(batch, positions))
        return Prepared(batch, rows, positions, letters, offsets, folded)

    def _on_revoke(self, partitions: Sequence[int], lost: bool) -> None:
        """Before partitions go: write and commit what we hold (or, if already lost, drop it)."""
        if lost:
            gone = frozenset(partitions)
            held = self._pending
            keep = [i for i, p in enumerate(held.partitions) if p not in gone]
            self._pending = Polled(
                [held.values[i] for i in keep],
                [held.partitions[i] for i in keep],
                [held.offsets[i] for i in keep],
                [held.keys[i] for i in keep],
                [held.headers[i] for i in keep],
            )
            self._first_at = self._first_at if keep else None
            self._writer.sync(lost=gone)
        else:
            self._hand_over()
            self._writer.sync()
            self._commit()
        for partition in partitions:
            self._job.lag.pop(partition, None)
        log.info("partitions revoked table=%s partitions=%s lost=%s", self._job.table, list(partitions), lost)

    def _commit(self, *, wait: bool = True) -> None:
        """Commit the offsets of what the writer has written (in this thread: the consumer's own).

        While consuming, commits go in the background (``wait=False``) so that polling never
        waits for the broker, and the offsets stay pending until a waited-for commit; before
        partitions are given up, and at a stop, the commit is waited for.
        """
        offsets = self._writer.committable()
        if not offsets or (not wait and offsets == self._last_sent):
            return
        try:
            self._source.commit(offsets, wait=wait)
        except BackendError as exc:
            if not exc.retryable:
                raise
            log.warning("commit failed, will retry table=%s error=%s", self._job.table, exc)
            return
        self._last_sent = offsets
        if wait:
            self._writer.committed(offsets)
        self._job.commits += 1

    def _tick(self) -> None:
        lag = self._source.lag()
        self._job.lag = lag
        metrics = stream_metrics()
        if metrics is not None:
            for partition, records in lag.items():
                metrics.lag.labels(self._job.table, self._source.topic, str(partition)).set(records)


def _stream_positions(batch: Polled, positions: list[int]) -> tuple[list[int], list[int]]:
    """The stream partition and offset of each row (``positions``: each row's message in ``batch``)."""
    partitions, offsets = batch.partitions, batch.offsets
    return [partitions[p] for p in positions], [offsets[p] for p in positions]


class BatchWriter:
    """The writer side of a job: write prepared batches in order, in two threads of their own.

    The **row** thread writes each batch's rows to the online store; the **finish** thread then
    adds them to the table's tiles (if it has aggregations), appends them to the offline log,
    publishes the dead letters and marks the batch's offsets written. Each thread takes the
    batches in order, so the row writes of a batch overlap the tile writes of the one before
    (the store works while the other thread prepares its next call). A batch's offsets become
    committable only once both threads are done with it, so a crash in between replays it: the
    row write is idempotent under the event-time guard, and the tiles skip replayed offsets.

    It never touches the consumer (a Kafka consumer belongs to one thread): it reports the
    offsets whose records are written (:meth:`committable`), and the consumer commits them.
    """

    def __init__(
        self,
        *,
        job: StreamIngestionJob,
        source: StreamSource,
        write: Callable[[pa.Table], int],
        offline_log: OfflineLog | None,
        tiles: TileWriter | None = None,
    ) -> None:
        self._job, self._source, self._write, self._log = job, source, write, offline_log
        self._tiles = tiles
        self._queue: queue.Queue[Prepared | _Sync | object] = queue.Queue(maxsize=1)
        self._written: queue.Queue[_Written | _Sync | object] = queue.Queue(maxsize=2)
        self._lock = threading.Lock()
        self._unlogged: dict[int, int] = {}  # written online, waiting for the offline log's next file
        self._committable: dict[int, int] = {}
        self._failure: BaseException | None = None
        self._closed = False
        self._threads = [
            threading.Thread(target=self._run_rows, name=f"provender-write-{job.id}", daemon=True),
            threading.Thread(target=self._run_finish, name=f"provender-finish-{job.id}", daemon=True),
        ]

    def start(self) -> None:
        """Start the writer threads."""
        for thread in self._threads:
            thread.start()

    def submit(self, prepared: Prepared) -> None:
        """Queue a batch (waits while another batch is already waiting)."""
        self.raise_failure()
        self._queue.put(prepared)

    def sync(self, lost: frozenset[int] = frozenset()) -> None:
        """Wait until every queued batch is written (and the offline log flushed); drop ``lost`` partitions.

        A no-op once the writer is closed (closing the consumer revokes its partitions last).
        """
        if self._closed:
            return
        self._queue.put(_Sync(lost))
        self._queue.join()  # the row thread has passed everything on ...
        self._written.join()  # ... and the finish thread is done with it
        self.raise_failure()

    def committable(self) -> dict[int, int]:
        """Per partition, the offset after the last record written (everything before it is stored)."""
        with self._lock:
            return dict(self._committable)

    def committed(self, offsets: dict[int, int]) -> None:
        """Forget offsets that were committed (unless a later batch moved them on meanwhile)."""
        with self._lock:
            for partition, offset in offsets.items():
                if self._committable.get(partition) == offset:
                    del self._committable[partition]

    def close(self) -> None:
        """Stop the threads (after the batches they are writing, if any)."""
        self._closed = True
        self._queue.put(_STOP)
        for thread in self._threads:
            thread.join()

    def raise_failure(self) -> None:
        """Raise the error that stopped the writer, if any."""
        if self._failure is not None:
            raise self._failure

    def _run_rows(self) -> None:
        """The row thread: write each batch's rows, pass everything on to the finish thread in order."""
        while True:
            try:
                item = self._queue.get(timeout=IDLE_POLL_SECONDS)
            except queue.Empty:
                item = None
            try:
                if isinstance(item, Prepared):
                    if self._failure is None:
                        self._written.put(self._store(item))
                elif item is not None:
                    self._written.put(item)  # a sync or the stop, after the batches before it
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread, which raises it
                self._failure = exc
            finally:
                if item is not None:
                    self._queue.task_done()
            if item is _STOP:
                return

    def _run_finish(self) -> None:
        """The finish thread: tiles, offline log, dead letters and offsets of each written batch."""
        while True:
            try:
                item = self._written.get(timeout=IDLE_POLL_SECONDS)
            except queue.Empty:
                item = None
            try:
                if self._failure is None:
                    self._handle(item)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread, which raises it
                self._failure = exc
            finally:
                if item is not None:
                    self._written.task_done()
            if item is _STOP:
                return

    def _handle(self, item: _Written | _Sync | object | None) -> None:
        if isinstance(item, _Written):
            self._finish(item)
        elif isinstance(item, _Sync):
            with self._lock:
                for partition in item.lost:
                    self._unlogged.pop(partition, None)
                    self._committable.pop(partition, None)
            self._flush_log()
        elif item is None and self._log is not None and self._log.due():
            self._flush_log()

    def _flush_log(self) -> None:
        if self._log is not None:
            retrying(self._job, self._log.flush)
        with self._lock:
            self._committable.update(self._unlogged)
        self._unlogged.clear()

    def _finish(self, written: _Written) -> None:
        prepared, rows = written.prepared, written.rows
        if self._tiles is not None and rows.num_rows:
            folded = prepared.folded
            if folded is None or written.positions is not prepared.positions:  # the store refused some rows
                folded = self._tiles.fold(rows, *_stream_positions(prepared.batch, written.positions))
            self._aggregate(self._tiles, folded)
        if self._log is not None:
            self._log.append(rows)
        letters = prepared.letters
        if letters:
            retrying(self._job, lambda: self._source.dead_letter(letters))
        self._count(len(prepared.batch.values), rows, letters)
        if self._log is None:
            with self._lock:
                self._committable.update(prepared.offsets)
        else:
            self._unlogged.update(prepared.offsets)

    def _aggregate(self, tiles: TileWriter, folded: FoldedBatch) -> None:
        """Add the written rows to their keys' tiles; count (and report) the events too late to count."""
        job = self._job
        report = retrying(job, lambda: tiles.write(folded))
        job.records_too_late += report.too_late
        job.records_replayed += report.replayed
        if report.too_late:
            log.warning(
                "events later than the allowed lateness not aggregated online table=%s count=%d (total %d); "
                "they are in the offline log",
                job.table,
                report.too_late,
                job.records_too_late,
            )
            metrics = stream_metrics()
            if metrics is not None:
                metrics.too_late.labels(job.table).inc(report.too_late)

    def _store(self, prepared: Prepared) -> _Written:
        """Write the rows; if the store refuses the batch, write row by row and dead-letter the refused."""
        rows = prepared.rows
        if not rows.num_rows:
            return _Written(prepared, rows, prepared.positions)
        try:
            self._job.rows_written += retrying(self._job, lambda: self._write(rows))
            return _Written(prepared, rows, prepared.positions)
        except DataError:
            log.warning("store refused a batch table=%s rows=%d; retrying row by row", self._job.table, rows.num_rows)
        keep = np.ones(rows.num_rows, dtype=bool)
        for k in range(rows.num_rows):
            row = rows.slice(k, 1)
            try:
                self._job.rows_written += retrying(self._job, lambda row=row: self._write(row))  # type: ignore[misc]
            except DataError as exc:
                keep[k] = False
                where = prepared.positions[k]
                prepared.letters.append(_letter(prepared.batch, where, DeadLetterReason.REJECTED_BY_STORE, str(exc)))
        kept = [p for p, kept in zip(prepared.positions, keep, strict=True) if kept]
        return _Written(prepared, rows.filter(pa.array(keep)), kept)

    def _count(self, consumed: int, rows: pa.Table, letters: list[DeadLetter]) -> None:
        job, table = self._job, self._job.table
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
            job.record_freshness(freshness)
        metrics = stream_metrics()
        if metrics is not None:
            metrics.consumed.labels(table).inc(consumed)
            metrics.written.labels(table).inc(rows.num_rows)
            metrics.batches.labels(table).inc()
            for letter in letters:
                metrics.dead_letters.labels(table, str(letter.reason)).inc()
            if freshness is not None:
                metrics.observe_freshness(table, freshness)


def _letter(batch: Polled, index: int, reason: DeadLetterReason, error: str) -> DeadLetter:
    return DeadLetter(
        batch.partitions[index],
        batch.offsets[index],
        batch.keys[index],
        batch.values[index],
        reason,
        error,
        batch.headers[index],
    )
