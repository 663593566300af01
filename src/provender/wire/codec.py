"""Values on the wire: JSON for HTTP, typed protobuf columns for gRPC, both ways.

Both encodings give back exactly the Python values an in-process read returns, which is what
``Client(serving_url=...)`` relies on.

JSON (``POST /v1/online-features``), per the registry's ``ValueType``:

* numbers, strings, booleans and null as themselves; a NaN or infinite FLOAT/DOUBLE as the
  strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (JSON has no such numbers);
* BYTES as base64 strings (also for BYTES entity keys in requests);
* UNIX_TIMESTAMP as RFC 3339 strings in UTC (``2026-01-01T00:00:00+00:00``);
* lists element by element.

gRPC: a :class:`~provender.wire._proto.serving_pb2.Column` holds one typed array (int64,
double, string, bytes, bool, timestamp microseconds, or one nested column per row for lists)
plus the indexes of its null rows, so a column is converted with one C-level ``extend``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import itertools
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from provender.definitions import ValueType
from provender.errors import DataError
from provender.wire._proto import serving_pb2 as pb

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
FLOAT_TYPES = frozenset({ValueType.FLOAT, ValueType.DOUBLE, ValueType.FLOAT_LIST, ValueType.DOUBLE_LIST})

# -- JSON ------------------------------------------------------------------------------------------


def json_default(value: object) -> object:
    """``orjson`` fallback: bytes become base64 strings."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _finite_or_name(value: object) -> object:
    if type(value) is float and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if type(value) is list:
        return [_finite_or_name(item) for item in value]
    return value


_is_not_none = functools.partial(operator.is_not, None)


def name_non_finite(columns: dict[str, list[object]], float_columns: Sequence[str]) -> None:
    """Replace NaN and infinities in ``float_columns`` by their JSON names, in place."""
    isfinite = math.isfinite
    values_of = [columns[name] for name in float_columns if name in columns]
    try:
        # The common case, checked at C speed: a finite sum means every value is finite.
        if isfinite(math.fsum(filter(_is_not_none, itertools.chain.from_iterable(values_of)))):  # type: ignore[arg-type]
            return
    except (TypeError, OverflowError):
        pass  # list values, or huge ones: look value by value
    for name in float_columns:
        values = columns.get(name)
        if values is None:
            continue
        for index, value in enumerate(values):
            if value is None:
                continue
            if type(value) is float:
                if not isfinite(value):
                    values[index] = _finite_or_name(value)
            elif type(value) is list:
                values[index] = _finite_or_name(value)


def from_json_value(value: object, value_type: ValueType) -> object:
    """Return the Python value of a JSON value of ``value_type`` (the inverse of the encoding).

    Raises:
        DataError: a BYTES value that is not base64, or a timestamp that is not RFC 3339.
    """
    if value is None:
        return None
    if value_type.is_list:
        if not isinstance(value, list):
            raise DataError(f"expected a list for a {value_type} value, got {value!r}")
        element = value_type.element
        return [from_json_value(item, element) for item in value]
    if value_type is ValueType.BYTES:
        return decode_base64(value)
    if value_type is ValueType.UNIX_TIMESTAMP:
        if not isinstance(value, str):
            raise DataError(f"expected an RFC 3339 string for a UNIX_TIMESTAMP value, got {value!r}")
        try:
            return datetime.fromisoformat(value).astimezone(UTC)
        except ValueError:
            raise DataError(f"{value!r} is not an RFC 3339 timestamp") from None
    if value_type in (ValueType.FLOAT, ValueType.DOUBLE) and isinstance(value, str):
        return _NON_FINITE.get(value, value)
    return value


def decode_base64(value: object) -> object:
    """Return the bytes of a base64 string; any other value is returned as it is.

    Raises:
        DataError: a string that is not base64.
    """
    if not isinstance(value, str):
        return value
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise DataError(f"{value!r} is not base64 (BYTES values travel as base64 strings)") from None


# -- protobuf columns -----------------------------------------------------------------------------


