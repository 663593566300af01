"""The distributed offline engine: Apache Spark (``offline: {engine: spark, master: ...}``).

Compiles :mod:`provender.offline.plan` to DataFrame jobs; only where the work runs differs
from DuckDB, never the answer.

* **Retrieval**, per feature table: the entity rows and the table's source rows are put in one
  frame, partitioned by the entity key and sorted by time, a feature row before an entity row
  at the same time (``event_timestamp <= T``). A running ``max`` over the ranking key
  ``struct(event_timestamp, created_timestamp, values)`` then gives every entity row the
  candidate the rule picks (a missing created time orders lowest, as in the rule), and the
  ``max_age`` bound is checked on the picked row, as DuckDB's ``ASOF`` join does. No
  key-by-key fan-out: the cost is one sort per table, linear in rows. Tables are chained, each
  step carrying the previous columns; the result is sorted by the entity rows' order and
  written as Parquet under ``staging_path``, and the job handle streams those files.
* **Ingestion**: the same ranking key, ``max`` per entity key over ``[start, end)``. With
  :meth:`SparkEngine.ingest_to_online` the executors write their partitions to the online
  store themselves (``mapInArrow``), so the driver never holds the data.

Entity rows from pandas/Arrow are staged as Parquet (row id, keys, ``event_timestamp``) under
``staging_path``; their other columns never leave the driver and are put back beside the
result in order. Parquet entity sources are read where they are, ordered by file and row.
Timestamps: the session runs in UTC, naive values are UTC, nanoseconds are read as integers
and rounded down (``T`` rounded up for the ``max_age`` bound), exactly as the DuckDB engine does.
"""

from __future__ import annotations

import logging
import sys
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Self, TypeVar, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from py4j.protocol import Py4JError, Py4JJavaError  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pyspark import InheritableThread, SparkContext
from pyspark.errors import AnalysisException, PySparkException
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from provender.backends import Role, load_backend
from provender.config import validate_backend_config
from provender.definitions import CsvFormat, FeatureTable, ValueType
from provender.errors import BackendError, ConfigError, DataError, ProvenderError
from provender.ingestion.batch import IngestionJob, JobCancelledError, JobStatus, write_batches
from provender.offline.engine import EngineCapabilities, EntityRows
from provender.offline.files import DateRange, is_remote, list_source_files, lower_event_bound
from provender.offline.plan import (
    CREATED_TIMESTAMP,
    ENTITY_TIMESTAMP,
    EVENT_TIMESTAMP,
    LatestPlan,
    RetrievalPlan,
    TableJoin,
    check_source_schema,
    null_entity_times_error,
)
from provender.registry import codec

if TYPE_CHECKING:
    from provender.online.store import OnlineStore

log = logging.getLogger(__name__)

_ROW_ID = "__provender_row_id"
_TS = "__provender_ts"  # T, nanoseconds rounded down
_TS_CEIL = "__provender_ts_ceil"  # T, nanoseconds rounded up (the max_age bound)
_EVENT = "__provender_event_ts"
_CREATED = "__provender_created_ts"
_VALUES = "__provender_values"
_VERSION = "__provender_version"  # struct(event, created, values): the ranking key, then the values
_ROW = "__provender_row"
_IS_ENTITY = "__provender_is_entity"
_AT = "__provender_at"

_SPARK_TYPES = {
    ValueType.BOOL: "boolean",
    ValueType.INT32: "int",
    ValueType.INT64: "bigint",
    ValueType.FLOAT: "float",
    ValueType.DOUBLE: "double",
    ValueType.STRING: "string",
    ValueType.BYTES: "binary",
    ValueType.UNIX_TIMESTAMP: "timestamp",
}
# Settings the engine relies on: results are read back as UTC microseconds.
_FIXED_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.legacy.parquet.nanosAsLong": "true",  # else Spark refuses nanosecond Parquet columns
}
_STAMP = pa.timestamp("us", tz="UTC")
_T = TypeVar("_T")


def spark_type(value_type: ValueType) -> str:
    """Return the Spark SQL type of ``value_type``."""
    if value_type.is_list:
        return f"array<{_SPARK_TYPES[value_type.element]}>"
    return _SPARK_TYPES[value_type]


def col(name: str) -> Column:
    """Return a column by its exact name (dots and backticks are not special)."""
    return F.col("`" + name.replace("`", "``") + "`")


