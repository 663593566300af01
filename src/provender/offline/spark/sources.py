"""Reading sources into Spark frames: the entity rows (staged or read in place) and feature tables.

Entity rows from pandas/Arrow are staged as Parquet (row id, keys, ``event_timestamp``); their
other columns stay on the driver and are put back beside the result. Parquet entity sources
are read in place, ordered by file and row. Sources' schemas are read on the driver (a footer
or a CSV header) and given to Spark, which then starts no schema-inference job.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from py4j.protocol import Py4JError  # type: ignore[import-untyped]
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, DataFrameReader, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_schema

from provender.config import StorageSection
from provender.definitions import CsvFormat, FileSource, SqlSource, ValueType
from provender.definitions.sql import transpile
from provender.errors import DataError
from provender.offline.arrow_source import open_arrow_source, reads_through_arrow
from provender.offline.delta import time_window
from provender.offline.engine import EntityRows
from provender.offline.files import DateRange, list_table_files
from provender.offline.lineage import SourceInput, local_files
from provender.offline.plan import (
    ENTITY_TIMESTAMP,
    RetrievalPlan,
    TableJoin,
    check_source_schema,
    null_entity_times_error,
)
from provender.offline.spark.columns import (
    CREATED,
    EVENT,
    ORDER,
    TS,
    TS_CEIL,
    as_type,
    aware,
    col,
    quote,
    spark_type,
    timestamp_literal,
    timestamps,
)
from provender.offline.spark.failures import run_in_group, spark_message
from provender.offline.spark.schemas import (
    ROW_ID,
    STAMP,
    arrow_time_range,
    local_dir,
    partition_names,
    read_type,
    source_schema,
    spark_view,
)
from provender.offline.spark.staging import Staging
from provender.offline.sql_source import InputRead, ReadWindow, open_inputs, relation_names, result_columns


def entity_frame(
    session: SparkSession, plan: RetrievalPlan, rows: EntityRows, *, staging: Staging, job_dir: str
) -> tuple[DataFrame, tuple[datetime | None, datetime | None]]:
    """The entity rows with ``ORDER``, ``TS``/``TS_CEIL`` and ``__key_<entity>``; their time range."""
    keys = {e.name: e for join in plan.joins for e in join.entities}
    if rows.table is not None:
        times = arrow_time_range(rows.table.column(ENTITY_TIMESTAMP))
        columns = {ROW_ID: pa.array(np.arange(rows.table.num_rows, dtype=np.int64))}
        columns |= {name: rows.table.column(name).cast(e.value_type.to_arrow()) for name, e in keys.items()}
        stamps = rows.table.column(ENTITY_TIMESTAMP)
        stamps = stamps.cast(STAMP) if pa.types.is_null(stamps.type) else stamps  # an empty, untyped frame
        staged = pa.table(columns | {ENTITY_TIMESTAMP: stamps})
        pq.write_table(staged, f"{staging.arrow_path(job_dir)}/entities.parquet", filesystem=staging.fs)
        view = staged.schema
        frame = reader(session, view, view.names).parquet(staging.spark_path(f"{job_dir}/entities.parquet"))
        columns_and_order = [F.col("*"), F.col(ROW_ID).alias(ORDER)]
    else:
        view = spark_view(rows.schema, rows.paths[0] if rows.paths else None)
        frame = reader(session, view, view.names).parquet(*rows.paths)
        order = F.struct(F.col("_metadata.file_path"), F.col("_metadata.row_index"))
        columns_and_order = [*(col(c) for c in rows.schema.names), order.alias(ORDER)]
        times = None
    floor, ceil = timestamps(col(ENTITY_TIMESTAMP), view.field(ENTITY_TIMESTAMP).type)
    frame = frame.select(
        *columns_and_order,
        floor.alias(TS),
        ceil.alias(TS_CEIL),
        *(col(n).cast(spark_type(e.value_type)).alias(f"__key_{n}") for n, e in keys.items()),
    )
    return frame, times if times is not None else _spark_time_range(session, frame)


def _spark_time_range(session: SparkSession, frame: DataFrame) -> tuple[datetime | None, datetime | None]:
    missing = F.col(TS).isNull()
    agg = frame.agg(F.min(TS), F.max(TS), F.count_if(missing), F.min(F.when(missing, F.col(ORDER))))
    group = f"provender-{uuid.uuid4().hex[:12]}"
    row = run_in_group(session, group, "reading the entity rows", agg.first)
    assert row is not None
    if row[2]:  # name the first such row by its position across the files, as DuckDB does
        first = frame.where(
            F.col(ORDER)
            < F.struct(F.lit(row[3][0]).alias("file_path"), F.lit(row[3][1]).cast("bigint").alias("row_index"))
        )
        raise null_entity_times_error(int(row[2]), f"row {run_in_group(session, group, 'counting', first.count)}")
    return aware(row[0]), aware(row[1])


def reader(session: SparkSession, view: pa.Schema, names: Iterable[str] | None) -> DataFrameReader:
    """A reader given the columns' types (Spark then infers nothing), when Spark can read them all."""
    fields = [(name, read_type(view.field(name).type)) for name in names or ()]
    if names is None or any(kind is None for _, kind in fields):
        return session.read
    return session.read.schema(", ".join(f"{quote(name)} {kind}" for name, kind in fields))


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceContext:
    """What reading sources needs beyond the session.

    Attributes:
        base_dir: the project directory (relative source paths).
        storage: the object stores' settings, for ``s3://`` and ``gs://`` sources.
        staging: where Delta and object-store sources are staged as Parquet.
        stage_dir: the caller's directory under ``staging`` (it removes it when done).
        inputs: what was read, appended per source (the read's lineage).
    """

    base_dir: Path
    storage: StorageSection | None
    staging: Staging
    stage_dir: str
    inputs: list[SourceInput] = field(default_factory=list)


