"""Column expressions the Spark engine's frames share: exact names, declared types, timestamps.

The session runs in UTC; naive times are UTC; nanosecond columns arrive as integers and are
rounded down (``T`` up, for the ``max_age`` bound), as the DuckDB engine does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
from pyspark.sql import Column
from pyspark.sql import functions as F

from provender.definitions import ValueType

ORDER = "__provender_order"  # the entity rows' order (row id, or file and row of a Parquet source)
TS = "__provender_ts"  # T, nanoseconds rounded down
TS_CEIL = "__provender_ts_ceil"  # T, nanoseconds rounded up (the max_age bound)
EVENT = "__provender_event_ts"
CREATED = "__provender_created_ts"

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


def spark_type(value_type: ValueType) -> str:
    """Return the Spark SQL type of ``value_type``."""
    if value_type.is_list:
        return f"array<{_SPARK_TYPES[value_type.element]}>"
    return _SPARK_TYPES[value_type]


def col(name: str) -> Column:
    """Return a column by its exact name (dots and backticks are not special)."""
    return F.col(quote(name))


def quote(name: str) -> str:
    """``name`` quoted for Spark SQL."""
    return "`" + name.replace("`", "``") + "`"


def timestamps(column: Column, found: pa.DataType) -> tuple[Column, Column]:
    """Return ``column`` (Arrow type ``found`` as Spark reads it) as a timestamp, rounded down and up.

    Nanosecond Parquet columns arrive as integers (``nanosAsLong``); everything else (dates,
    naive or aware timestamps, text) casts, naive values being UTC.
    """
    if pa.types.is_timestamp(found) and found.unit == "ns":
        micros = column.cast("decimal(20,0)") / F.lit(1000)
        return F.timestamp_micros(F.floor(micros).cast("bigint")), F.timestamp_micros(F.ceil(micros).cast("bigint"))
    stamp = column.cast("timestamp")
    return stamp, stamp


def as_type(name: str, view: pa.Schema, value_type: ValueType) -> Column:
    """Source column ``name`` as ``value_type`` (timestamps rounded down)."""
    if value_type is ValueType.UNIX_TIMESTAMP:
        return timestamps(col(name), view.field(name).type)[0]
    return col(name).cast(spark_type(value_type))


def timestamp_literal(at: datetime) -> Column:
    """``at`` (naive means UTC) as a Spark timestamp literal, to the microsecond."""
    aware = at if at.tzinfo else at.replace(tzinfo=UTC)
    return F.timestamp_micros(F.lit((aware - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)))


def aware(at: datetime | None) -> datetime | None:
    """A timestamp collected from the UTC session, as an aware UTC datetime."""
    if at is None:
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