class SparkConfig(BaseModel):
    """``offline: {engine: spark, ...}`` options.

    Attributes:
        master: where jobs run: ``local[N]``, ``spark://host:7077``, ``k8s://https://...``,
            ``yarn``.
        conf: Spark settings (``spark.executor.memory: 4g``...), applied when the session starts.
        staging_path: where entity rows and results are staged; relative paths are resolved
            against the project; on a cluster, an object-store URL every executor can reach.
        app_name: the Spark application's name.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    engine: str = "spark"
    master: str = "local[2]"
    conf: dict[str, str] = Field(default_factory=dict)
    staging_path: str = ".provender/spark_staging"
    app_name: str = "provender"

    @field_validator("conf", mode="before")
    @classmethod
    def _stringify(cls, value: object) -> object:
        """Accept YAML scalars (``4``, ``true``) as Spark's strings."""
        if isinstance(value, Mapping):
            return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}
        return value


def session_conf(config: SparkConfig) -> dict[str, str]:
    """Return the settings the session starts with: defaults, then ``conf``, then the fixed ones.

    Raises:
        ConfigError: ``conf`` changes a setting the engine relies on.
    """
    local = config.master.startswith("local")
    conf = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"}
    if local or any(host in config.master for host in ("//127.0.0.1:", "//localhost:")):
        conf |= {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}
    if local:
        conf["spark.sql.shuffle.partitions"] = "4"
    for key, value in config.conf.items():
        if key in _FIXED_CONF and value != _FIXED_CONF[key]:
            raise ConfigError(f"offline.conf.{key}", f"must be {_FIXED_CONF[key]!r} for Provender, got {value!r}")
        conf[key] = value
    return conf | _FIXED_CONF


