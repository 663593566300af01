"""What the Spark engine reads and writes: source schemas, staged files, online-store writes from
the executors, the job handle, Spark's errors.

Split from :mod:`provender.offline.spark` (which compiles and submits the work) because this
part moves files and states. Sources' schemas are read on the driver with Arrow (a footer or a
CSV header per local file) and handed to Spark, which then runs no schema-inference job. A
retrieval runs in a background thread under its own Spark job group (so
:meth:`SparkRetrievalJob.cancel` can stop it), writes Parquet under the staging directory, and
is read back batch by batch in the entity rows' order. Spark's failures keep Spark's message.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Self, TypeVar, cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from py4j.protocol import Py4JError, Py4JJavaError  # type: ignore[import-untyped]
from pyspark import InheritableThread
from pyspark.errors import AnalysisException, PySparkException
from pyspark.sql import DataFrame, SparkSession

from provender.backends import Role, load_backend
from provender.definitions import CsvFormat, FeatureTable, ValueType
from provender.errors import BackendError, DataError, ProvenderError
from provender.ingestion.batch import IngestionJob, JobCancelledError, JobStatus, write_batches
from provender.offline.engine import EntityRows
from provender.offline.files import is_remote
from provender.offline.plan import (
    CREATED_TIMESTAMP,
    ENTITY_TIMESTAMP,
    EVENT_TIMESTAMP,
    RetrievalPlan,
    TableJoin,
    check_source_schema,
    null_entity_times_error,
)
from provender.registry import codec

if TYPE_CHECKING:
    from provender.online.store import OnlineStore

log = logging.getLogger(__name__)

STAMP = pa.timestamp("us", tz="UTC")
"""How timestamps are compared and returned: UTC microseconds."""
ROW_ID = "__provender_row_id"
"""The entity rows' position, staged with them and kept in the result to stitch them back."""
_T = TypeVar("_T")
_EXECUTOR_ERROR = re.compile(r"\[provender (?P<kind>\w+) retryable=(?P<retryable>[01])\] (?P<message>.*)", re.DOTALL)
_DATA_CONDITIONS = ("CAST_", "PATH_NOT_FOUND", "USER_RAISED_EXCEPTION", "DATETIME", "FAILED_READ_FILE", "PARQUET_")


# How Spark's Parquet reader sees Arrow types (unsigned integers widen; see read_type).
_READ_TYPES = {
    pa.bool_(): "boolean", pa.int8(): "tinyint", pa.int16(): "smallint", pa.int32(): "int", pa.int64(): "bigint",
    pa.uint8(): "smallint", pa.uint16(): "int", pa.uint32(): "bigint", pa.uint64(): "decimal(20,0)",
    pa.float32(): "float", pa.float64(): "double", pa.string(): "string", pa.large_string(): "string",
    pa.binary(): "binary", pa.large_binary(): "binary", pa.date32(): "date",
}  # fmt: skip


# -- what Spark reads: schemas on the driver ---------------------------------------------------


def read_type(found: pa.DataType) -> str | None:
    """The Spark type Spark's Parquet reader gives Arrow type ``found`` (None: let Spark infer)."""
    if pa.types.is_timestamp(found):
        return "bigint" if found.unit == "ns" else "timestamp" if found.tz else "timestamp_ntz"
    if pa.types.is_dictionary(found):
        return read_type(found.value_type)
    if pa.types.is_list(found) or pa.types.is_large_list(found):
        element = read_type(found.value_type)
        return None if element is None else f"array<{element}>"
    if pa.types.is_decimal(found):
        return f"decimal({found.precision},{found.scale})"
    return _READ_TYPES.get(found)


def spark_view(schema: pa.Schema, first_file: str | None, filesystem: object = None) -> pa.Schema:
    """``schema`` as Spark reads it: nanosecond columns stored as legacy INT96 are timestamps, not integers.

    Only opens a footer when a nanosecond column is present (INT96 reads as nanoseconds in Arrow).
    """
    nanos = [f.name for f in schema if pa.types.is_timestamp(f.type) and f.type.unit == "ns"]
    if not nanos or first_file is None:
        return schema
    parquet = pq.ParquetFile(first_file, filesystem=filesystem).schema
    int96 = {parquet.column(i).name for i in range(len(parquet)) if parquet.column(i).physical_type == "INT96"}
    return pa.schema([f.with_type(STAMP) if f.name in int96 else f for f in schema])