def source_frame(
    session: SparkSession,
    join: TableJoin,
    dates: DateRange,
    *,
    context: SourceContext,
    lower: datetime | None,
    upper: datetime | None,
) -> DataFrame:
    """The table's rows that can be candidates: keys and features (named as the table's), times.

    A Delta table or an object-store source is read on the driver through pyarrow (the same
    pruned files DuckDB reads) and staged as Parquet under ``context.stage_dir``; Spark reads
    the staged copy. Local files are read in place.
    """
    columns = join.columns
    if isinstance(join.source, SqlSource):
        files: list[str] = []
    elif reads_through_arrow(join):
        files, join = _stage(join, dates, context=context, lower=lower, upper=upper)
    else:
        assert isinstance(join.source, FileSource)
        files = list_table_files(join.name, join.source, base_dir=context.base_dir, dates=dates)
        context.inputs.append(SourceInput(table=join.name, path=join.source.path, files=local_files(files)))
    if isinstance(join.source, SqlSource):
        window = ReadWindow(dates=dates, lower=lower, upper=upper)
        frame, view = _sql_frame(session, join, join.source, context=context, window=window)
    elif not files:  # every date partition was pruned: no row can be a candidate
        fields = [f"{quote(e.name)} {spark_type(e.value_type)}" for e in join.entities]
        fields += [f"{quote(f.name)} {spark_type(f.value_type)}" for f in join.source_features]
        return session.createDataFrame([], ", ".join([*fields, f"{EVENT} timestamp", f"{CREATED} timestamp"]))
    else:
        frame, view = _read_source(session, join, files, base_dir=context.base_dir)
    wanted = {f.name for f in join.source_features}
    select = [as_type(c, view, e.value_type).alias(e.name) for c, e in zip(columns.keys, join.entities, strict=True)]
    select += [
        as_type(c, view, f.value_type).alias(f.name)
        for c, f in zip(columns.features, join.table.source_features, strict=True)
        if f.name in wanted
    ]
    select.append(as_type(columns.event_timestamp, view, ValueType.UNIX_TIMESTAMP).alias(EVENT))
    created = columns.created_timestamp
    select.append(
        (as_type(created, view, ValueType.UNIX_TIMESTAMP) if created else F.lit(None).cast("timestamp")).alias(CREATED)
    )
    where = F.col(EVENT).isNotNull()
    for key in join.join_keys:  # a null key matches nothing
        where &= col(key).isNotNull()
    if upper is not None:
        where &= F.col(EVENT) <= timestamp_literal(upper)
    if lower is not None:
        where &= F.col(EVENT) >= timestamp_literal(lower)
    return frame.select(*select).where(where)


