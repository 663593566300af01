"""The handle of a historical retrieval running as a Spark job.

A retrieval runs in a background thread under its own Spark job group (so
:meth:`SparkRetrievalJob.cancel` can stop it), writes Parquet under the staging directory, and
is read back batch by batch in the entity rows' order. Spark's failures keep Spark's message.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark import InheritableThread
from pyspark.sql import DataFrame, SparkSession

from provender.errors import BackendError, JobCancelledError, ProvenderError
from provender.offline.engine import JobStatus
from provender.offline.lineage import SourceInput
from provender.offline.spark.failures import run_in_group
from provender.offline.spark.schemas import ROW_ID
from provender.offline.spark.staging import Staging, cast_batch


class SparkRetrievalJob:
    """A historical retrieval running as a Spark job; results are read from its staged files.

    The job starts at once, in a background thread. Result methods wait for it.

    Attributes:
        id: the job's id; ``job_group`` is the Spark job group it runs under.
        application_id: the Spark application running it.
        status: RUNNING, then SUCCEEDED, FAILED or CANCELLED.
        error: why it failed (Spark's message kept), or None.
        schema: the result's Arrow schema.
    """

    def __init__(
        self,
        session: SparkSession,
        frame: DataFrame,
        *,
        staging: Staging,
        job_dir: str,
        schema: pa.Schema,
        entity_table: pa.Table | None,
    ) -> None:
        self.inputs: tuple[SourceInput, ...] = ()
        """What the retrieval reads, per feature table (its lineage; set by the engine)."""
        self.id = job_dir.rsplit("-", 1)[-1]
        self.job_group = f"provender-{self.id}"
        self.application_id = str(session.sparkContext.applicationId)
        self.status = JobStatus.RUNNING
        self.error: ProvenderError | None = None
        self.schema = schema
        self._session, self._staging, self._dir, self._entity_table = session, staging, job_dir, entity_table
        self._cancelled = False
        self._done = threading.Event()
        self._finalizer = weakref.finalize(self, staging.remove, job_dir)
        result = staging.spark_path(f"{job_dir}/result")
        self._thread = InheritableThread(target=self._run, args=(frame, result), daemon=True)
        self._thread.start()

    def _run(self, frame: DataFrame, result: str) -> None:
        try:
            if self._cancelled:
                raise JobCancelledError(f"retrieval {self.id} was cancelled")
            run_in_group(self._session, self.job_group, "historical retrieval", lambda: frame.write.parquet(result))
        except ProvenderError as exc:
            if self._cancelled:
                self.status, self.error = JobStatus.CANCELLED, JobCancelledError(f"retrieval {self.id} was cancelled")
            else:
                self.status, self.error = JobStatus.FAILED, exc
        except BaseException as exc:  # noqa: BLE001 - reported by wait()
            self.status, self.error = JobStatus.FAILED, BackendError(f"historical retrieval failed: {exc!r}")
        else:
            self.status = JobStatus.SUCCEEDED
        finally:
            self._done.set()

    def wait(self, timeout_seconds: float | None = None) -> Self:
        """Block until the Spark job ends; raise its error (Spark's message kept) if it failed.

        Raises:
            TimeoutError: still running after ``timeout_seconds``.
            JobCancelledError: :meth:`cancel` stopped it.
            DataError, BackendError: the job failed.
        """
        if not self._done.wait(timeout_seconds):
            raise TimeoutError(f"retrieval {self.id} still running after {timeout_seconds} s")
        if self.error is not None:
            raise self.error
        return self

    def cancel(self, timeout_seconds: float = 10.0) -> None:
        """Cancel the Spark job (its job group) and wait until it has stopped, up to ``timeout_seconds``.

        :meth:`wait` then raises JobCancelledError (unless the job had already finished).
        """
        self._cancelled = True
        deadline = time.monotonic() + timeout_seconds
        # Repeated: a job the thread submits right after a cancel would not be in the group yet.
        while not self._done.is_set() and time.monotonic() < deadline:
            self._session.sparkContext.cancelJobGroup(self.job_group)
            self._done.wait(0.1)

    def close(self) -> None:
        """Cancel the job if it runs and delete its staged files; results cannot be read afterwards."""
        self.cancel()
        self._done.wait()
        self._finalizer()

    def to_arrow_reader(self) -> pa.RecordBatchReader:
        """Wait for the job and stream the result in the entity rows' order."""
        self.wait()
        batches = self._staging.read(f"{self._dir}/result", self._spark_schema())
        if self._entity_table is not None:
            batches = self._stitch(batches)
        return pa.RecordBatchReader.from_batches(self.schema, (cast_batch(b, self.schema) for b in batches))

    def to_arrow(self) -> pa.Table:
        """Wait for the job and return the result as an Arrow table."""
        return self.to_arrow_reader().read_all()

    def to_parquet(self, path: str | Path) -> int:
        """Wait for the job and copy the result into one Parquet file, batch by batch; return its rows."""
        rows = 0
        with pq.ParquetWriter(str(path), self.schema) as writer:
            for batch in self.to_arrow_reader():
                writer.write_batch(batch)
                rows += batch.num_rows
        return rows

    def _spark_schema(self) -> pa.Schema:
        """The columns Spark wrote: all of :attr:`schema`, or (entity rows staged) the row id and its own."""
        if self._entity_table is None:
            return self.schema
        own = [f for f in self.schema if f.name not in self._entity_table.schema.names or f.name == "event_timestamp"]
        return pa.schema([pa.field(ROW_ID, pa.int64()), *own])

    def _stitch(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Put the entity rows' own columns beside Spark's rows (sorted by row id), checking the order."""
        table = self._entity_table
        assert table is not None
        offset = 0
        for batch in batches:
            ids = batch.column(ROW_ID)
            if len(ids) and (ids[0].as_py() != offset or ids[-1].as_py() != offset + len(ids) - 1):
                raise BackendError(f"retrieval {self.id}: result rows out of order at row {offset}")
            rows = table.slice(offset, batch.num_rows)
            offset += batch.num_rows
            names = self.schema.names
            arrays = [batch.column(n) if n in batch.schema.names else rows.column(n).combine_chunks() for n in names]
            yield pa.RecordBatch.from_arrays(arrays, names=names)
        if offset != table.num_rows:
            raise BackendError(f"retrieval {self.id}: Spark returned {offset} rows for {table.num_rows} entity rows")