def source_schema(join: TableJoin, files: list[str], root: Path | None) -> tuple[pa.Schema, bool]:
    """Check the source's schema and return it as Spark reads it, and whether all files share it.

    Every local file's footer (or CSV header) is read, as DuckDB's ``union_by_name`` does, so a
    file whose columns conflict fails here; of a remote source only the first file is read.
    """
    fmt = join.source.file_format
    dataset = ds.dataset(
        files[0] if is_remote(files[0]) else files,
        format=_arrow_format(join) if isinstance(fmt, CsvFormat) else "parquet",
        partitioning="hive",
        partition_base_dir=None if root is None else str(root),
    )
    schema, uniform = dataset.schema, True
    if not is_remote(files[0]):
        schemas = [fragment.physical_schema for fragment in dataset.get_fragments()]
        uniform = all(s.equals(schemas[0]) for s in schemas)
        if not uniform:
            schema = pa.unify_schemas([schema, *schemas], promote_options="permissive")
    if isinstance(fmt, CsvFormat):
        stamps = _csv_stamps(join)
        schema = pa.schema([f.with_type(STAMP) if f.name in stamps else f for f in schema])
        check_source_schema(join, schema)
        return schema, uniform
    check_source_schema(join, schema)
    return spark_view(schema, dataset.files[0] if dataset.files else None, dataset.filesystem), uniform


def _csv_stamps(join: TableJoin) -> set[str]:
    """The CSV columns read as timestamps: event and created times, UNIX_TIMESTAMP features."""
    c = join.columns
    stamps = {c.event_timestamp, *([c.created_timestamp] if c.created_timestamp else [])}
    features = zip(c.features, join.table.features, strict=True)
    return stamps | {name for name, f in features if f.value_type is ValueType.UNIX_TIMESTAMP}


def _arrow_format(join: TableJoin) -> ds.CsvFileFormat:
    """CSV as DuckDB reads it for the check: declared types for keys and features, timestamps typed.

    Timestamp columns are read as text here (naive and offset values may mix) and declared
    timestamps by :func:`source_schema`; Spark casts them, failing on a bad value.
    """
    assert isinstance(join.source.file_format, CsvFormat)
    c = join.columns
    declared = {col: e.value_type for col, e in zip(c.keys, join.entities, strict=True)}
    declared |= {col: f.value_type for col, f in zip(c.features, join.table.features, strict=True)}
    types = {name: t.to_arrow() for name, t in declared.items() if not t.is_list}
    types |= dict.fromkeys(_csv_stamps(join), pa.string())
    return ds.CsvFileFormat(
        parse_options=pacsv.ParseOptions(delimiter=join.source.file_format.delimiter),
        convert_options=pacsv.ConvertOptions(column_types=types),
    )


def partition_names(files: list[str], root: Path | None) -> set[str]:
    """The hive partition columns (``name=value`` directories) of ``files`` under ``root``."""
    if root is None:
        return set()
    parts = (part for f in files for part in Path(f).relative_to(root).parts[:-1])
    return {part.split("=", 1)[0] for part in parts if "=" in part}


def local_dir(path: str, *, base_dir: Path) -> Path | None:
    """The local directory ``path`` names (None for a file, a glob or a URL)."""
    if is_remote(path) or any(c in path for c in "*?["):
        return None
    local = Path(path.removeprefix("file://")).expanduser()
    local = local if local.is_absolute() else base_dir / local
    return local if local.is_dir() else None


