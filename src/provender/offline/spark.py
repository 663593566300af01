"""The distributed offline engine: Apache Spark (``offline: {engine: spark, master: ...}``).

Compiles :mod:`provender.offline.plan` to DataFrame jobs; where the work runs changes, never
the answer. **Retrieval**, per feature table: entity rows and source rows go in one frame,
partitioned by entity key and sorted by time, a feature row before an entity row at equal
times (``event_timestamp <= T``); a running ``max`` of the ranking key ``struct(event
timestamp, created timestamp, values)`` (a missing created time orders lowest, as in the rule)
gives each entity row its winning row, whose ``max_age`` bound is then checked, as DuckDB's
``ASOF`` join does. One sort per table, no fan-out per key; tables are chained, the result is
sorted in the entity rows' order and written as Parquet under ``staging_path``
(:mod:`provender.offline.spark_io` reads it back). **Ingestion**: ``max`` of the same key
per entity key over ``[start, end)``; :meth:`SparkEngine.ingest_to_online` writes it to the
online store from the executors (``mapInArrow``), the driver never holding the rows.

Entity rows from pandas/Arrow are staged as Parquet (row id, keys, ``event_timestamp``); their
other columns stay on the driver and are put back beside the result. Parquet entity sources
are read in place, ordered by file and row. Sources' schemas are read on the driver (a footer
or a CSV header) and given to Spark, which then starts no schema-inference job. The session
runs in UTC; naive times are UTC; nanosecond columns arrive as integers and are rounded down
(``T`` up, for the ``max_age`` bound), as the DuckDB engine does.
"""

from __future__ import annotations

import logging
import sys
import threading
import uuid
import weakref
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Self, cast

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from py4j.protocol import Py4JError  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pyspark import InheritableThread, SparkContext
from pyspark.errors import PySparkException
from pyspark.sql import Column, DataFrame, DataFrameReader, SparkSession, Window
from pyspark.sql import functions as F

from provender.backends import Role, load_backend
from provender.config import validate_backend_config
from provender.definitions import CsvFormat, ValueType
from provender.errors import BackendError, ConfigError, DataError, ProvenderError
from provender.ingestion.batch import IngestionJob, JobCancelledError
from provender.offline.engine import EngineCapabilities, EntityRows
from provender.offline.files import DateRange, list_table_files, lower_event_bound
from provender.offline.plan import (
    CREATED_TIMESTAMP,
    ENTITY_TIMESTAMP,
    EVENT_TIMESTAMP,
    LatestPlan,
    RetrievalPlan,
    TableJoin,
    null_entity_times_error,
)
from provender.offline.spark_io import (
    ROW_ID,
    STAMP,
    PartitionWriter,
    SparkRetrievalJob,
    Staging,
    arrow_time_range,
    latest_schema,
    local_dir,
    partition_names,
    read_type,
    result_schema,
    run_in_group,
    source_schema,
    spark_message,
    spark_view,
)
from provender.registry import codec

if TYPE_CHECKING:
    from provender.online.store import OnlineStore

log = logging.getLogger(__name__)

_ORDER = "__provender_order"  # the entity rows' order (row id, or file and row of a Parquet source)
_TS = "__provender_ts"  # T, nanoseconds rounded down
_TS_CEIL = "__provender_ts_ceil"  # T, nanoseconds rounded up (the max_age bound)
_EVENT = "__provender_event_ts"
_CREATED = "__provender_created_ts"
_VALUES = "__provender_values"
_VERSION = "__provender_version"  # struct(event, created, values): the ranking key, then the values
_ROW = "__provender_row"
_IS_ENTITY = "__provender_is_entity"
_AT = "__provender_at"
_NO_BOUND = 2**62  # microseconds: more than Spark's timestamps span (years 1..9999), no overflow

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
    "spark.sql.caseSensitive": "true",  # column names are exact: "Driver_Id" is not "driver_id"
}