class _Staging:
    """A directory (local or object store) for entity rows and results, seen by Spark and Arrow."""

    def __init__(self, location: str, *, base_dir: Path) -> None:
        if is_remote(location):
            arrow_url = location.replace("s3a://", "s3://", 1)
            self.fs, self.root = pafs.FileSystem.from_uri(arrow_url)
            self.spark_root = location.rstrip("/")
        else:
            path = Path(location.removeprefix("file://")).expanduser()
            path = path if path.is_absolute() else base_dir / path
            self.fs, self.root = pafs.LocalFileSystem(), str(path)
            self.spark_root = path.as_uri()
        self.root = self.root.rstrip("/")

    def new_dir(self, kind: str) -> str:
        """Create and return a fresh directory name (relative to the root)."""
        name = f"{kind}-{uuid.uuid4().hex[:12]}"
        self.fs.create_dir(f"{self.root}/{name}", recursive=True)
        return name

    def arrow_path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def spark_path(self, name: str) -> str:
        return f"{self.spark_root}/{name}"

    def parquet_files(self, name: str) -> list[str]:
        """The Parquet files Spark wrote under ``name``, in partition order."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.arrow_path(name), allow_not_found=True))
        names = [i.path for i in infos if i.is_file and i.path.endswith(".parquet")]
        return sorted(n for n in names if not n.rsplit("/", 1)[-1].startswith(("_", ".")))

    def remove(self, name: str) -> None:
        try:
            self.fs.delete_dir(self.arrow_path(name))
        except (OSError, FileNotFoundError):  # already gone, or the store is unreachable
            log.debug("could not remove staged %s", name)


class SparkEngine:
    """Point-in-time retrieval and ingestion as Spark jobs; see the module docstring."""

    capabilities: ClassVar[EngineCapabilities] = EngineCapabilities(is_distributed=True, spills_to_disk=True)

    def __init__(self, config: SparkConfig, *, base_dir: Path) -> None:
        self.config = config
        self.base_dir = base_dir
        self.staging = _Staging(config.staging_path, base_dir=base_dir)
        conf = session_conf(config)
        self._owns_session = SparkContext._active_spark_context is None
        builder = SparkSession.builder.master(config.master).appName(config.app_name)
        for key, value in conf.items():
            builder = builder.config(key, value)
        try:
            self.session = builder.getOrCreate()
        except (PySparkException, Py4JError, OSError) as exc:
            raise BackendError(f"cannot start Spark (master {config.master!r}): {exc}") from exc
        context = self.session.sparkContext
        if not self._owns_session and context.master != config.master:
            log.warning("spark session reused master=%s configured=%s", context.master, config.master)
        # Python workers (ingestion) run this interpreter unless told otherwise: a bare
        # "python3" on PATH rarely has pyarrow and Provender.
        context.pythonExec = conf.get("spark.pyspark.python", context.pythonExec)
        if "spark.pyspark.python" not in conf and context.pythonExec == "python3":
            context.pythonExec = sys.executable
        self._jobs: weakref.WeakSet[SparkRetrievalJob] = weakref.WeakSet()
        log.info("spark session master=%s app=%s", context.master, context.applicationId)

    @classmethod
    def from_options(cls, options: Mapping[str, object], *, base_dir: Path) -> Self:
        """Build the engine (and start or join the process's Spark session) from ``offline:``."""
        config = validate_backend_config(SparkConfig, "offline", options)
        assert isinstance(config, SparkConfig)
        return cls(config, base_dir=base_dir)

    @property
    def application_id(self) -> str:
        """The Spark application id (as shown by the cluster's master)."""
        return str(self.session.sparkContext.applicationId)

    def close(self) -> None:
        """Remove staged results of this engine's jobs; stop the session if this engine started it."""
        for job in list(self._jobs):
            job.close()
        if self._owns_session:
            self.session.stop()

    def run_in_group(self, group: str, description: str, action: Callable[[], _T]) -> _T:
        """Run a Spark action under job group ``group`` (so it can be cancelled); map its errors."""
        context = self.session.sparkContext
        context.setJobGroup(group, description, interruptOnCancel=True)
        try:
            return action()
        except (PySparkException, Py4JError) as exc:
            raise spark_error(exc, description) from exc
        finally:
            context.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]

    # -- retrieval -----------------------------------------------------------------------------

    def retrieve(self, plan: RetrievalPlan, entity_rows: EntityRows) -> SparkRetrievalJob:
        """Check the sources, stage the entity rows and start the Spark job computing ``plan``."""
        job_dir = self.staging.new_dir("retrieval")
        try:
            entities, order, (earliest, latest) = self._entity_frame(plan, entity_rows, job_dir)
            sources = [
                self._source_frame(
                    join,
                    DateRange.for_window(earliest, latest, join.max_age),
                    lower=lower_event_bound(earliest, join.max_age),
                    upper=latest,
                )
                for join in plan.joins
            ]
        except BaseException:
            self.staging.remove(job_dir)
            raise
        staged = entity_rows.table is not None
        result = compile_retrieval(plan, entities, sources, order=order, passthrough=not staged)
        job = SparkRetrievalJob(
            self, result, staging=job_dir, schema=_result_schema(plan, entity_rows), entity_table=entity_rows.table
        )
        self._jobs.add(job)
        return job

    def _entity_frame(
        self, plan: RetrievalPlan, rows: EntityRows, job_dir: str
    ) -> tuple[DataFrame, str, tuple[datetime | None, datetime | None]]:
        keys = {e.name: e for join in plan.joins for e in join.entities}
        stamp_type = rows.schema.field(ENTITY_TIMESTAMP).type
        if rows.table is not None:
            times = _arrow_time_range(rows.table.column(ENTITY_TIMESTAMP))
            columns = {_ROW_ID: pa.array(np.arange(rows.table.num_rows, dtype=np.int64))}
            columns |= {name: rows.table.column(name).cast(e.value_type.to_arrow()) for name, e in keys.items()}
            columns[ENTITY_TIMESTAMP] = rows.table.column(ENTITY_TIMESTAMP)
            path = f"{self.staging.arrow_path(job_dir)}/entities.parquet"
            pq.write_table(pa.table(columns), path, filesystem=self.staging.fs)
            frame = self.session.read.parquet(f"{self.staging.spark_path(job_dir)}/entities.parquet")
            order = _ROW_ID
        else:
            order = "__provender_order"
            frame = self.session.read.parquet(*rows.paths).select(
                *(col(c) for c in rows.schema.names),
                F.struct(F.col("_metadata.file_path"), F.col("_metadata.row_index")).alias(order),
            )
            times = None
        floor, ceil = _timestamps(col(ENTITY_TIMESTAMP), stamp_type)
        frame = frame.select("*", floor.alias(_TS), ceil.alias(_TS_CEIL))
        frame = frame.select("*", *(col(n).cast(spark_type(e.value_type)).alias(f"__key_{n}") for n, e in keys.items()))
        if times is None:
            times = self._spark_time_range(frame, order)
        return frame, order, times

    def _spark_time_range(self, frame: DataFrame, order: str) -> tuple[datetime | None, datetime | None]:
        missing = F.col(_TS).isNull()
        agg = frame.agg(F.min(_TS), F.max(_TS), F.count_if(missing), F.min(F.when(missing, F.col(order))))
        row = self.run_in_group(f"provender-{uuid.uuid4().hex[:12]}", "reading the entity rows", agg.first)
        assert row is not None
        if row[2]:
            first = row[3]
            raise null_entity_times_error(int(row[2]), f"{first[0]} row {first[1]}")
        return _aware(row[0]), _aware(row[1])

    def _source_frame(
        self, join: TableJoin, dates: DateRange, *, lower: datetime | None, upper: datetime | None
    ) -> DataFrame:
        """The table's source rows that can be candidates: keys, features, event and created times."""
        columns = join.columns
        files = list_source_files(join.source, base_dir=self.base_dir, dates=dates)
        if not files:  # every date partition was pruned: no row can be a candidate
            return self._empty_source(join)
        schema = _arrow_source_schema(join, files, base_dir=self.base_dir)
        check_source_schema(join, schema)
        fmt = join.source.file_format
        reader = self.session.read
        root = _local_source_dir(join, base_dir=self.base_dir)
        if root is not None:
            reader = reader.option("basePath", root.as_uri())  # hive partition columns, as DuckDB reads them
        try:
            if isinstance(fmt, CsvFormat):
                frame = reader.csv(files, header=True, sep=fmt.delimiter)
            else:
                frame = reader.parquet(*files)
        except (PySparkException, Py4JError) as exc:
            raise DataError(
                f"Cannot read the batch source of feature table {join.name!r} ({join.source.path}): "
                f"{spark_message(exc)}"
            ) from exc
        wanted = {f.name for f in join.features}
        select = [
            _as(c, schema.field(c).type, e.value_type).alias(e.name)
            for c, e in zip(columns.keys, join.entities, strict=True)
        ]
        select += [
            _as(c, schema.field(c).type, f.value_type).alias(f.name)
            for c, f in zip(columns.features, join.table.features, strict=True)
            if f.name in wanted
        ]
        event = _timestamps(col(columns.event_timestamp), schema.field(columns.event_timestamp).type)[0]
        select.append(event.alias(_EVENT))
        created = (
            _timestamps(col(columns.created_timestamp), schema.field(columns.created_timestamp).type)[0]
            if columns.created_timestamp
            else F.lit(None).cast("timestamp")
        )
        select.append(created.alias(_CREATED))
        frame = frame.select(*select)
        where = F.col(_EVENT).isNotNull()
        for key in join.join_keys:  # a null key matches nothing
            where &= col(key).isNotNull()
        if upper is not None:
            where &= F.col(_EVENT) <= _timestamp_literal(upper)
        if lower is not None:
            where &= F.col(_EVENT) >= _timestamp_literal(lower)
        return frame.where(where)

    def _empty_source(self, join: TableJoin) -> DataFrame:
        fields = [f"`{e.name}` {spark_type(e.value_type)}" for e in join.entities]
        fields += [f"`{f.name}` {spark_type(f.value_type)}" for f in join.features]
        fields += [f"{_EVENT} timestamp", f"{_CREATED} timestamp"]
        return self.session.createDataFrame([], ", ".join(fields))

    # -- ingestion -----------------------------------------------------------------------------

    def _latest_frame(self, plan: LatestPlan) -> DataFrame:
        source = self._source_frame(
            plan.join, DateRange.for_interval(plan.start, plan.end), lower=plan.start, upper=None
        )
        return compile_latest(plan, source)

    def read_latest(self, plan: LatestPlan, *, batch_rows: int) -> pa.RecordBatchReader:
        """Stream the latest row per entity key in ``[start, end)``, through the driver.

        The Spark job writes the rows under ``staging_path``; the reader streams those files and
        removes them at the end. :meth:`ingest_to_online` avoids the driver altogether.
        """
        frame = self._latest_frame(plan)
        job_dir = self.staging.new_dir("latest")
        group = f"provender-{uuid.uuid4().hex[:12]}"
        what = f"ingestion of feature table {plan.join.name!r}"
        try:
            self.run_in_group(group, what, lambda: frame.write.parquet(self.staging.spark_path(job_dir)))
        except BaseException:
            self.staging.remove(job_dir)
            raise
        schema = _latest_schema(plan.join)
        files = self.staging.parquet_files(job_dir)

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                for path in files:
                    with self.staging.fs.open_input_file(path) as handle:
                        for batch in pq.ParquetFile(handle).iter_batches(batch_size=batch_rows):
                            yield _cast_batch(batch, schema)
            finally:
                self.staging.remove(job_dir)

        return pa.RecordBatchReader.from_batches(schema, batches())

    def ingest_to_online(
        self, plan: LatestPlan, *, online_options: Mapping[str, object], project: str, job: IngestionJob
    ) -> None:
        """Write the latest row per entity key in ``[start, end)`` to the online store, from the executors.

        Each partition opens the store from ``online_options`` on its executor and writes its
        rows in Arrow batches, reading ahead while it writes, under the store's event-time
        guard. Only the per-partition counts come back to the driver. Runs in the calling
        thread (the ingestion job's); ``job.cancel()`` cancels the Spark job.

        Raises:
            ConfigError: the store cannot be reached from executors (SQLite: a local file).
            JobCancelledError: the job was cancelled.
            DataError, BackendError: Spark's or the store's error, with its message.
        """
        name = str(online_options.get("store", "sqlite"))
        if name == "sqlite":
            raise ConfigError(
                "online.store",
                "the Spark engine writes from its executors, and a SQLite online store is one local "
                "file they cannot share; use `online: {store: redis, url: ...}`, or the DuckDB engine.",
            )
        store_cls = cast("type[OnlineStore]", load_backend(Role.ONLINE_STORE, name))
        if not store_cls.capabilities.is_shared:
            raise ConfigError(
                "online.store", f"store {name!r} lives in one process; Spark executors cannot write to it."
            )
        store_cls.from_options(online_options, base_dir=self.base_dir, project=project).close()  # validates
        writer = _PartitionWriter(
            store=name,
            options=dict(online_options),
            base_dir=str(self.base_dir),
            project=project,
            table_json=codec.to_json(plan.join.table),
            schema=_latest_schema(plan.join),
        )
        counts = self._latest_frame(plan).mapInArrow(writer, "rows_read long, rows_written long")
        total = counts.agg(F.sum("rows_read"), F.sum("rows_written"))
        group = f"provender-ingest-{job.id}"
        log.info("spark ingestion table=%s app=%s group=%s", plan.join.name, self.application_id, group)
        done = threading.Event()

        def watch() -> None:
            while not done.wait(0.2):
                if job.is_cancelled:
                    self.session.sparkContext.cancelJobGroup(group)
                    return

        watcher = InheritableThread(target=watch, daemon=True)
        watcher.start()
        try:
            row = self.run_in_group(group, f"ingestion of feature table {plan.join.name!r}", total.first)
        except ProvenderError as exc:
            if job.is_cancelled:
                raise JobCancelledError(f"job {job.id} was cancelled: {exc}") from exc
            raise
        finally:
            done.set()
        assert row is not None
        job.rows_read, job.rows_written = int(row[0] or 0), int(row[1] or 0)


