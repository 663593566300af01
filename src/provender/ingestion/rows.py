"""Validating decoded stream records against a feature table and building normalized Arrow rows.

The rows have the shape every online store writes (``online/store.py``): one column per entity
and per feature, named as they are and typed ``ValueType.to_arrow()``, plus ``event_timestamp``
and ``created_timestamp`` (timestamp[us, UTC]). Message fields are found through the source's
``field_mapping`` (message field -> entity/feature name); the timestamps are the fields the
source names.

Each column is checked as a whole first (the Python types present, then one Arrow conversion),
so a clean batch costs a fraction of a microsecond per value; only a column with a bad value
is walked value by value to find the records at fault. A bad record is reported with a
:class:`DeadLetterReason` and left out of the rows; the others are kept.

Values accepted:

* INT32, INT64: integers in range (not booleans, not floats such as ``1.5``).
* FLOAT, DOUBLE: integers and floats.  BOOL: booleans.  STRING: strings.
* BYTES: bytes, or in JSON a base64 string.
* lists: lists whose elements are valid (nulls allowed).
* timestamps (the event and created times, UNIX_TIMESTAMP features): an ISO-8601 string (no
  zone means UTC), an Avro timestamp logical type, or a number of seconds, milliseconds,
  microseconds or nanoseconds since the Unix epoch. A number's unit is the Avro logical type's
  when it has one, else read from its magnitude: below 1e11 seconds, below 1e14 milliseconds,
  below 1e17 microseconds, else nanoseconds (unambiguous for instants after 1973-03-03).
  Instants must fall in years 1 to 9999.

A missing or null entity key or event time makes the record bad; a missing feature is null.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from provender.definitions import FeatureTable, KafkaSource, ValueType
from provender.definitions.request import CREATED_TIMESTAMP, EVENT_TIMESTAMP, TIMESTAMP_TYPE, row_schema
from provender.errors import DataError
from provender.ingestion.formats import ColumnRecords

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_MIN_US = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // _ONE_US
_MAX_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - _EPOCH) // _ONE_US
_UNIT_TO_US = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 1}
_NONE = type(None)
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError)


class DeadLetterReason(StrEnum):
    """Why a record went to the dead-letter topic (the ``provender.reason`` header)."""

    UNDECODABLE = "undecodable"
    MISSING_ENTITY_KEY = "missing_entity_key"
    WRONG_TYPE = "wrong_type"
    BAD_TIMESTAMP = "bad_timestamp"
    REJECTED_BY_STORE = "rejected_by_store"
    VIOLATED_EXPECTATION = "violated_expectation"


class Role(StrEnum):
    """What a column is to the feature table."""

    ENTITY = "entity"
    FEATURE = "feature"
    EVENT_TIMESTAMP = "event timestamp"
    CREATED_TIMESTAMP = "created timestamp"


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One normalized column and the message field it comes from."""

    column: str
    field: str
    value_type: ValueType
    role: Role

    @property
    def required(self) -> bool:
        """Whether a record without a value is bad (entity keys and the event time)."""
        return self.role in (Role.ENTITY, Role.EVENT_TIMESTAMP)


class RowError(NamedTuple):
    """Why one record was left out."""

    reason: DeadLetterReason
    message: str


class Built(NamedTuple):
    """Normalized rows of the good records, and the bad records' errors by record index."""

    rows: pa.Table
    errors: dict[int, RowError]


def column_specs(table: FeatureTable, source: KafkaSource, entity_types: Mapping[str, ValueType]) -> list[ColumnSpec]:
    """Return the normalized columns of ``table`` and their message fields (``field_mapping`` applied).

    Raises:
        DataError: an entity of the table is not in ``entity_types``.
    """
    to_field = {column: field for field, column in source.field_mapping.items()}
    specs = []
    for name in table.entities:
        if name not in entity_types:
            raise DataError(f"Feature table {table.name!r} uses entity {name!r}, which is not registered.")
        specs.append(ColumnSpec(name, to_field.get(name, name), entity_types[name], Role.ENTITY))
    # Aggregations are computed from the events (tiles), not read from messages.
    specs.extend(
        ColumnSpec(f.name, to_field.get(f.name, f.name), f.value_type, Role.FEATURE) for f in table.source_features
    )
    specs.append(
        ColumnSpec(EVENT_TIMESTAMP, source.event_timestamp_column, ValueType.UNIX_TIMESTAMP, Role.EVENT_TIMESTAMP)
    )
    if source.created_timestamp_column is not None:
        specs.append(
            ColumnSpec(
                CREATED_TIMESTAMP, source.created_timestamp_column, ValueType.UNIX_TIMESTAMP, Role.CREATED_TIMESTAMP
            )
        )
    return specs