def spark_type(value_type: ValueType) -> str:
    """Return the Spark SQL type of ``value_type``."""
    if value_type.is_list:
        return f"array<{_SPARK_TYPES[value_type.element]}>"
    return _SPARK_TYPES[value_type]


def col(name: str) -> Column:
    """Return a column by its exact name (dots and backticks are not special)."""
    return F.col(_quote(name))


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class SparkConfig(BaseModel):
    """``offline: {engine: spark, ...}`` options.

    Attributes:
        master: where jobs run: ``local[N]``, ``spark://host:7077``, ``k8s://https://...``, ``yarn``.
        conf: Spark settings (``spark.executor.memory: 4g``...), applied when the session starts.
        staging_path: where entity rows and results are staged; relative paths are resolved
            against the project; on a cluster, a URL every executor and the driver can reach.
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


class SparkEngine:
    """Point-in-time retrieval and ingestion as Spark jobs; see the module docstring.

    Spark allows one session per process: the engine joins a running one, else starts it with
    :func:`session_conf`. A session the engines started stops when the last of them closes; one
    started by someone else is left running.
    """

    _lock: ClassVar[threading.Lock] = threading.Lock()
    _open: ClassVar[int] = 0  # engines open in this process
    _started: ClassVar[bool] = False  # whether an engine started the running session

    capabilities: ClassVar[EngineCapabilities] = EngineCapabilities(is_distributed=True)
    config_model: ClassVar[type[BaseModel]] = SparkConfig

    def __init__(self, config: SparkConfig, *, base_dir: Path) -> None:
        self.config = config
        self.base_dir = base_dir
        self.staging = Staging(config.staging_path, base_dir=base_dir)
        conf = session_conf(config)
        builder = SparkSession.builder.master(config.master).appName(config.app_name)
        for key, value in conf.items():
            builder = builder.config(key, value)
        with SparkEngine._lock:
            starting = SparkContext._active_spark_context is None
            try:
                self.session = builder.getOrCreate()
            except (PySparkException, Py4JError, OSError) as exc:
                raise BackendError(f"cannot start Spark (master {config.master!r}): {exc}") from exc
            SparkEngine._started = SparkEngine._started or starting
            SparkEngine._open += 1
        self._closed = False
        context = self.session.sparkContext
        if not starting and context.master != config.master:
            log.warning("spark session reused master=%s configured=%s", context.master, config.master)
        # Python workers (ingestion) run this interpreter unless configured: PySpark's default,
        # a bare "python3" on PATH, rarely has pyarrow and Provender.
        if "spark.pyspark.python" in conf:
            context.pythonExec = conf["spark.pyspark.python"]
        elif context.pythonExec == "python3":
            context.pythonExec = sys.executable
        self._jobs: weakref.WeakSet[SparkRetrievalJob] = weakref.WeakSet()
        log.info("spark session master=%s app=%s", context.master, context.applicationId)

    @classmethod
    def from_options(cls, options: Mapping[str, object], *, base_dir: Path) -> Self:
        """Build the engine (starting or joining the process's Spark session) from ``offline:``."""
        config = validate_backend_config(SparkConfig, "offline", options)
        assert isinstance(config, SparkConfig)
        return cls(config, base_dir=base_dir)

    @property
    def application_id(self) -> str:
        """The Spark application id (as the cluster's master shows it)."""
        return str(self.session.sparkContext.applicationId)

    def close(self) -> None:
        """Delete this engine's staged results; the last engine open stops the session engines started."""
        for job in list(self._jobs):
            job.close()
        with SparkEngine._lock:
            if self._closed:
                return
            self._closed = True
            SparkEngine._open -= 1
            if SparkEngine._open == 0 and SparkEngine._started:
                SparkEngine._started = False
                self.session.stop()

    # -- retrieval -----------------------------------------------------------------------------

    def retrieve(self, plan: RetrievalPlan, entity_rows: EntityRows) -> SparkRetrievalJob:
        """Check the sources, stage the entity rows and start the Spark job computing ``plan``."""
        job_dir = self.staging.new_dir("retrieval")
        try:
            entities, (earliest, latest) = self._entity_frame(plan, entity_rows, job_dir)
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
        result = compile_retrieval(plan, entities, sources, passthrough=not staged)
        job = SparkRetrievalJob(
            self.session,
            result,
            staging=self.staging,
            job_dir=job_dir,
            schema=result_schema(plan, entity_rows),
            entity_table=entity_rows.table,
        )
        self._jobs.add(job)
        return job

    def _entity_frame(
        self, plan: RetrievalPlan, rows: EntityRows, job_dir: str
    ) -> tuple[DataFrame, tuple[datetime | None, datetime | None]]:
        """The entity rows with ``_ORDER``, ``_TS``/``_TS_CEIL`` and ``__key_<entity>``; their time range."""
        keys = {e.name: e for join in plan.joins for e in join.entities}
        if rows.table is not None:
            times = arrow_time_range(rows.table.column(ENTITY_TIMESTAMP))
            columns = {ROW_ID: pa.array(np.arange(rows.table.num_rows, dtype=np.int64))}
            columns |= {name: rows.table.column(name).cast(e.value_type.to_arrow()) for name, e in keys.items()}
            stamps = rows.table.column(ENTITY_TIMESTAMP)
            stamps = stamps.cast(STAMP) if pa.types.is_null(stamps.type) else stamps  # an empty, untyped frame
            staged = pa.table(columns | {ENTITY_TIMESTAMP: stamps})
            pq.write_table(staged, f"{self.staging.arrow_path(job_dir)}/entities.parquet", filesystem=self.staging.fs)
            view = staged.schema
            frame = self._reader(view, view.names).parquet(self.staging.spark_path(f"{job_dir}/entities.parquet"))
            columns_and_order = [F.col("*"), F.col(ROW_ID).alias(_ORDER)]
        else:
            view = spark_view(rows.schema, rows.paths[0] if rows.paths else None)
            frame = self._reader(view, view.names).parquet(*rows.paths)
            order = F.struct(F.col("_metadata.file_path"), F.col("_metadata.row_index"))
            columns_and_order = [*(col(c) for c in rows.schema.names), order.alias(_ORDER)]
            times = None
        floor, ceil = _timestamps(col(ENTITY_TIMESTAMP), view.field(ENTITY_TIMESTAMP).type)
        frame = frame.select(
            *columns_and_order,
            floor.alias(_TS),
            ceil.alias(_TS_CEIL),
            *(col(n).cast(spark_type(e.value_type)).alias(f"__key_{n}") for n, e in keys.items()),
        )
        return frame, times if times is not None else self._spark_time_range(frame)

    def _spark_time_range(self, frame: DataFrame) -> tuple[datetime | None, datetime | None]:
        missing = F.col(_TS).isNull()
        agg = frame.agg(F.min(_TS), F.max(_TS), F.count_if(missing), F.min(F.when(missing, F.col(_ORDER))))
        group = f"provender-{uuid.uuid4().hex[:12]}"
        row = run_in_group(self.session, group, "reading the entity rows", agg.first)
        assert row is not None
        if row[2]:  # name the first such row by its position across the files, as DuckDB does
            first = frame.where(
                F.col(_ORDER)
                < F.struct(F.lit(row[3][0]).alias("file_path"), F.lit(row[3][1]).cast("bigint").alias("row_index"))
            )
            raise null_entity_times_error(
                int(row[2]), f"row {run_in_group(self.session, group, 'counting', first.count)}"
            )
        return _aware(row[0]), _aware(row[1])

    def _reader(self, view: pa.Schema, names: Iterable[str] | None) -> DataFrameReader:
        """A reader given the columns' types (Spark then infers nothing), when Spark can read them all."""
        fields = [(name, read_type(view.field(name).type)) for name in names or ()]
        if names is None or any(kind is None for _, kind in fields):
            return self.session.read
        return self.session.read.schema(", ".join(f"{_quote(name)} {kind}" for name, kind in fields))

    def _source_frame(
        self, join: TableJoin, dates: DateRange, *, lower: datetime | None, upper: datetime | None
    ) -> DataFrame:
        """The table's rows that can be candidates: keys and features (named as the table's), times."""
        columns = join.columns
        files = list_table_files(join.name, join.source, base_dir=self.base_dir, dates=dates)
        if not files:  # every date partition was pruned: no row can be a candidate
            fields = [f"{_quote(e.name)} {spark_type(e.value_type)}" for e in join.entities]
            fields += [f"{_quote(f.name)} {spark_type(f.value_type)}" for f in join.features]
            return self.session.createDataFrame(
                [], ", ".join([*fields, f"{_EVENT} timestamp", f"{_CREATED} timestamp"])
            )
        frame, view = self._read_source(join, files)
        wanted = {f.name for f in join.features}
        select = [_as(c, view, e.value_type).alias(e.name) for c, e in zip(columns.keys, join.entities, strict=True)]
        select += [
            _as(c, view, f.value_type).alias(f.name)
            for c, f in zip(columns.features, join.table.features, strict=True)
            if f.name in wanted
        ]
        select.append(_as(columns.event_timestamp, view, ValueType.UNIX_TIMESTAMP).alias(_EVENT))
        created = columns.created_timestamp
        select.append(
            (_as(created, view, ValueType.UNIX_TIMESTAMP) if created else F.lit(None).cast("timestamp")).alias(_CREATED)
        )
        where = F.col(_EVENT).isNotNull()
        for key in join.join_keys:  # a null key matches nothing
            where &= col(key).isNotNull()
        if upper is not None:
            where &= F.col(_EVENT) <= _timestamp_literal(upper)
        if lower is not None:
            where &= F.col(_EVENT) >= _timestamp_literal(lower)
        return frame.select(*select).where(where)

    def _read_source(self, join: TableJoin, files: list[str]) -> tuple[DataFrame, pa.Schema]:
        """Check the source's schema (read on the driver) and return its frame and Spark's view of it."""
        fmt, root = join.source.file_format, local_dir(join.source.path, base_dir=self.base_dir)
        try:
            view, uniform = source_schema(join, files, root)
            c = join.columns
            needed = {*c.keys, *c.features, c.event_timestamp, *([c.created_timestamp] if c.created_timestamp else [])}
            if isinstance(fmt, CsvFormat):  # all text, cast afterwards, as the header names them
                partitions = partition_names(files, root)
                view = pa.schema([pa.field(name, pa.string()) for name in view.names])
                reader = self._reader(view, [n for n in view.names if n not in partitions] if uniform else None)
                reader = reader.options(header=True, sep=fmt.delimiter, enforceSchema=False)
            else:
                reader = self._reader(view, [n for n in view.names if n in needed] if uniform else None)
            if root is not None:
                reader = reader.option("basePath", root.as_uri())  # hive partition columns, as DuckDB reads them
            frame = reader.csv(files) if isinstance(fmt, CsvFormat) else reader.parquet(*files)
        except (OSError, pa.ArrowException, PySparkException, Py4JError) as exc:
            message = spark_message(exc) if isinstance(exc, PySparkException | Py4JError) else str(exc)
            raise DataError(
                f"Cannot read the batch source of feature table {join.name!r} ({join.source.path}): {message}"
            ) from exc
        return frame, view

    # -- ingestion -----------------------------------------------------------------------------

    def _latest_frame(self, plan: LatestPlan) -> DataFrame:
        source = self._source_frame(
            plan.join, DateRange.for_interval(plan.start, plan.end), lower=plan.start, upper=None
        )
        return compile_latest(plan, source)

    def read_latest(self, plan: LatestPlan, *, batch_rows: int) -> pa.RecordBatchReader:
        """Stream the latest row per entity key in ``[start, end)`` through the driver.

        Spark writes the rows under ``staging_path``; the reader streams those files and deletes
        them when done. :meth:`ingest_to_online` keeps the rows off the driver altogether.
        """
        frame = self._latest_frame(plan)
        job_dir = self.staging.new_dir("latest")
        group, what = f"provender-{job_dir}", f"ingestion of feature table {plan.join.name!r}"
        try:
            run_in_group(
                self.session, group, what, lambda: frame.write.parquet(self.staging.spark_path(f"{job_dir}/rows"))
            )
        except BaseException:
            self.staging.remove(job_dir)
            raise
        schema = latest_schema(plan.join)

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                yield from self.staging.read(f"{job_dir}/rows", schema, batch_rows=batch_rows)
            finally:
                self.staging.remove(job_dir)

        return pa.RecordBatchReader.from_batches(schema, batches())

    def ingest_to_online(
        self, plan: LatestPlan, *, online_options: Mapping[str, object], project: str, job: IngestionJob
    ) -> None:
        """Write the latest row per entity key in ``[start, end)`` to the online store, from the executors.

        Each partition opens the store from ``online_options`` on its executor and writes its
        rows in Arrow batches under the store's event-time guard, reading the next batch while
        it writes one. Only per-partition counts reach the driver (``job.rows_read``,
        ``job.rows_written``). Runs in the calling thread; ``job.cancel()`` cancels the Spark job.

        Raises:
            ConfigError: a store the executors cannot share (SQLite, a local file; memory).
            JobCancelledError: the job was cancelled.
            DataError, BackendError: Spark's or the store's error, with its message.
        """
        name = str(online_options.get("store", "sqlite"))
        store_cls = cast("type[OnlineStore]", load_backend(Role.ONLINE_STORE, name))
        store = store_cls.from_options(online_options, base_dir=self.base_dir, project=project)  # validates options
        reachable = store.capabilities.reachable_from_executors
        store.close()
        if not reachable:
            raise ConfigError(
                "online.store",
                f"the Spark engine writes from its executors, which cannot reach a {name!r} online store "
                "(one local file or process); use `online: {store: redis, url: ...}`, or the DuckDB engine.",
            )
        writer = PartitionWriter(
            store=name,
            options=dict(online_options),
            base_dir=str(self.base_dir),
            project=project,
            table_json=codec.to_json(plan.join.table),
            schema=latest_schema(plan.join),
        )
        counts = self._latest_frame(plan).mapInArrow(writer, "rows_read long, rows_written long")
        total = counts.agg(F.sum("rows_read"), F.sum("rows_written"))
        group, done = f"provender-ingest-{job.id}", threading.Event()
        log.info("spark ingestion table=%s app=%s group=%s", plan.join.name, self.application_id, group)

        def watch() -> None:  # cancels until the job ends: a job submitted after a cancel is not yet in the group
            while not done.wait(0.1):
                if job.is_cancelled:
                    self.session.sparkContext.cancelJobGroup(group)

        InheritableThread(target=watch, daemon=True).start()
        try:
            row = run_in_group(self.session, group, f"ingestion of feature table {plan.join.name!r}", total.first)
        except ProvenderError as exc:
            if job.is_cancelled:
                raise JobCancelledError(f"job {job.id} was cancelled: {exc}") from exc
            raise
        finally:
            done.set()
        assert row is not None
        job.rows_read, job.rows_written = int(row[0] or 0), int(row[1] or 0)


# -- compiling the plan ------------------------------------------------------------------------


def compile_retrieval(
    plan: RetrievalPlan, entities: DataFrame, sources: list[DataFrame], *, passthrough: bool
) -> DataFrame:
    """Compile the retrieval plan to one DataFrame, sorted in the entity rows' order.

    Args:
        entities: the entity rows with ``_ORDER``, ``_TS``/``_TS_CEIL`` (T rounded down/up) and
            ``__key_<entity>`` (keys cast to their declared types).
        sources: per join, the rows of :meth:`SparkEngine._source_frame`.
        passthrough: keep every entity column; else only the row id (to stitch the entity
            rows back in on the driver) and ``event_timestamp``.
    """
    current = entities
    for join, source in zip(plan.joins, sources, strict=True):
        keys = [f"__provender_k{n}" for n in range(len(join.join_keys))]
        entity_side = current.select(
            *(col(f"__key_{k}").alias(alias) for k, alias in zip(join.join_keys, keys, strict=True)),
            F.col(_TS).alias(_AT),
            F.lit(1).alias(_IS_ENTITY),
            F.struct(*(col(c) for c in current.columns)).alias(_ROW),
        )
        values = F.struct(*(col(f.name) for f in join.features)).alias(_VALUES)
        feature_side = source.select(
            *(col(k).alias(alias) for k, alias in zip(join.join_keys, keys, strict=True)),
            F.col(_EVENT).alias(_AT),
            F.lit(0).alias(_IS_ENTITY),
            F.struct(F.col(_EVENT), F.col(_CREATED), values).alias(_VERSION),
        )
        # A key's rows by time, feature rows before entity rows at equal times (event <= T):
        # the running max of the ranking key at an entity row is the rule's winner.
        window = Window.partitionBy(*keys).orderBy(_AT, _IS_ENTITY).rowsBetween(Window.unboundedPreceding, 0)
        won = entity_side.unionByName(feature_side, allowMissingColumns=True).select(  # missing sides are null
            _IS_ENTITY, _ROW, F.max(_VERSION).over(window).alias(_VERSION)
        )
        picked = F.col(_VERSION).isNotNull()
        if join.max_age is not None:
            age = min(join.max_age // timedelta(microseconds=1), _NO_BOUND)
            bound = F.unix_micros(F.col(f"{_ROW}.{_TS_CEIL}")) - F.lit(age)
            picked &= F.unix_micros(F.col(f"{_VERSION}.{_EVENT}")) >= bound
        picks = [F.when(picked, F.col(_VERSION)[_VALUES][f.name]).alias(join.output_column(f)) for f in join.features]
        current = won.where(F.col(_IS_ENTITY) == 1).select(f"{_ROW}.*", *picks)
    stamp = F.col(_TS).alias(ENTITY_TIMESTAMP)
    if passthrough:
        select = [stamp if c == ENTITY_TIMESTAMP else col(c) for c in plan.entity_columns]
    else:
        select = [col(ROW_ID), stamp]
    result = current.select(*select, *(col(c) for c in plan.output_columns), F.col(_ORDER))
    return result.orderBy(_ORDER).drop(_ORDER)


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
    """Return ``column`` (Arrow type ``found`` as Spark reads it) as a timestamp, rounded down and up.

    Nanosecond Parquet columns arrive as integers (``nanosAsLong``); everything else (dates,
    naive or aware timestamps, text) casts, naive values being UTC.
    """
    if pa.types.is_timestamp(found) and found.unit == "ns":
        micros = column.cast("decimal(20,0)") / F.lit(1000)
        return F.timestamp_micros(F.floor(micros).cast("bigint")), F.timestamp_micros(F.ceil(micros).cast("bigint"))
    stamp = column.cast("timestamp")
    return stamp, stamp


def _as(name: str, view: pa.Schema, value_type: ValueType) -> Column:
    """Source column ``name`` as ``value_type`` (timestamps rounded down)."""
    if value_type is ValueType.UNIX_TIMESTAMP:
        return _timestamps(col(name), view.field(name).type)[0]
    return col(name).cast(spark_type(value_type))


def _timestamp_literal(at: datetime) -> Column:
    aware = at if at.tzinfo else at.replace(tzinfo=UTC)
    return F.timestamp_micros(F.lit((aware - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)))


def _aware(at: datetime | None) -> datetime | None:
    """A timestamp collected from the UTC session, as an aware UTC datetime."""
    if at is None:
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