class _PartitionWriter:
    """``mapInArrow`` function: write one partition's rows to the online store, on the executor."""

    def __init__(
        self, *, store: str, options: dict[str, object], base_dir: str, project: str, table_json: str, schema: pa.Schema
    ) -> None:
        self.store, self.options, self.base_dir = store, options, base_dir
        self.project, self.table_json, self.schema = project, table_json, schema

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        table = codec.from_json(self.table_json)
        assert isinstance(table, FeatureTable)
        store_cls = cast("type[OnlineStore]", load_backend(Role.ONLINE_STORE, self.store))
        store = store_cls.from_options(self.options, base_dir=Path(self.base_dir), project=self.project)
        job = IngestionJob(table=table.name, description=f"a Spark partition of {table.name!r}")
        try:
            reader = pa.RecordBatchReader.from_batches(self.schema, (_cast_batch(b, self.schema) for b in batches))
            write_batches(reader, lambda rows: store.write(table, rows), job)
        finally:
            store.close()
        yield pa.RecordBatch.from_pydict(
            {"rows_read": [job.rows_read], "rows_written": [job.rows_written]},
            schema=pa.schema([("rows_read", pa.int64()), ("rows_written", pa.int64())]),
        )


# -- compiling the plan ------------------------------------------------------------------------