class RowBuilder:
    """Turn decoded records into normalized rows of one feature table.

    Args:
        table: the feature table.
        source: its stream source (field names and mapping).
        entity_types: the value type of each registered entity.
        timestamp_units: unit of integer timestamp fields whose format states it (Avro logical
            types), by message field; other numbers are read by magnitude.
    """

    def __init__(
        self,
        table: FeatureTable,
        source: KafkaSource,
        entity_types: Mapping[str, ValueType],
        timestamp_units: Mapping[str, str] | None = None,
        *,
        trusted_fields: frozenset[str] = frozenset(),
    ) -> None:
        self.table = table
        self.specs = column_specs(table, source, entity_types)
        units = timestamp_units or {}
        self._units = {spec.field: units.get(spec.field) for spec in self.specs}
        self._converters: list[tuple[ColumnSpec, Callable[[list[Any]], tuple[pa.Array, dict[int, str]]]]] = [
            (spec, _converter(spec.value_type, units.get(spec.field), spec.required)) for spec in self.specs
        ]
        self.schema = row_schema(table, entity_types)
        # The specs' columns, in the same order (without the aggregations, null in the rows).
        derived = {a.name for a in table.aggregations}
        self._built_schema = pa.schema([f for f in self.schema if f.name not in derived])
        names = [spec.field for spec in self.specs]
        self._message_schema: pa.Schema | None = None
        if names and set(names) <= trusted_fields and len(set(names)) == len(names):
            self._message_schema = pa.schema([(spec.field, _message_type(spec.value_type)) for spec in self.specs])

    def build(self, records: Sequence[Mapping[str, Any]]) -> Built:
        """Validate ``records`` and return the good ones as rows, and why the others are bad."""
        if self._message_schema is not None and records:
            rows = self._build_trusted(records, self._message_schema)
            if rows is not None:
                return Built(rows, {})
        errors: dict[int, RowError] = {}
        arrays: list[pa.Array] = []
        for spec, convert in self._converters:
            field = spec.field
            array, bad = convert([record.get(field) for record in records])
            arrays.append(array)
            for index, problem in bad.items():
                if index not in errors:
                    errors[index] = RowError(_reason(spec, problem), f"field {field!r} ({spec.role}): {problem}")
        if len(arrays) < len(self._built_schema):
            arrays.append(pa.nulls(len(records), TIMESTAMP_TYPE))
        rows = self._complete(pa.Table.from_arrays(arrays, schema=self._built_schema))
        if errors:
            keep = np.ones(len(records), dtype=bool)
            keep[list(errors)] = False
            rows = rows.filter(pa.array(keep))
        return Built(rows, errors)

    def _build_trusted(self, records: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.Table | None:
        """Build rows in one Arrow conversion, for fields whose types the Avro schema guarantees.

        Returns None when some record needs a closer look (a null key or event time, a value out
        of range, a null or out-of-range timestamp); the caller then takes the general path.
        """
        if isinstance(records, ColumnRecords):
            columns = _typed_columns(records.batch, schema)
            if columns is None:
                return None
        else:
            try:
                columns = pa.RecordBatch.from_pylist(list(records), schema=schema).columns
            except _ARROW_ERRORS:
                return None
        arrays: list[pa.Array] = []
        for spec, column in zip(self.specs, columns, strict=True):
            if spec.required and column.null_count:
                return None
            if spec.value_type is ValueType.UNIX_TIMESTAMP:
                if column.null_count:
                    return None
                micros = _ints_to_micros(column.to_numpy(), self._units[spec.field])
                if micros is None:
                    return None
                arrays.append(pa.array(micros, type=TIMESTAMP_TYPE))
            else:
                arrays.append(column)
        if len(arrays) < len(self._built_schema):
            arrays.append(pa.nulls(len(records), TIMESTAMP_TYPE))
        return self._complete(pa.Table.from_arrays(arrays, schema=self._built_schema))

    def _complete(self, rows: pa.Table) -> pa.Table:
        """Add the aggregations' columns (null: their values come from tiles) in the schema's order."""
        if len(rows.schema) == len(self.schema):
            return rows
        arrays = [
            rows.column(f.name) if f.name in rows.column_names else pa.nulls(rows.num_rows, f.type) for f in self.schema
        ]
        return pa.Table.from_arrays(arrays, schema=self.schema)


# Decoded column type -> message field type conversions that equal converting the column's Python
# values (what RecordBatch.from_pylist does): widening and integer narrowing (refused out of range).
_EXACT_CASTS = frozenset(
    {
        (pa.int64(), pa.int32()),
        (pa.float32(), pa.float64()),
    }
)


def _typed_columns(batch: pa.RecordBatch, schema: pa.Schema) -> list[pa.Array] | None:
    """``schema``'s fields from decoded columns, as ``from_pylist`` of their records would give them.

    Returns None where ``from_pylist`` would fail (a value out of range).
    """
    columns = []
    for field in schema:
        column = batch.column(field.name)
        try:
            if column.type != field.type:
                if (column.type, field.type) in _EXACT_CASTS:
                    column = column.cast(field.type, safe=True)
                else:  # rare pairings (an Avro long for a FLOAT feature): through Python values, as before
                    column = pa.array(column.to_pylist(), type=field.type)
        except _ARROW_ERRORS:
            return None
        columns.append(column)
    return columns


def _message_type(value_type: ValueType) -> pa.DataType:
    """The Arrow type a trusted message field converts to (timestamps arrive as integers)."""
    return pa.int64() if value_type is ValueType.UNIX_TIMESTAMP else value_type.to_arrow()


_MISSING = "is missing"


def _reason(spec: ColumnSpec, problem: str) -> DeadLetterReason:
    if spec.role is Role.ENTITY and problem == _MISSING:
        return DeadLetterReason.MISSING_ENTITY_KEY
    if spec.value_type.element is ValueType.UNIX_TIMESTAMP:
        return DeadLetterReason.BAD_TIMESTAMP
    return DeadLetterReason.WRONG_TYPE


# -- column converters ---------------------------------------------------------------------------


_PY_TYPES: dict[ValueType, tuple[type, ...]] = {
    ValueType.BOOL: (bool,),
    ValueType.INT32: (int,),
    ValueType.INT64: (int,),
    ValueType.FLOAT: (int, float),
    ValueType.DOUBLE: (int, float),
    ValueType.STRING: (str,),
    ValueType.BYTES: (bytes,),
}
_INT_BOUNDS = {ValueType.INT32: (-(2**31), 2**31 - 1), ValueType.INT64: (-(2**63), 2**63 - 1)}
# Arrow converts an integer to a FLOAT or DOUBLE only within these (where every integer is exact).
_EXACT_INT_LIMITS = {ValueType.FLOAT: 2**24, ValueType.DOUBLE: 2**53}


def _converter(
    value_type: ValueType, unit: str | None, required: bool
) -> Callable[[list[Any]], tuple[pa.Array, dict[int, str]]]:
    element = value_type.element
    if value_type.is_list:
        if element is ValueType.UNIX_TIMESTAMP:
            return lambda values: _list_column(values, value_type, required, lambda v: _to_micros(v, unit))
        return lambda values: _list_column(values, value_type, required, lambda v: _scalar_value(v, element))
    if value_type is ValueType.UNIX_TIMESTAMP:
        return lambda values: _timestamp_column(values, unit, required)
    return lambda values: _scalar_column(values, value_type, required)


def _scalar_value(value: Any, value_type: ValueType) -> Any:
    """Return ``value`` as stored for ``value_type``; raise ValueError if it is not one."""
    if type(value) in _PY_TYPES[value_type]:
        bounds = _INT_BOUNDS.get(value_type)
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            raise ValueError(f"{value} is out of range for {value_type}")
        limit = _EXACT_INT_LIMITS.get(value_type)
        if limit is not None and type(value) is int and not -limit <= value <= limit:
            raise ValueError(f"the integer {value} is beyond +-{limit}, where {value_type} holds every integer exactly")
        return value
    if value_type is ValueType.BYTES and type(value) is str:
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error:
            raise ValueError(f"expected bytes or a base64 string, got {_show(value)}") from None
    raise ValueError(f"expected {value_type}, got {type(value).__name__} {_show(value)}")


def _scalar_column(values: list[Any], value_type: ValueType, required: bool) -> tuple[pa.Array, dict[int, str]]:
    arrow_type = value_type.to_arrow()
    allowed = set(_PY_TYPES[value_type])
    if not required:
        allowed.add(_NONE)
    if set(map(type, values)) <= allowed:
        try:
            return pa.array(values, type=arrow_type), {}
        except _ARROW_ERRORS:
            pass  # out of range somewhere: find it below
    clean, errors = _convert_each(values, lambda value: _scalar_value(value, value_type), required=required)
    return pa.array(clean, type=arrow_type), errors


def _list_column(
    values: list[Any], value_type: ValueType, required: bool, element: Callable[[Any], Any]
) -> tuple[pa.Array, dict[int, str]]:
    errors: dict[int, str] = {}
    clean: list[Any] = []
    for index, value in enumerate(values):
        if value is None:
            if required:
                errors[index] = _MISSING
            clean.append(None)
        elif type(value) is not list:
            errors[index] = f"expected a list ({value_type}), got {type(value).__name__} {_show(value)}"
            clean.append(None)
        else:
            try:
                clean.append([None if item is None else element(item) for item in value])
            except ValueError as exc:
                errors[index] = f"list element: {exc}"
                clean.append(None)
    if value_type.element is ValueType.UNIX_TIMESTAMP:
        return pa.array(clean, type=pa.list_(pa.int64())).cast(value_type.to_arrow()), errors
    return pa.array(clean, type=value_type.to_arrow()), errors


def _timestamp_column(values: list[Any], unit: str | None, required: bool) -> tuple[pa.Array, dict[int, str]]:
    kinds = set(map(type, values))
    if kinds == {int}:
        try:
            raw = np.array(values, dtype=np.int64)
        except OverflowError:
            pass
        else:
            micros = _ints_to_micros(raw, unit)
            if micros is not None:
                return pa.array(micros, type=TIMESTAMP_TYPE), {}
    clean, errors = _convert_each(values, lambda value: _to_micros(value, unit), required=required)
    return pa.array(clean, type=pa.int64()).cast(TIMESTAMP_TYPE), errors


def _ints_to_micros(raw: np.ndarray[Any, Any], unit: str | None) -> np.ndarray[Any, Any] | None:
    """Integers in ``unit`` (or by magnitude) as microseconds; None if one is out of range."""
    if not raw.size:
        return raw
    if raw.min() == np.iinfo(np.int64).min:
        return None  # its absolute value does not fit: leave it to the slow path
    if unit is None:
        # np.where computes every branch; the products it discards may wrap, the kept ones cannot.
        size = np.abs(raw)
        with np.errstate(over="ignore"):
            micros = np.where(
                size < 10**11,
                raw * 1_000_000,
                np.where(size < 10**14, raw * 1_000, np.where(size < 10**17, raw, raw // 1_000)),
            )
    elif unit == "ns":
        micros = raw // 1_000
    else:
        factor = _UNIT_TO_US[unit]
        if np.abs(raw).max() > _MAX_US // factor:
            return None
        micros = raw * factor
    if micros.min() < _MIN_US or micros.max() > _MAX_US:
        return None
    return micros


def _to_micros(value: Any, unit: str | None) -> int:
    """One timestamp value as microseconds since the epoch; ValueError if it is not one."""
    kind = type(value)
    if kind is datetime:
        at = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        micros: int = (at - _EPOCH) // _ONE_US
        return micros
    if kind is str:
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"not an ISO-8601 time: {_show(value)}") from None
        return _to_micros(at, unit)
    if kind is int or kind is float:
        if kind is float and not math.isfinite(value):
            raise ValueError(f"not a time: {value}")
        if unit is None:
            size = abs(value)
            unit = "s" if size < 1e11 else "ms" if size < 1e14 else "us" if size < 1e17 else "ns"
        micros = int(value // 1_000) if unit == "ns" else round(value * _UNIT_TO_US[unit])
        if not _MIN_US <= micros <= _MAX_US:
            raise ValueError(f"{value} is outside years 1-9999")
        return micros
    raise ValueError(f"expected a time (ISO-8601 string or epoch number), got {kind.__name__} {_show(value)}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- Avro schema check ---------------------------------------------------------------------------

_AVRO_ACCEPTS: dict[ValueType, frozenset[str]] = {
    ValueType.BOOL: frozenset({"boolean"}),
    ValueType.INT32: frozenset({"int", "long"}),
    ValueType.INT64: frozenset({"int", "long"}),
    ValueType.FLOAT: frozenset({"int", "long", "float", "double"}),
    ValueType.DOUBLE: frozenset({"int", "long", "float", "double"}),
    ValueType.STRING: frozenset({"string", "enum"}),
    ValueType.BYTES: frozenset({"bytes", "fixed"}),
    ValueType.UNIX_TIMESTAMP: frozenset({"int", "long", "float", "double", "string"}),
}


Combine = Callable[[Iterable[bool]], bool]


def check_avro_schema(schema: Mapping[str, Any], specs: Sequence[ColumnSpec], *, table: str) -> frozenset[str]:
    """Check that an Avro record schema has a field of a fitting type for every column.

    Returns:
        The message fields whose decoded values always have the right Python type (every
        branch of the field's type fits; timestamps only when integers), which the row
        builder may convert without checking each value.

    Raises:
        DataError: a column has no field, or a field's type cannot hold the column's type;
            the message names both.
    """
    named: dict[str, Any] = {}
    _collect_named(schema, named)
    fields = {f["name"]: f["type"] for f in schema.get("fields", []) if isinstance(f, dict) and "name" in f}
    trusted = set()
    for spec in specs:
        what = f"Feature table {table!r}: the Avro schema's field {spec.field!r} ({spec.role} {spec.column!r})"
        if spec.field not in fields:
            known = ", ".join(sorted(fields))
            raise DataError(
                f"{what} does not exist; the schema has: {known}. Set field_mapping if it has another name."
            )
        avro_type = fields[spec.field]
        if not _avro_fits(avro_type, spec.value_type, named, any):
            raise DataError(f"{what} has type {json_type(avro_type)}, which cannot hold {spec.value_type}.")
        exact = _avro_fits(avro_type, spec.value_type, named, all)
        if spec.value_type.element is ValueType.UNIX_TIMESTAMP:  # only integers convert without a look
            exact = exact and not spec.value_type.is_list and _avro_fits(avro_type, ValueType.INT64, named, all)
        if exact:
            trusted.add(spec.field)
    return frozenset(trusted)


def _collect_named(node: Any, named: dict[str, Any], namespace: str = "") -> None:
    """Map the names (short and full) of the records, enums and fixeds under ``node`` to them."""
    if isinstance(node, list):
        for item in node:
            _collect_named(item, named, namespace)
    elif isinstance(node, dict):
        if node.get("type") in ("record", "enum", "fixed") and isinstance(node.get("name"), str):
            name = node["name"]
            if "." in name:
                namespace, short = name.rsplit(".", 1)
            else:
                namespace, short = node.get("namespace") or namespace, name
            named[short] = named[f"{namespace}.{short}" if namespace else short] = node
        for key in ("type", "items", "values", "fields"):
            if key in node:
                _collect_named(node[key], named, namespace)


def _avro_fits(avro_type: Any, value_type: ValueType, named: Mapping[str, Any], combine: Combine) -> bool:
    """Whether ``any``/``all`` (``combine``) non-null branches of ``avro_type`` can hold ``value_type``."""
    branches = avro_type if isinstance(avro_type, list) else [avro_type]
    branches = [b for b in branches if b != "null"] or ["null"]
    return bool(combine(_branch_fits(branch, value_type, named, combine) for branch in branches))


def _branch_fits(branch: Any, value_type: ValueType, named: Mapping[str, Any], combine: Combine) -> bool:
    if isinstance(branch, str) and branch in named:
        branch = named[branch]
    name = branch.get("type") if isinstance(branch, dict) else branch
    if isinstance(name, dict | list):
        return _avro_fits(name, value_type, named, combine)
    if value_type.is_list:
        return name == "array" and _avro_fits(branch["items"], value_type.element, named, combine)
    return name in _AVRO_ACCEPTS[value_type]


def json_type(avro_type: Any) -> str:
    """An Avro type as compact text, for messages."""
    return avro_type if isinstance(avro_type, str) else repr(avro_type)


def _convert_each(
    values: Sequence[Any], convert: Callable[[Any], Any], *, required: bool
) -> tuple[list[Any], dict[int, str]]:
    """Convert each value; one that fails (or is missing while required) becomes null.

    Returns:
        The converted values, and the reason of each failed one by row index.
    """
    errors: dict[int, str] = {}
    clean: list[Any] = []
    for index, value in enumerate(values):
        if value is None:
            if required:
                errors[index] = _MISSING
            clean.append(None)
            continue
        try:
            clean.append(convert(value))
        except ValueError as exc:
            errors[index] = str(exc)
            clean.append(None)
    return clean, errors
