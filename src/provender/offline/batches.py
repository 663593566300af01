"""Writing an engine's stream of Arrow batches (to the online store), reading ahead while writing.

Used wherever rows leave an engine in batches: offline-to-online ingestion on the driver
(``ingestion/batch.py``), and each Spark partition on its executor. The writer is given the
``write`` callable (a store's ``write``), so this layer never imports ``online/``. The job it
runs for is anything with the :class:`WriteProgress` fields (an ``IngestionJob``; a partition's
own counter on an executor).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Protocol

import pyarrow as pa

from provender.errors import BackendError, JobCancelledError

_QUEUED_BATCHES = 2


class WriteProgress(Protocol):
    """What a writer reports to, and asks of, the job it runs for.

    Attributes:
        id: the job's id (named in errors and thread names).
        description: what the job does (named in errors).
        rows_read: rows read so far; the writer adds to it.
        rows_written: rows written so far; the writer adds to it.
    """

    rows_read: int
    rows_written: int

    @property
    def id(self) -> str:
        """The job's id."""
        ...

    @property
    def description(self) -> str:
        """What the job does."""
        ...

    @property
    def is_cancelled(self) -> bool:
        """Whether the job was asked to stop."""
        ...


def write_batches(reader: pa.RecordBatchReader, write: Callable[[pa.Table], int], job: WriteProgress) -> None:
    """Write every batch of ``reader`` with ``write``, reading ahead in another thread.

    Raises:
        JobCancelledError: the job was cancelled.
        BackendError: the store failed (the reader is stopped, nothing more is written).
    """
    batches: queue.Queue[pa.RecordBatch | BaseException | None] = queue.Queue(maxsize=_QUEUED_BATCHES)
    stop = threading.Event()

    def read_ahead() -> None:
        try:
            for batch in reader:
                while not stop.is_set():
                    try:
                        batches.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            batches.put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the writing thread
            batches.put(exc)

    reader_thread = threading.Thread(target=read_ahead, name=f"provender-read-{job.id}", daemon=True)
    reader_thread.start()
    try:
        while True:
            item = batches.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            if job.is_cancelled:
                raise JobCancelledError(f"job {job.id} was cancelled after {job.rows_written} rows")
            job.rows_read += item.num_rows
            if item.num_rows:
                job.rows_written += write(pa.Table.from_batches([item]))
    except (OSError, ConnectionError) as exc:
        raise BackendError(f"online store failed during {job.description}: {exc}", retryable=True) from exc
    finally:
        stop.set()
        while reader_thread.is_alive():
            try:
                batches.get_nowait()
            except queue.Empty:
                reader_thread.join(timeout=0.05)