def compile_retrieval(
    plan: RetrievalPlan, entities: DataFrame, sources: list[DataFrame], *, order: str, passthrough: bool
) -> DataFrame:
    """Compile the retrieval plan to one DataFrame, sorted by ``order``.

    Args:
        entities: the entity rows with ``_TS``/``_TS_CEIL`` (T rounded down/up), ``__key_<entity>``
            (keys cast to their declared types) and ``order``.
        sources: per join, the source rows from :meth:`SparkEngine._source_frame`.
        passthrough: keep every entity column; else only ``order`` (kept, to stitch the entity
            rows back in on the driver) and ``event_timestamp``.
    """
    current = entities
    for join, source in zip(plan.joins, sources, strict=True):
        keys = [f"__provender_k{n}" for n in range(len(join.join_keys))]
        row = F.struct(*(col(c) for c in current.columns))
        values = F.struct(*(col(f.name) for f in join.features)).alias(_VALUES)
        version = F.struct(F.col(_EVENT), F.col(_CREATED), values)
        entity_side = current.select(
            *(col(f"__key_{k}").alias(alias) for k, alias in zip(join.join_keys, keys, strict=True)),
            F.col(_TS).alias(_AT),
            F.lit(1).alias(_IS_ENTITY),
            row.alias(_ROW),
            F.lit(None).cast(source.select(version).schema[0].dataType).alias(_VERSION),
        )
        feature_side = source.select(
            *(col(k).alias(alias) for k, alias in zip(join.join_keys, keys, strict=True)),
            F.col(_EVENT).alias(_AT),
            F.lit(0).alias(_IS_ENTITY),
            F.lit(None).cast(current.select(row).schema[0].dataType).alias(_ROW),
            version.alias(_VERSION),
        )
        # Rows of one key by time, feature rows before entity rows at equal times (event <= T):
        # the running max of the ranking key is the winner among the rows up to T.
        window = (
            Window.partitionBy(*keys).orderBy(_AT, _IS_ENTITY).rowsBetween(Window.unboundedPreceding, Window.currentRow)
        )
        both = entity_side.unionByName(feature_side, allowMissingColumns=False)
        won = both.select(_IS_ENTITY, _ROW, F.max(_VERSION).over(window).alias(_VERSION))
        won = won.where(F.col(_IS_ENTITY) == 1)
        picked = F.col(_VERSION).isNotNull()
        if join.max_age is not None:
            age = join.max_age // timedelta(microseconds=1)
            bound = F.unix_micros(F.col(f"{_ROW}.{_TS_CEIL}")) - F.lit(age)
            picked &= F.unix_micros(F.col(f"{_VERSION}.{_EVENT}")) >= bound
        current = won.select(
            f"{_ROW}.*",
            *(F.when(picked, F.col(_VERSION)[_VALUES][f.name]).alias(join.output_column(f)) for f in join.features),
        )
    stamp = F.col(_TS).alias(ENTITY_TIMESTAMP)
    if passthrough:
        select = [stamp if c == ENTITY_TIMESTAMP else col(c) for c in plan.entity_columns]
    else:
        select = [col(order), stamp]
    result = current.select(*select, *(col(c) for c in plan.output_columns), col(order).alias("__provender_sort"))
    return result.orderBy("__provender_sort").drop("__provender_sort")