def _sql_frame(
    session: SparkSession, join: TableJoin, source: SqlSource, *, context: SourceContext, window: ReadWindow
) -> tuple[DataFrame, pa.Schema]:
    """Run a SQL source's query (transpiled to Spark SQL) over temporary views of its inputs.

    Each input is read for the columns and event times the read needs
    (:func:`provender.offline.sql_source.open_inputs`); an object-store or Delta input is
    staged through pyarrow with that projection and time filter, so only those rows are copied.
    The views are named per read (so concurrent reads never share one); the query's result is
    checked like a file's schema, as Spark types it.
    """
    inputs = open_inputs(
        source,
        base_dir=context.base_dir,
        table=join.name,
        storage=context.storage,
        output=result_columns(join),
        window=window,
    )
    context.inputs.append(SourceInput(table=join.name, path=source.path, files=inputs.read))
    files = dict(inputs.files)
    for name, dataset in inputs.datasets.items():  # object-store and Delta inputs: staged through pyarrow
        staged = f"{context.stage_dir}/sql-{name}-{uuid.uuid4().hex[:8]}"
        how = inputs.reads.get(name, InputRead())
        rows = dataset.scanner(
            columns=None if how.columns is None else list(how.columns),
            filter=None
            if how.time_column is None
            else time_window(dataset.schema, how.time_column, window.lower, window.upper),
        )
        try:
            files[name] = _copy_to_staging(rows, staged, context)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(
                f"Cannot read input {name!r} of the SQL source of feature table {join.name!r}: {inputs.scrub(str(exc))}"
            ) from None
    suffix = uuid.uuid4().hex[:12]
    names = {name: f"{view}_{suffix}" for name, view in relation_names(source).items()}
    try:
        for name, input_source in source.sources.items():
            fmt = input_source.file_format if isinstance(input_source, FileSource) else None  # Delta: staged
            if isinstance(fmt, CsvFormat):
                read = session.read.options(header=True, sep=fmt.delimiter, inferSchema=True).csv(files[name])
            else:
                read = session.read.parquet(*files[name])
            read = _narrow(read, inputs.reads.get(name, InputRead()), window, staged=name in inputs.datasets)
            read.createOrReplaceTempView(names[name])
        frame = session.sql(transpile(inputs.query, source.dialect, to="spark", relations=names))
        view = to_arrow_schema(frame.schema, timezone="UTC")
    except (PySparkException, Py4JError) as exc:
        raise DataError(
            f"The SQL source of feature table {join.name!r} does not run on Spark: {spark_message(exc)}"
        ) from exc
    check_source_schema(join, view)
    return frame, view


def _narrow(read: DataFrame, how: InputRead, window: ReadWindow, *, staged: bool) -> DataFrame:
    """``read`` with only the planned columns, and (read in place) only the rows of the time window.

    The time filter is the engine's own: the column rounded down to microseconds, within the bounds.
    A staged input was filtered when it was copied.
    """
    if how.columns is not None:
        read = read.select(*(col(c) for c in how.columns))
    if how.time_column is None or staged or how.time_type is None:
        return read
    event = timestamps(col(how.time_column), how.time_type)[0]
    if window.lower is not None:
        read = read.where(event >= timestamp_literal(window.lower))
    if window.upper is not None:
        read = read.where(event <= timestamp_literal(window.upper))
    return read