def arrow_time_range(stamps: pa.ChunkedArray) -> tuple[datetime | None, datetime | None]:
    """Min and max of the entity rows' times (DataError if one is null), on the driver."""
    if stamps.null_count:
        raise null_entity_times_error(stamps.null_count, f"row {pc.index(pc.is_null(stamps), True).as_py()}")
    if len(stamps) == 0:
        return None, None
    bounds = pc.min_max(stamps.cast(STAMP, safe=False))
    return bounds["min"].as_py(), bounds["max"].as_py()


def latest_schema(join: TableJoin) -> pa.Schema:
    """The normalized rows the online store writes: keys, features, event and created times."""
    return pa.schema(
        [
            *((e.name, e.value_type.to_arrow()) for e in join.entities),
            *((f.name, f.value_type.to_arrow()) for f in join.features),
            (EVENT_TIMESTAMP, STAMP),
            (CREATED_TIMESTAMP, STAMP),
        ]
    )


def result_schema(plan: RetrievalPlan, rows: EntityRows) -> pa.Schema:
    """The retrieval's Arrow schema: entity columns as given (T as UTC), then the declared features."""
    fields = [
        pa.field(ENTITY_TIMESTAMP, STAMP) if name == ENTITY_TIMESTAMP else rows.schema.field(name).remove_metadata()
        for name in plan.entity_columns
    ]
    declared = {j.output_column(f): f.value_type.to_arrow() for j in plan.joins for f in j.features}
    return pa.schema([*fields, *(pa.field(c, declared[c]) for c in plan.output_columns)])


# -- what Spark writes: staged files ---------------------------------------------------------------


class Staging:
    """A directory (local or object store) for entity rows and results, seen by Spark and Arrow."""

    def __init__(self, location: str, *, base_dir: Path) -> None:
        if is_remote(location):
            self.fs, root = pafs.FileSystem.from_uri(location.replace("s3a://", "s3://", 1))
            self.spark_root = location.rstrip("/")
        else:
            path = Path(location.removeprefix("file://")).expanduser()
            path = path if path.is_absolute() else base_dir / path
            self.fs, root = pafs.LocalFileSystem(), str(path)
            self.spark_root = path.as_uri()
        self.root = root.rstrip("/")

    def new_dir(self, kind: str) -> str:
        """Create a fresh directory and return its name (relative to the root)."""
        name = f"{kind}-{uuid.uuid4().hex[:12]}"
        self.fs.create_dir(f"{self.root}/{name}", recursive=True)
        return name

    def arrow_path(self, name: str) -> str:
        """``name``'s path for :attr:`fs`."""
        return f"{self.root}/{name}"

    def spark_path(self, name: str) -> str:
        """``name``'s URI for Spark."""
        return f"{self.spark_root}/{name}"

    def parquet_files(self, name: str) -> list[str]:
        """The Parquet files Spark wrote under ``name``, in partition order (``part-00000...``)."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.arrow_path(name), allow_not_found=True))
        paths = [i.path for i in infos if i.is_file and i.path.endswith(".parquet")]
        return sorted(p for p in paths if not p.rsplit("/", 1)[-1].startswith(("_", ".")))

    def read(self, name: str, schema: pa.Schema, *, batch_rows: int | None = None) -> Iterator[pa.RecordBatch]:
        """Stream the Parquet files under ``name``, in order, cast to ``schema``."""
        for path in self.parquet_files(name):
            with self.fs.open_input_file(path) as handle:
                kwargs = {} if batch_rows is None else {"batch_size": batch_rows}
                for batch in pq.ParquetFile(handle).iter_batches(**kwargs):
                    yield cast_batch(batch, schema)

    def remove(self, name: str) -> None:
        """Delete ``name`` and everything under it (quietly, if it is already gone)."""
        try:
            self.fs.delete_dir(self.arrow_path(name))
        except OSError:
            log.debug("could not remove staged %s", name)


def cast_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Select ``schema``'s columns of ``batch``, in order, with its types where they cast.

    Spark has no unsigned integers, and nanosecond columns come back as integers; casting
    restores the types the user's data had, and the declared types of features.
    """
    arrays = []
    for field in schema:
        array = batch.column(field.name)
        if array.type != field.type:
            try:
                array = array.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                log.debug("keeping column=%s type=%s (cannot cast to %s)", field.name, array.type, field.type)
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, names=schema.names)