def compile_latest(plan: LatestPlan, source: DataFrame) -> DataFrame:
    """Compile offline-to-online ingestion: per key, the max of the ranking key in ``[start, end)``."""
    join = plan.join
    values = F.struct(*(col(f.name) for f in join.features)).alias(_VALUES)
    version = F.max(F.struct(F.col(_EVENT), F.col(_CREATED), values)).alias(_VERSION)
    latest = source.where(F.col(_EVENT) < _timestamp_literal(plan.end)).groupBy(*join.join_keys).agg(version)
    return latest.select(
        *(col(k) for k in join.join_keys),
        *(F.col(_VERSION)[_VALUES][f.name].alias(f.name) for f in join.features),
        F.col(f"{_VERSION}.{_EVENT}").alias(EVENT_TIMESTAMP),
        F.col(f"{_VERSION}.{_CREATED}").alias(CREATED_TIMESTAMP),
    )


def _timestamps(column: Column, found: pa.DataType) -> tuple[Column, Column]:
    """Return ``column`` (Arrow type ``found`` on disk) as a Spark timestamp, rounded down and up.

    Nanosecond Parquet columns arrive as integers (``nanosAsLong``); everything else (dates,
    naive or aware timestamps, CSV text) casts, naive values being UTC.
    """
    if pa.types.is_timestamp(found) and found.unit == "ns":
        micros = column.cast("decimal(20,0)") / F.lit(1000)
        return F.timestamp_micros(F.floor(micros).cast("bigint")), F.timestamp_micros(F.ceil(micros).cast("bigint"))
    stamp = column.cast("timestamp")
    return stamp, stamp


