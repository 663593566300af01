"""What the Spark engine reads: sources' schemas, on the driver, and the schemas it returns.

Sources' schemas are read on the driver with Arrow (a footer or a CSV header per local file)
and handed to Spark, which then runs no schema-inference job.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from provender.definitions import CsvFormat, FileSource, ValueType
from provender.definitions.request import row_schema
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

STAMP = pa.timestamp("us", tz="UTC")
"""How timestamps are compared and returned: UTC microseconds."""
ROW_ID = "__provender_row_id"
"""The entity rows' position, staged with them and kept in the result to stitch them back."""

# How Spark's Parquet reader sees Arrow types (unsigned integers widen; see read_type).
_READ_TYPES = {
    pa.bool_(): "boolean", pa.int8(): "tinyint", pa.int16(): "smallint", pa.int32(): "int", pa.int64(): "bigint",
    pa.uint8(): "smallint", pa.uint16(): "int", pa.uint32(): "bigint", pa.uint64(): "decimal(20,0)",
    pa.float32(): "float", pa.float64(): "double", pa.string(): "string", pa.large_string(): "string",
    pa.binary(): "binary", pa.large_binary(): "binary", pa.date32(): "date",
}  # fmt: skip


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
    assert isinstance(join.source, FileSource)  # DeltaSource is refused before
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
    features = zip(c.features, join.table.source_features, strict=True)
    return stamps | {name for name, f in features if f.value_type is ValueType.UNIX_TIMESTAMP}


def _arrow_format(join: TableJoin) -> ds.CsvFileFormat:
    """CSV as DuckDB reads it for the check: declared types for keys and features, timestamps typed.

    Timestamp columns are read as text here (naive and offset values may mix) and declared
    timestamps by :func:`source_schema`; Spark casts them, failing on a bad value.
    """
    assert isinstance(join.source, FileSource)
    assert isinstance(join.source.file_format, CsvFormat)
    c = join.columns
    declared = {col: e.value_type for col, e in zip(c.keys, join.entities, strict=True)}
    declared |= {col: f.value_type for col, f in zip(c.features, join.table.source_features, strict=True)}
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
    """The normalized rows the online store writes (:func:`~provender.definitions.request.row_schema`)."""
    return row_schema(join.table, {entity.name: entity.value_type for entity in join.entities})


def events_schema(join: TableJoin) -> pa.Schema:
    """The events that rebuild a table's tiles: keys, the aggregations' inputs, event and created times (UTC)."""
    declared = {f.name: f.value_type for f in join.table.source_features}
    inputs = dict.fromkeys(a.column for a in join.table.aggregations)
    return pa.schema(
        [
            *(pa.field(e.name, e.value_type.to_arrow()) for e in join.entities),
            *(pa.field(c, declared[c].to_arrow()) for c in inputs),
            pa.field(EVENT_TIMESTAMP, STAMP),
            pa.field(CREATED_TIMESTAMP, STAMP),
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