def _stage(
    join: TableJoin, dates: DateRange, *, context: SourceContext, lower: datetime | None, upper: datetime | None
) -> tuple[list[str], TableJoin]:
    """Stage ``join``'s Delta or object-store source as local Parquet; the files and a join reading them.

    Only the columns the table maps are copied. The staged join's source is a plain Parquet
    ``FileSource`` with the same column names, so the schema checks and reads are the local ones.
    """
    opened = open_arrow_source(
        join, dates, base_dir=context.base_dir, storage=context.storage, lower=lower, upper=upper
    )
    context.inputs.append(opened.input)
    c = join.columns
    if opened.dataset is None:
        return [], join
    check_source_schema(join, opened.dataset.schema)  # before copying anything
    if not opened.dataset.files:
        return [], join
    name = f"{context.stage_dir}/source-{len(context.inputs)}"
    try:
        files = _copy_to_staging(opened.dataset.scanner(columns=result_columns(join)), name, context)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(
            f"Cannot read the batch source of feature table {join.name!r} ({join.source.path}): "
            f"{opened.scrub(str(exc))}"
        ) from None
    staged = FileSource(
        path=context.staging.arrow_path(name),
        event_timestamp_column=c.event_timestamp,
        created_timestamp_column=c.created_timestamp,
    )
    return files, replace(join, source=staged)


def _copy_to_staging(data: ds.Dataset | ds.Scanner, name: str, context: SourceContext) -> list[str]:
    """Write ``data`` as Parquet under the staging folder ``name``; return the files Spark reads.

    Raises:
        OSError, pyarrow.ArrowException: reading ``data`` or writing the copy failed (the caller
            names the source).
    """
    ds.write_dataset(
        data,
        context.staging.arrow_path(name),
        format="parquet",
        filesystem=context.staging.fs,
        basename_template="part-{i}.parquet",
        existing_data_behavior="overwrite_or_ignore",
    )
    files = context.staging.parquet_files(name)
    if not files:  # nothing was left to copy: one empty file keeps the columns for Spark
        schema = data.projected_schema if isinstance(data, ds.Scanner) else data.schema
        pq.write_table(
            schema.empty_table(), f"{context.staging.arrow_path(name)}/part-0.parquet", filesystem=context.staging.fs
        )
        files = context.staging.parquet_files(name)
    return files


def _read_source(
    session: SparkSession, join: TableJoin, files: list[str], *, base_dir: Path
) -> tuple[DataFrame, pa.Schema]:
    """Check the source's schema (read on the driver) and return its frame and Spark's view of it."""
    assert isinstance(join.source, FileSource)  # Delta sources are staged as Parquet first
    fmt, root = join.source.file_format, local_dir(join.source.path, base_dir=base_dir)
    try:
        view, uniform = source_schema(join, files, root)
        c = join.columns
        needed = {*c.keys, *c.features, c.event_timestamp, *([c.created_timestamp] if c.created_timestamp else [])}
        if isinstance(fmt, CsvFormat):  # all text, cast afterwards, as the header names them
            partitions = partition_names(files, root)
            view = pa.schema([pa.field(name, pa.string()) for name in view.names])
            read = reader(session, view, [n for n in view.names if n not in partitions] if uniform else None)
            read = read.options(header=True, sep=fmt.delimiter, enforceSchema=False)
        else:
            read = reader(session, view, [n for n in view.names if n in needed] if uniform else None)
        if root is not None:
            read = read.option("basePath", root.as_uri())  # hive partition columns, as DuckDB reads them
        frame = read.csv(files) if isinstance(fmt, CsvFormat) else read.parquet(*files)
    except (OSError, pa.ArrowException, PySparkException, Py4JError) as exc:
        message = spark_message(exc) if isinstance(exc, PySparkException | Py4JError) else str(exc)
        raise DataError(
            f"Cannot read the batch source of feature table {join.name!r} ({join.source.path}): {message}"
        ) from exc
    return frame, view