def _as(name: str, found: pa.DataType, value_type: ValueType) -> Column:
    if value_type is ValueType.UNIX_TIMESTAMP:
        return _timestamps(col(name), found)[0]
    return col(name).cast(spark_type(value_type))


def _timestamp_literal(at: datetime) -> Column:
    aware = at if at.tzinfo else at.replace(tzinfo=UTC)
    micros = (aware - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    return F.timestamp_micros(F.lit(micros))


def _aware(at: datetime | None) -> datetime | None:
    """A timestamp collected from the UTC session, as an aware UTC datetime."""
    if at is None:
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _arrow_time_range(stamps: pa.ChunkedArray) -> tuple[datetime | None, datetime | None]:
    """Min and max of the entity rows' times (a DataError if one is null), on the driver."""
    if stamps.null_count:
        first = pc.index(pc.is_null(stamps), True).as_py()
        raise null_entity_times_error(stamps.null_count, f"row {first}")
    if len(stamps) == 0:
        return None, None
    as_utc = stamps.cast(_STAMP, safe=False)
    bounds = pc.min_max(as_utc)
    return bounds["min"].as_py(), bounds["max"].as_py()


def _local_source_dir(join: TableJoin, *, base_dir: Path) -> Path | None:
    path = join.source.path
    if is_remote(path) or any(c in path for c in "*?["):
        return None
    local = Path(path.removeprefix("file://")).expanduser()
    local = local if local.is_absolute() else base_dir / local
    return local if local.is_dir() else None


def _arrow_source_schema(join: TableJoin, files: list[str], *, base_dir: Path) -> pa.Schema:
    """Read the source's schema on the driver (one file's footer or header), as DuckDB sees it."""
    fmt = join.source.file_format
    root = _local_source_dir(join, base_dir=base_dir)
    if isinstance(fmt, CsvFormat):
        columns = join.columns
        declared = {c: e.value_type for c, e in zip(columns.keys, join.entities, strict=True)}
        declared |= {c: f.value_type for c, f in zip(columns.features, join.table.features, strict=True)}
        types = {c: t.to_arrow() for c, t in declared.items() if not t.is_list and t is not ValueType.UNIX_TIMESTAMP}
        file_format: ds.FileFormat = ds.CsvFileFormat(
            parse_options=pacsv.ParseOptions(delimiter=fmt.delimiter),
            convert_options=pacsv.ConvertOptions(column_types=types),
        )
    else:
        file_format = ds.ParquetFileFormat()
    source: str | list[str] = files[0] if is_remote(files[0]) else files
    try:
        dataset = ds.dataset(
            source,
            format=file_format,
            partitioning="hive",
            partition_base_dir=None if root is None else str(root),
        )
        return dataset.schema
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(
            f"Cannot read the batch source of feature table {join.name!r} ({join.source.path}): {exc}"
        ) from exc


def _latest_schema(join: TableJoin) -> pa.Schema:
    """The normalized rows the online store writes: keys, features, event and created times."""
    return pa.schema(
        [
            *((e.name, e.value_type.to_arrow()) for e in join.entities),
            *((f.name, f.value_type.to_arrow()) for f in join.features),
            (EVENT_TIMESTAMP, _STAMP),
            (CREATED_TIMESTAMP, _STAMP),
        ]
    )


def _result_schema(plan: RetrievalPlan, rows: EntityRows) -> pa.Schema:
    """The retrieval's Arrow schema: entity columns as given (T as UTC), then declared features."""
    fields = [
        pa.field(ENTITY_TIMESTAMP, _STAMP) if name == ENTITY_TIMESTAMP else rows.schema.field(name).remove_metadata()
        for name in plan.entity_columns
    ]
    declared = {j.output_column(f): f.value_type.to_arrow() for j in plan.joins for f in j.features}
    fields += [pa.field(c, declared[c]) for c in plan.output_columns]
    return pa.schema(fields)


def _cast_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Give a batch read back from Spark the expected Arrow types (Spark has no uint, ns...)."""
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


def spark_message(exc: BaseException) -> str:
    """Spark's own message for ``exc``, without the JVM stack trace."""
    text = str(exc.java_exception.toString()) if isinstance(exc, Py4JJavaError) else str(exc)
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("at ")]
    return "\n".join(lines[:12]).strip()


_DATA_CONDITIONS = ("CAST_", "PATH_NOT_FOUND", "USER_RAISED_EXCEPTION", "DATETIME", "FAILED_READ_FILE", "PARQUET_")