def executor_error(exc: ProvenderError) -> RuntimeError:
    """Wrap an error raised on an executor so the driver can raise it again, same type and flags."""
    kind = "DataError" if isinstance(exc, DataError) else "BackendError"
    retryable = int(isinstance(exc, BackendError) and exc.retryable)
    return RuntimeError(f"[provender {kind} retryable={retryable}] {exc}")


def spark_message(exc: BaseException) -> str:
    """Spark's own message for ``exc``, without the JVM stack trace (or the Python worker's)."""
    text = str(exc.java_exception.toString()) if isinstance(exc, Py4JJavaError) else str(exc)
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("at ")]
    if any(ln.startswith("Traceback (most recent call last)") for ln in lines):  # keep the exception, not the frames
        last = max(n for n, ln in enumerate(lines) if ln.startswith("Traceback"))
        raised = [ln for ln in lines[last + 1 :] if not ln.startswith((" ", "\t"))]
        lines = [lines[0], *raised] if raised else lines
    return "\n".join(lines[:12]).strip()


def spark_error(exc: BaseException, what: str) -> ProvenderError:
    """Map a Spark failure to DataError (the data) or BackendError (Spark), keeping Spark's message."""
    message = spark_message(exc)
    marked = _EXECUTOR_ERROR.search(message)
    if marked is not None:  # a Provender error raised on an executor (see executor_error)
        if marked["kind"] == "DataError":
            return DataError(f"{what} failed on the data: {marked['message']}")
        return BackendError(f"{what} failed: {marked['message']}", retryable=marked["retryable"] == "1")
    condition = ""
    if isinstance(exc, PySparkException):
        get = getattr(exc, "getCondition", None) or exc.getErrorClass  # getCondition: Spark 4
        condition = str(get() or "")
    elif "[" in message:
        condition = message.split("[", 1)[1].split("]", 1)[0]
    if isinstance(exc, AnalysisException) or condition.startswith(_DATA_CONDITIONS) or "DataError" in message:
        return DataError(f"{what} failed on the data: {message}")
    return BackendError(f"{what} failed in Spark: {message}")


def run_in_group(session: SparkSession, group: str, description: str, action: Callable[[], _T]) -> _T:
    """Run a Spark action under job group ``group`` (so it can be cancelled); map its errors."""
    context = session.sparkContext
    context.setJobGroup(group, description, interruptOnCancel=True)
    try:
        return action()
    except (PySparkException, Py4JError) as exc:
        raise spark_error(exc, description) from exc
    finally:
        context.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]


class PartitionWriter:
    """The ``mapInArrow`` function of ingestion: one partition's rows to the online store, on its executor.

    Picklable by reference (a module-level class with plain attributes); the feature table
    travels as its registry JSON.
    """

    def __init__(
        self, *, store: str, options: dict[str, object], base_dir: str, project: str, table_json: str, schema: pa.Schema
    ) -> None:
        self.store, self.options, self.base_dir = store, options, base_dir
        self.project, self.table_json, self.schema = project, table_json, schema

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Write every batch; yield one row: how many rows were read and written."""
        table = codec.from_json(self.table_json)
        assert isinstance(table, FeatureTable)
        store_cls = cast("type[OnlineStore]", load_backend(Role.ONLINE_STORE, self.store))
        store = store_cls.from_options(self.options, base_dir=Path(self.base_dir), project=self.project)
        job = IngestionJob(table=table.name, description=f"a Spark partition of {table.name!r}")
        try:
            reader = pa.RecordBatchReader.from_batches(self.schema, (cast_batch(b, self.schema) for b in batches))
            write_batches(reader, lambda rows: store.write(table, rows), job)
        except ProvenderError as exc:
            raise executor_error(exc) from exc
        finally:
            store.close()
        yield pa.RecordBatch.from_pydict(
            {"rows_read": [job.rows_read], "rows_written": [job.rows_written]},
            schema=pa.schema([("rows_read", pa.int64()), ("rows_written", pa.int64())]),
        )


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