def _to_micros(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MICROSECOND


def _from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


# ValueType of scalars -> (Column field, placeholder for nulls, conversion of each value or None)
_SCALARS: dict[ValueType, tuple[str, object, Callable[[Any], object] | None]] = {
    ValueType.BOOL: ("bool_values", False, None),
    ValueType.INT32: ("int64_values", 0, None),
    ValueType.INT64: ("int64_values", 0, None),
    ValueType.FLOAT: ("double_values", 0.0, None),
    ValueType.DOUBLE: ("double_values", 0.0, None),
    ValueType.STRING: ("string_values", "", None),
    ValueType.BYTES: ("bytes_values", b"", None),
    ValueType.UNIX_TIMESTAMP: ("unix_timestamp_us_values", 0, _to_micros),
}
_FROM_FIELD: dict[str, Callable[[int], object] | None] = {
    "bool_values": None,
    "int64_values": None,
    "double_values": None,
    "string_values": None,
    "bytes_values": None,
    "unix_timestamp_us_values": _from_micros,
}


def fill_column(column: pb.Column, values: Sequence[object], value_type: ValueType) -> None:
    """Write ``values`` (of ``value_type``, None for null) into ``column``'s typed array.

    Raises:
        DataError: a value is not of ``value_type``.
    """
    nulls = [index for index, value in enumerate(values) if value is None] if None in values else []
    if value_type.is_list:
        lists = column.list_values.lists
        element = value_type.element
        for value in values:
            item = lists.add()
            if value is not None:
                fill_column(item, value, element)  # type: ignore[arg-type]
    else:
        field, placeholder, convert = _SCALARS[value_type]
        if convert is not None:
            values = [placeholder if value is None else convert(value) for value in values]
        elif nulls:
            values = [placeholder if value is None else value for value in values]
        try:
            getattr(column, field).values.extend(values)
        except (TypeError, ValueError) as exc:
            raise DataError(f"column {column.name!r}: a value is not a {value_type}: {exc}") from None
    if nulls:
        column.null_rows.extend(nulls)


def column_length(column: pb.Column) -> int:
    """Return the number of values (rows) of a column without decoding them."""
    field = column.WhichOneof("values")
    if field is None:
        return 0
    if field == "list_values":
        return len(column.list_values.lists)
    return len(getattr(column, field).values)


def read_column(column: pb.Column) -> list[object]:
    """Return the Python values of a column (None for its null rows).

    Raises:
        DataError: a value cannot be converted (e.g. a timestamp beyond year 9999).
    """
    field = column.WhichOneof("values")
    if field is None:
        values: list[object] = []
    elif field == "list_values":
        values = [read_column(item) for item in column.list_values.lists]
    else:
        values = list(getattr(column, field).values)
        convert = _FROM_FIELD[field]
        if convert is not None:
            try:
                values = [convert(value) for value in values]  # type: ignore[arg-type]
            except (OverflowError, ValueError, OSError) as exc:
                raise DataError(
                    f"Column {column.name[:100]!r} holds a value out of range for {field}: {str(exc)[:200]}."
                ) from None
    for index in column.null_rows:
        if index < len(values):
            values[index] = None
    return values


def infer_value_type(name: str, values: Sequence[object]) -> ValueType:
    """Return the type of a column of plain Python values (for entity columns sent by the SDK).

    Raises:
        DataError: the values mix types, or have a type no column can hold.
    """
    found: ValueType | None = None
    for value in values:
        if value is None:
            continue
        if isinstance(value, bool):
            kind = ValueType.BOOL
        elif hasattr(value, "__index__"):
            kind = ValueType.INT64
        elif isinstance(value, float):
            kind = ValueType.DOUBLE
        elif isinstance(value, str):
            kind = ValueType.STRING
        elif isinstance(value, bytes | bytearray | memoryview):
            kind = ValueType.BYTES
        elif isinstance(value, datetime):
            kind = ValueType.UNIX_TIMESTAMP
        else:
            raise DataError(
                f"entity_rows column {name!r} holds a {type(value).__name__}, which cannot be sent to the "
                "serving service; use int, float, str, bytes, bool or datetime."
            )
        if found is None:
            found = kind
        elif found is not kind:
            raise DataError(f"entity_rows column {name!r} mixes {found} and {kind} values.")
    return ValueType.INT64 if found is None else found


def prepare_values(values: Sequence[object], value_type: ValueType) -> list[object]:
    """Return ``values`` as the exact Python types :func:`fill_column` stores (ints from numpy, bytes)."""
    if value_type is ValueType.INT64:
        return [None if value is None else value.__index__() for value in values]  # type: ignore[attr-defined]
    if value_type is ValueType.BYTES:
        return [None if value is None else bytes(value) for value in values]  # type: ignore[call-overload]
    if value_type is ValueType.DOUBLE:
        return [None if value is None else float(value) for value in values]  # type: ignore[arg-type]
    return list(values)


def columns_of_rows(rows: Sequence[Mapping[str, object]]) -> dict[str, list[object]]:
    """Turn entity rows into columns over every key any row has (first-seen order; missing: None)."""
    names: dict[str, None] = {}
    for row in rows:
        if not isinstance(row, Mapping):
            raise DataError(f"entity_rows holds a {type(row).__name__}, not a mapping of entity names to values.")
        for name in row:
            names.setdefault(name, None)
    return {name: [row.get(name) for row in rows] for name in names}
