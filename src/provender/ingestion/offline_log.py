"""The offline log: stream records appended to date-partitioned Parquet, for historical retrieval.

A stream job with an offline log writes every record it stores online to Parquet files too::

    <root>/date=2026-11-20/part-20261120T120000Z-3f9c0a1b.parquet

with the normalized columns (the entities, the features, ``event_timestamp`` and
``created_timestamp``; UTC), partitioned by the UTC date of ``event_timestamp``. Register them
as the table's batch source to use stream-only features in training sets::

    FileSource(path="<root>", event_timestamp_column="event_timestamp",
               created_timestamp_column="created_timestamp", date_partition_column="date")

Rows are buffered and written as one file per date every ``max_rows`` rows or ``max_seconds``
seconds, whichever comes first, so files are few and large. A local file is written under a
hidden name (``.part-...``, which readers skip) and renamed when complete, so a reader never
sees half a file. The stream job commits consumer offsets only after the rows are in a file, so
a crash loses nothing; a crash between a file and its commit replays some records into a second
file, and the duplicates are harmless (they carry the same event and created times and values).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from provender.definitions.request import EVENT_TIMESTAMP
from provender.errors import BackendError

log = logging.getLogger(__name__)

DEFAULT_MAX_ROWS = 500_000
DEFAULT_MAX_SECONDS = 60.0
PARTITION_COLUMN = "date"


class OfflineLog:
    """Buffer normalized rows and write them as date-partitioned Parquet files under ``root``.

    Args:
        root: a local directory or an object-store URL (``s3://bucket/prefix``) that pyarrow
            can write to.
        max_rows: write once this many rows are buffered.
        max_seconds: write once the oldest buffered row has waited this long.
    """

    def __init__(
        self, root: str | Path, *, max_rows: int = DEFAULT_MAX_ROWS, max_seconds: float = DEFAULT_MAX_SECONDS
    ) -> None:
        self.root = str(root)
        if "://" in self.root:
            self._fs, self._base = pafs.FileSystem.from_uri(self.root)
            self._local = isinstance(self._fs, pafs.LocalFileSystem)
        else:
            self._fs, self._base = pafs.LocalFileSystem(), str(Path(root).expanduser().resolve())
            self._local = True
        self.max_rows = max_rows
        self.max_seconds = max_seconds
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._first_at: float | None = None
        self.files_written = 0
        self.rows_written = 0

    @property
    def pending_rows(self) -> int:
        """Rows buffered but not yet in a file."""
        return self._buffered

    def append(self, rows: pa.Table) -> None:
        """Buffer ``rows`` (normalized, with ``event_timestamp``)."""
        if rows.num_rows:
            self._buffer.append(rows)
            self._buffered += rows.num_rows
            if self._first_at is None:
                self._first_at = time.monotonic()

    def due(self) -> bool:
        """Whether the buffer should be written now (``max_rows`` or ``max_seconds`` reached)."""
        if self._first_at is None:
            return False
        return self._buffered >= self.max_rows or time.monotonic() - self._first_at >= self.max_seconds

    def flush(self) -> int:
        """Write every buffered row (one file per date); return how many rows were written.

        Raises:
            BackendError: a file could not be written (``retryable``); the rows stay buffered.
        """
        if not self._buffer:
            return 0
        rows = pa.concat_tables(self._buffer, promote_options="none").combine_chunks()
        dates = pc.strftime(rows.column(EVENT_TIMESTAMP), format="%Y-%m-%d", locale="C")
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        try:
            for day in pc.unique(dates).to_pylist():
                part = rows.filter(pc.equal(dates, day))
                self._write(f"{PARTITION_COLUMN}={day}", f"part-{stamp}-{uuid.uuid4().hex[:8]}.parquet", part)
        except (OSError, pa.ArrowException) as exc:
            raise BackendError(f"offline log {self.root}: cannot write Parquet: {exc}", retryable=True) from exc
        self._buffer, self._buffered, self._first_at = [], 0, None
        written = int(rows.num_rows)
        self.rows_written += written
        log.debug("offline log wrote rows=%d root=%s", written, self.root)
        return written

    def _write(self, directory: str, name: str, rows: pa.Table) -> None:
        folder = f"{self._base}/{directory}"
        self._fs.create_dir(folder, recursive=True)
        final = f"{folder}/{name}"
        if not self._local:  # an object appears whole when its upload completes
            pq.write_table(rows, final, filesystem=self._fs)
        else:
            hidden = f"{folder}/.{name}.tmp"
            with open(hidden, "wb") as file:
                pq.write_table(rows, file)
                file.flush()
                os.fsync(file.fileno())
            Path(hidden).replace(final)
        self.files_written += 1
