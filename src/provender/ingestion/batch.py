"""Offline-to-online ingestion: the latest row per entity key in ``[start, end)`` -> online store.

The offline engine computes the rows with the point-in-time rule of ``offline/plan.py`` (the same
rule and code as historical retrieval) and streams them as Arrow batches; a reader thread keeps
the next batches coming while this thread writes the current one (pipelining, in
:func:`provender.offline.batches.write_batches`), so memory is bounded by a few batches, never by
the source. The online store's event-time guard makes a job
safe to re-run, and each entity key is written atomically, so a job that fails part-way leaves
no half-written key: re-running it completes it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from provender.definitions.request import SOURCE_ROWS
from provender.errors import JobCancelledError
from provender.offline.batches import write_batches
from provender.offline.engine import JobStatus
from provender.online.keys import arrow_keys
from provender.online.tile_writer import TileWriter

if TYPE_CHECKING:
    from provender.config import StreamSection
    from provender.definitions import FeatureTable
    from provender.ingestion.validation import ValidationReport
    from provender.offline.engine import StoreFactory
    from provender.offline.plan import LatestPlan
    from provender.offline.statistics import TableStatistics
    from provender.online.tiles import TileStore

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "IngestionJob",
    "JobCancelledError",
    "JobStatus",
    "TileRebuild",
    "counting_source_rows",
    "rebuild_tiles",
    "write_batches",
]

log = logging.getLogger(__name__)

DEFAULT_BATCH_ROWS = 100_000


class IngestionJob:
    """A background ingestion job.

    Attributes:
        id: unique job id.
        table: the feature table's name.
        status: a :class:`JobStatus`.
        rows_written: entity rows written to the online store so far.
        source_rows: the source rows in the window that the written rows were chosen from, so
            far; None when the engine does not count them (a distributed engine).
        error: the exception that failed the job, or None.
        validation: the report of the table's expectations (None if it declares none).
        statistics: the statistics of the rows written, once the job succeeded.
    """

    def __init__(self, *, table: str, description: str, job_id: str | None = None) -> None:
        self.id = job_id or uuid.uuid4().hex[:12]
        self.table = table
        self.description = description
        self.status = JobStatus.PENDING
        self.rows_written = 0
        self.rows_read = 0
        self.source_rows: int | None = None
        self.validation: ValidationReport | None = None
        self.statistics: TableStatistics | None = None
        self.error: BaseException | None = None
        self.started_at: datetime | None = None
        self.finished_at: datetime | None = None
        self._done = threading.Event()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_start: Callable[[IngestionJob], None] | None = None
        self._on_finish: Callable[[IngestionJob], None] | None = None

    def start(
        self,
        run: Callable[[IngestionJob], None],
        *,
        on_start: Callable[[IngestionJob], None] | None = None,
        on_finish: Callable[[IngestionJob], None] | None = None,
    ) -> IngestionJob:
        """Run ``run(self)`` in a background thread and return at once.

        Args:
            run: the job's work.
            on_start: called in the thread before ``run`` (if it raises, the job fails).
            on_finish: called once the job has ended, before :meth:`wait` returns (e.g. to
                record the outcome); its errors are logged, never raised.
        """
        self._on_start, self._on_finish = on_start, on_finish
        self._thread = threading.Thread(target=self._main, args=(run,), name=f"provender-job-{self.id}", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout_seconds: float | None = None) -> IngestionJob:
        """Block until the job ends; raise its error if it failed.

        Raises:
            TimeoutError: the job is still running after ``timeout_seconds``.
            ProvenderError: the job's own error (e.g. BackendError when the store failed).
        """
        if not self._done.wait(timeout_seconds):
            raise TimeoutError(f"job {self.id} ({self.description}) still running after {timeout_seconds} s")
        # The job has ended; let its thread finish too, so that the engine's native objects it
        # held are released now, not by a daemon thread racing the interpreter's exit (abort).
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        if self.error is not None:
            raise self.error
        return self

    def cancel(self) -> None:
        """Ask the job to stop after the batch it is writing."""
        self._cancel.set()

    @property
    def is_cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancel.is_set()

    @property
    def is_done(self) -> bool:
        """Whether the job has ended (in any status)."""
        return self._done.is_set()

    def __repr__(self) -> str:
        return (
            f"IngestionJob(id={self.id!r}, table={self.table!r}, status={self.status}, "
            f"rows_written={self.rows_written})"
        )

    def _main(self, run: Callable[[IngestionJob], None]) -> None:
        self.status = JobStatus.RUNNING
        self.started_at = datetime.now(UTC)
        began = time.perf_counter()
        try:
            if self._on_start is not None:
                self._on_start(self)
            run(self)
        except JobCancelledError as exc:
            self.status, self.error = JobStatus.CANCELLED, exc
        except BaseException as exc:  # noqa: BLE001 - recorded on the job and re-raised by wait()
            self.status, self.error = JobStatus.FAILED, exc
            log.warning("ingestion failed job=%s table=%s error=%s", self.id, self.table, exc)
        else:
            self.status = JobStatus.SUCCEEDED
            log.info(
                "ingested job=%s table=%s rows=%d seconds=%.2f",
                self.id,
                self.table,
                self.rows_written,
                time.perf_counter() - began,
            )
        finally:
            self.finished_at = datetime.now(UTC)
            if self._on_finish is not None:
                try:
                    self._on_finish(self)
                except Exception as exc:  # noqa: BLE001 - a report failing must not hide the job's outcome
                    log.error("could not report the end of job=%s error=%s", self.id, exc)
            self._done.set()


def counting_source_rows(reader: pa.RecordBatchReader, job: IngestionJob) -> pa.RecordBatchReader:
    """Return ``reader`` without its ``SOURCE_ROWS`` column, adding the column's sum to ``job.source_rows``.

    A reader without the column (the engine does not count) is returned as it is.
    """
    names = reader.schema.names
    if SOURCE_ROWS not in names:
        return reader
    index = names.index(SOURCE_ROWS)
    schema = reader.schema.remove(index)
    job.source_rows = 0

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            job.source_rows = (job.source_rows or 0) + int(pc.sum(batch.column(index)).as_py() or 0)
            yield pa.RecordBatch.from_arrays(
                [column for n, column in enumerate(batch.columns) if n != index], schema=schema
            )

    return pa.RecordBatchReader.from_batches(schema, batches())


def rebuild_tiles(
    engine: object,
    plan: LatestPlan,
    store: TileStore,
    table: FeatureTable,
    stream: StreamSection,
    *,
    batch_rows: int,
) -> int:
    """Rebuild the tiles of a table with aggregations and a stream source as of ``plan.end``, here.

    So that a stream started (or going on) after the job serves values that include the batch
    source's history: every key with an event in ``(end - longest window - allowed lateness,
    end]`` gets its tiles rebuilt from those events (``TileWriter.rebuild``; events a stream
    already applied after ``end`` are kept). The engine streams the events (``read_events``:
    DuckDB from its query, Spark from the files its job staged), each key's contiguous; an engine
    without ``read_events`` (a third-party one) leaves the tiles as they are (logged). A
    distributed engine writing from its workers rebuilds there instead, with :class:`TileRebuild`.

    Returns:
        The number of keys whose tiles were rebuilt.
    """
    read_events = getattr(engine, "read_events", None)
    if read_events is None:
        log.warning(
            "the offline engine cannot read events: the tiles of table=%s are not rebuilt (a stream serves "
            "only the events it reads)",
            table.name,
        )
        return 0
    rebuild = TileRebuild.of(table, plan.end, stream, batch_rows)
    if rebuild is None:
        return 0
    return rebuild.into(store, read_events(plan, lower=rebuild.lower, batch_rows=batch_rows))


@dataclass(frozen=True, slots=True, kw_only=True)
class TileRebuild:
    """Rebuilds a table's tiles as of ``end`` from its batch source's events (``TileWriter.rebuild``).

    Called with events (an ``offline.engine.EventSink``), it opens its own store with
    ``store_factory``: it is pickled to a distributed engine's workers, each rebuilding the keys
    of its share of the events. Events go to the store in chunks of about ``batch_rows`` rows
    cut between keys, so memory holds a chunk and one key's events, never the source.

    Attributes:
        table: the feature table (with aggregations).
        end: the ingestion's end.
        allowed_lateness: the stream's allowed lateness.
        batch_rows: the rows of a chunk.
        store_factory: opens the store (where the sink is called, e.g. on a Spark executor).
    """

    table: FeatureTable
    end: datetime
    allowed_lateness: timedelta
    batch_rows: int
    store_factory: StoreFactory | None = None

    @classmethod
    def of(
        cls,
        table: FeatureTable,
        end: datetime,
        stream: StreamSection,
        batch_rows: int,
        *,
        store_factory: StoreFactory | None = None,
    ) -> TileRebuild | None:
        """The rebuild of ``table``'s tiles at ``end``; None if it has no tiles (no aggregation or no stream source)."""
        if not table.aggregations or table.stream_source is None:
            return None
        lateness = timedelta(seconds=stream.allowed_lateness_seconds)
        return cls(table=table, end=end, allowed_lateness=lateness, batch_rows=batch_rows, store_factory=store_factory)

    @property
    def lower(self) -> datetime:
        """The events' exclusive lower bound: ``end - longest window - allowed lateness``."""
        return self.end - max(a.window for a in self.table.aggregations) - self.allowed_lateness

    def __call__(self, batches: Iterable[pa.RecordBatch]) -> int:
        """Rebuild the keys of ``batches`` in the store ``store_factory`` opens; return how many."""
        if self.store_factory is None:
            raise TypeError("TileRebuild needs a store_factory to be called; use into(store, batches)")
        store = self.store_factory()
        try:
            return self.into(cast("TileStore", store), batches)
        finally:
            store.close()

    def into(self, store: TileStore, batches: Iterable[pa.RecordBatch]) -> int:
        """Rebuild the keys of ``batches`` (each key's events contiguous) in ``store``; return how many."""
        writer = TileWriter(store, self.table, allowed_lateness=self.allowed_lateness)
        end_us = (self.end - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        held: list[pa.RecordBatch] = []
        rebuilt = 0
        for batch in batches:
            held.append(batch)
            if sum(b.num_rows for b in held) < self.batch_rows:
                continue
            rows = pa.Table.from_batches(held)
            keys = arrow_keys(rows, self.table.entities).to_numpy(zero_copy_only=False)
            others = np.flatnonzero(keys != keys[-1])  # the last key may go on in the next batch
            cut = int(others[-1]) + 1 if len(others) else 0
            rebuilt += writer.rebuild(rows.slice(0, cut), end_us)
            held = rows.slice(cut).to_batches()
        if held:
            rebuilt += writer.rebuild(pa.Table.from_batches(held), end_us)
        return rebuilt