def spark_error(exc: BaseException, what: str) -> ProvenderError:
    """Map a Spark failure to DataError (the data) or BackendError (Spark), keeping Spark's message."""
    message = spark_message(exc)
    condition = ""
    if isinstance(exc, PySparkException):
        get = getattr(exc, "getCondition", None) or exc.getErrorClass  # getCondition: Spark 4
        condition = str(get() or "")
    elif "[" in message:
        condition = message.split("[", 1)[1].split("]", 1)[0]
    if isinstance(exc, AnalysisException) or condition.startswith(_DATA_CONDITIONS) or "DataError" in message:
        return DataError(f"{what} failed on the data: {message}")
    return BackendError(f"{what} failed in Spark: {message}")


class SparkRetrievalJob:
    """A retrieval running as a Spark job; results are read from its staged Parquet files.

    Attributes:
        id: the job's id; ``job_group`` is the Spark job group it runs under.
        application_id: the Spark application running it.
        status: PENDING, RUNNING, SUCCEEDED, FAILED or CANCELLED.
    """

    def __init__(
        self,
        engine: SparkEngine,
        frame: DataFrame,
        *,
        staging: str,
        schema: pa.Schema,
        entity_table: pa.Table | None,
    ) -> None:
        self.id = staging.rsplit("-", 1)[-1]
        self.job_group = f"provender-{self.id}"
        self.application_id = engine.application_id
        self.status = JobStatus.RUNNING
        self.error: ProvenderError | None = None
        self.schema = schema
        self._engine, self._staging, self._entity_table = engine, staging, entity_table
        self._cancelled = False
        self._done = threading.Event()
        self._finalizer = weakref.finalize(self, engine.staging.remove, staging)
        result = engine.staging.spark_path(f"{staging}/result")
        self._thread = InheritableThread(target=self._run, args=(frame, result), daemon=True)
        self._thread.start()

    def _run(self, frame: DataFrame, result: str) -> None:
        try:
            self._engine.run_in_group(self.job_group, "historical retrieval", lambda: frame.write.parquet(result))
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
        """Block until the Spark job ends; raise its error (Spark's message kept) if it failed."""
        if not self._done.wait(timeout_seconds):
            raise TimeoutError(f"retrieval {self.id} still running after {timeout_seconds} s")
        if self.error is not None:
            raise self.error
        return self

    def cancel(self) -> None:
        """Cancel the Spark job (its job group); :meth:`wait` then raises JobCancelledError."""
        if not self._done.is_set():
            self._cancelled = True
            self._engine.session.sparkContext.cancelJobGroup(self.job_group)

    def close(self) -> None:
        """Delete the staged files; the results cannot be read afterwards."""
        self.cancel()
        self._done.wait()
        self._finalizer()

    def to_arrow_reader(self) -> pa.RecordBatchReader:
        """Wait for the job and stream the result in the entity rows' order."""
        self.wait()
        files = self._engine.staging.parquet_files(f"{self._staging}/result")
        return pa.RecordBatchReader.from_batches(self.schema, self._batches(files))

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

    def _batches(self, files: list[str]) -> Iterator[pa.RecordBatch]:
        offset = 0
        fs = self._engine.staging.fs
        for path in files:
            with fs.open_input_file(path) as handle:
                for batch in pq.ParquetFile(handle).iter_batches():
                    if self._entity_table is not None:
                        batch = self._stitch(batch, offset)
                    offset += batch.num_rows
                    yield _cast_batch(batch, self.schema)
        if self._entity_table is not None and offset != self._entity_table.num_rows:
            raise BackendError(f"retrieval {self.id}: Spark returned {offset} rows for {self._entity_table.num_rows}")

    def _stitch(self, batch: pa.RecordBatch, offset: int) -> pa.RecordBatch:
        """Put the entity rows' own columns beside Spark's rows ``offset...`` (sorted by row id)."""
        assert self._entity_table is not None
        ids = batch.column(_ROW_ID)
        if len(ids) and (ids[0].as_py() != offset or ids[-1].as_py() != offset + len(ids) - 1):
            raise BackendError(f"retrieval {self.id}: result rows out of order at row {offset}")
        rows = self._entity_table.slice(offset, batch.num_rows)
        columns = {
            name: batch.column(name) if name in batch.schema.names else rows.column(name).combine_chunks()
            for name in self.schema.names
        }
        return pa.RecordBatch.from_arrays(list(columns.values()), names=list(columns))
