"""Decoding stream messages into records (dicts): Avro, Avro in the Confluent wire format, JSON.

A decoder turns a micro-batch of message values into the records it could decode plus, for
every other message, why not. It never raises for a bad message: a bad message becomes a
dead letter and the batch goes on.

* **Avro** (``AvroFormat(schema_json)``): each value is one record in Avro binary encoding
  (no container header), written with that schema.
* **Avro, Confluent wire format**: when a schema registry URL is configured, each value is a
  zero magic byte, a 4-byte big-endian schema id and the Avro binary. The writer schema is
  fetched by id from the registry (cached), and records are resolved into the table's
  ``AvroFormat`` schema, so producers may evolve their schema compatibly.
* **JSON** (``JsonFormat()``): each value is one UTF-8 JSON object.

A clean micro-batch of a flat record schema (booleans, ints, longs, floats, doubles, each
possibly nullable) is read straight into Arrow columns with numpy (:class:`ColumnRecords`),
which the row builder takes as they are: about a tenth of fastavro's cost per record, with
exactly fastavro's values. Any other schema, or a batch with anything unusual in it, is read by
fastavro.

Avro timestamps (``timestamp-millis``/``-micros``/``-nanos`` logical types) are decoded as
their integers (the unit is kept in :attr:`AvroDecoder.timestamp_units`) rather than as
``datetime`` objects: the row builder converts whole columns at once, which is several times
cheaper per record.
"""

from __future__ import annotations

import copy
import io
import itertools
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, cast, overload

import numpy as np
import pyarrow as pa
from fastavro import parse_schema, schemaless_reader
from fastavro.schema import SchemaParseException

from provender.definitions import AvroFormat, JsonFormat, MessageFormat
from provender.errors import DefinitionError
from provender.ingestion.schema_registry import SchemaNotFoundError, SchemaRegistryClient

_loads: Callable[[bytes], Any]
try:
    import orjson

    _loads = orjson.loads
except ImportError:  # pragma: no cover - orjson comes with the serving extra; json is a fine fallback
    _loads = json.loads

_WIRE_MAGIC = 0
_WIRE_HEADER_BYTES = 5
_TIMESTAMP_UNITS = {
    "timestamp-millis": "ms",
    "timestamp-micros": "us",
    "timestamp-nanos": "ns",
    "local-timestamp-millis": "ms",
    "local-timestamp-micros": "us",
    "local-timestamp-nanos": "ns",
}
# What fastavro raises on bytes that are not a record of the schema (found by fuzzing it).
_CORRUPT = (ValueError, EOFError, IndexError, KeyError, TypeError, OverflowError, MemoryError)


class Decoded(NamedTuple):
    """A decoded micro-batch.

    Attributes:
        records: the records that decoded, in message order.
        positions: for each record, the index of its message in the input.
        errors: ``(message index, why it could not be decoded)`` for the others.
    """

    records: Sequence[dict[str, Any]]
    positions: list[int]
    errors: list[tuple[int, str]]


class ColumnRecords(Sequence[dict[str, Any]]):
    """Decoded records held as Arrow columns (:attr:`batch`), made dicts only when asked for.

    The row builder reads the columns directly; anything else sees the same dicts fastavro
    would have given (``batch.to_pylist()``: Python ints, floats, bools and None).
    """

    __slots__ = ("_dicts", "batch")

    def __init__(self, batch: pa.RecordBatch) -> None:
        self.batch = batch
        self._dicts: list[dict[str, Any]] | None = None

    def _list(self) -> list[dict[str, Any]]:
        if self._dicts is None:
            self._dicts = self.batch.to_pylist()
        return self._dicts

    def __len__(self) -> int:
        rows: int = self.batch.num_rows
        return rows

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        return self._list()[index]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._list())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ColumnRecords):
            other = other._list()
        return isinstance(other, list) and self._list() == other

    __hash__ = None  # type: ignore[assignment]  # mutable dicts inside, like a list

    def __repr__(self) -> str:
        return f"ColumnRecords({self._list()!r})"


class MessageDecoder(Protocol):
    """Turns message values into records."""

    timestamp_units: Mapping[str, str]
    """Unit (``"ms"``, ``"us"``, ``"ns"``) of integer timestamp fields whose unit the format states."""

    def decode(self, values: Sequence[bytes | None]) -> Decoded:
        """Decode ``values``; bad ones are reported in ``errors``, never raised.

        Raises:
            BackendError: a service the decoder needs (the schema registry) failed; nothing
                was decided, so the batch can be retried.
        """
        ...


def decoder_for(message_format: MessageFormat, *, schema_registry_url: str | None = None) -> MessageDecoder:
    """Return the decoder of a source's message format.

    Raises:
        DefinitionError: the Avro schema cannot be parsed.
        ConfigError: a malformed schema registry URL.
    """
    if isinstance(message_format, JsonFormat):
        return JsonDecoder()
    registry = SchemaRegistryClient(schema_registry_url) if schema_registry_url else None
    return AvroDecoder(message_format, registry=registry)


class JsonDecoder:
    """One JSON object per message."""

    timestamp_units: Mapping[str, str] = {}

    def decode(self, values: Sequence[bytes | None]) -> Decoded:
        """Decode each value as a JSON object."""
        records: list[dict[str, Any]] = []
        positions: list[int] = []
        errors: list[tuple[int, str]] = []
        loads = _loads
        for index, value in enumerate(values):
            if not value:
                errors.append((index, "empty message"))
                continue
            try:
                record = loads(value)
            except ValueError as exc:
                errors.append((index, f"not JSON: {exc}"))
                continue
            if type(record) is not dict:
                errors.append((index, f"not a JSON object but {type(record).__name__}"))
                continue
            records.append(record)
            positions.append(index)
        return Decoded(records, positions, errors)


def strip_timestamp_logical_types(schema: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Return a copy of a record schema whose top-level timestamp fields decode as plain integers.

    Returns:
        The schema, and the unit of each stripped field by name.
    """
    stripped = copy.deepcopy(schema)
    units: dict[str, str] = {}
    for field in stripped.get("fields", []):
        if not isinstance(field, dict):
            continue
        branches = field.get("type")
        for branch in branches if isinstance(branches, list) else [branches]:
            if isinstance(branch, dict) and branch.get("logicalType") in _TIMESTAMP_UNITS:
                units[field["name"]] = _TIMESTAMP_UNITS[branch.pop("logicalType")]
    return stripped, units


def _parse(schema: dict[str, Any], what: str) -> Any:
    try:
        return parse_schema(schema, named_schemas={})
    except (SchemaParseException, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise DefinitionError("AvroFormat", "schema_json", f"{what} is not a valid Avro schema: {exc}") from None


@dataclass(frozen=True, slots=True)
class _Schemas:
    """Parsed schemas to read records written with one writer schema.

    ``batch_*`` read a whole micro-batch in one call: an Avro array of the records, each
    followed by its index as a long (see :meth:`AvroDecoder._decode_batch`).
    """

    writer: Any
    reader: Any | None  # None: no resolution needed (the writer schema is the reader's)
    batch_writer: Any | None  # None: the batch read is not possible for this schema
    batch_reader: Any | None


class AvroDecoder:
    """Avro binary records, plain or in the Confluent wire format.

    Args:
        message_format: the table's format; its schema is the writer schema of plain records
            and the reader schema of wire-format records.
        registry: when set, values are in the wire format and writer schemas come from it.
    """

    def __init__(self, message_format: AvroFormat, *, registry: SchemaRegistryClient | None = None) -> None:
        self.schema: dict[str, Any] = json.loads(message_format.schema_json)
        stripped, units = strip_timestamp_logical_types(self.schema)
        self._reader_json = json.dumps(stripped, sort_keys=True)
        self._reader_schema = stripped
        self._plain = self._schemas(stripped, "the AvroFormat schema")
        self.timestamp_units: Mapping[str, str] = units
        self._registry = registry
        self._writers: dict[int, _Schemas] = {}
        self._index: list[bytes] = []
        self._columns = _ColumnReader.of(stripped)

    def decode(self, values: Sequence[bytes | None]) -> Decoded:
        """Decode each value; with a registry, resolve it from its writer schema.

        A clean batch is read in one call (:meth:`_decode_batch`); otherwise each value is read
        on its own, from one buffer of the concatenated values, and a record that does not end
        exactly where its value ends is corrupt.
        """
        batch = self._decode_batch(values)
        if batch is not None:
            return batch
        records: list[dict[str, Any]] = []
        positions: list[int] = []
        errors: list[tuple[int, str]] = []
        stream = io.BytesIO(b"".join(value or b"" for value in values))
        tell, seek = stream.tell, stream.seek
        schemas, wire = self._plain, self._registry is not None
        end = 0
        for index, value in enumerate(values):
            start = end
            end = start + len(value or b"")
            if not value:
                errors.append((index, "empty message"))
                continue
            if wire:
                try:
                    schemas = self._wire_schemas(value)
                except SchemaNotFoundError as exc:
                    errors.append((index, str(exc)))
                    continue
                start += _WIRE_HEADER_BYTES
            if tell() != start:
                seek(start)
            try:
                record = cast("dict[str, Any]", schemaless_reader(stream, schemas.writer, schemas.reader))
            except _CORRUPT as exc:
                errors.append((index, f"not an Avro record of the schema: {type(exc).__name__}: {exc}"))
                continue
            if tell() != end:
                errors.append((index, f"not an Avro record of the schema: {end - tell():+d} bytes left over"))
                continue
            records.append(record)
            positions.append(index)
        return Decoded(records, positions, errors)

    def _decode_batch(self, values: Sequence[bytes | None]) -> Decoded | None:  # noqa: PLR0911 - each check bails out
        """Read every value at once, or return None if any value needs a closer look.

        A flat record of primitives is read straight into columns (:class:`_ColumnReader`),
        when every value is a clean record of the table's own schema. Otherwise:

        The values are framed as an Avro array whose items are the records, each followed by
        its index (a long): ``count, record 0, 0, record 1, 1, ..., 0``. One call then decodes
        the batch (about half the cost of a call per record), and reading back exactly the
        indices 0..n-1, with every byte consumed, proves that each record ended where its value
        ended. Anything else (an empty value, mixed schema ids, a corrupt record) falls back to
        reading value by value, which names the bad ones.
        """
        if not values or not all(values):
            return None
        present = cast("Sequence[bytes]", values)
        schemas = self._plain
        skip = 0
        if self._registry is not None:
            header = present[0][:_WIRE_HEADER_BYTES]
            if not all(value.startswith(header) for value in present):
                return None
            try:
                schemas = self._wire_schemas(present[0])
            except SchemaNotFoundError:
                return None
            skip = _WIRE_HEADER_BYTES
        count = len(present)
        if schemas is self._plain and self._columns is not None:
            columns = self._columns.read(present, skip)
            if columns is not None:
                return Decoded(ColumnRecords(columns), list(range(count)), [])
        if schemas.batch_writer is None:
            return None
        if skip:
            present = [value[skip:] for value in present]
        items = itertools.chain.from_iterable(zip(present, self._indices(count), strict=True))
        framed = b"".join([_zigzag(count), *items, b"\x00"])
        stream = io.BytesIO(framed)
        try:
            records = cast(
                "list[dict[str, Any]]", schemaless_reader(stream, schemas.batch_writer, schemas.batch_reader)
            )
            if stream.tell() != len(framed) or [r.pop(_INDEX_FIELD) for r in records] != list(range(count)):
                return None
        except (*_CORRUPT, AttributeError):
            return None
        return Decoded(records, list(range(count)), [])

    def _indices(self, count: int) -> list[bytes]:
        """The Avro encodings of 0..count-1 (cached)."""
        index = self._index
        if len(index) < count:
            index.extend(_zigzag(i) for i in range(len(index), count))
        return index[:count]

    def _schemas(self, stripped: dict[str, Any], what: str, *, resolve: bool = False) -> _Schemas:
        writer = _parse(stripped, what)
        batch_writer = batch_reader = None
        names = {f.get("name") for f in stripped.get("fields", []) if isinstance(f, dict)}
        if stripped.get("type") == "record" and _INDEX_FIELD not in names:
            batch_writer = _parse(_batch_schema(stripped), what)
            if resolve:
                batch_reader = _parse(_batch_schema(self._reader_schema), "the AvroFormat schema")
        return _Schemas(writer, self._plain.writer if resolve else None, batch_writer, batch_reader)

    def _wire_schemas(self, value: bytes) -> _Schemas:
        """The schemas of a wire-format value's writer schema id."""
        if len(value) < _WIRE_HEADER_BYTES or value[0] != _WIRE_MAGIC:
            raise SchemaNotFoundError("not in the Confluent wire format (no magic byte 0 and schema id)")
        schema_id = int.from_bytes(value[1:_WIRE_HEADER_BYTES], "big")
        schemas = self._writers.get(schema_id)
        if schemas is None:
            assert self._registry is not None
            stripped, _ = strip_timestamp_logical_types(self._registry.schema(schema_id))
            if json.dumps(stripped, sort_keys=True) == self._reader_json:
                schemas = self._plain
            else:
                try:
                    schemas = self._schemas(stripped, f"schema id {schema_id}", resolve=True)
                except DefinitionError as exc:
                    raise SchemaNotFoundError(f"schema id {schema_id} is not a valid Avro schema: {exc}") from None
            self._writers[schema_id] = schemas
        return schemas


_INDEX_FIELD = "__provender_batch_index"


def _batch_schema(record: dict[str, Any]) -> dict[str, Any]:
    """An array of ``record`` items, each with an extra long field holding its index."""
    indexed = dict(record)
    indexed["fields"] = [*record["fields"], {"name": _INDEX_FIELD, "type": "long"}]
    return {"type": "array", "items": indexed}


def _zigzag(value: int) -> bytes:
    """The Avro (zigzag varint) encoding of a non-negative long."""
    number = value << 1
    out = bytearray()
    while number >= 0x80:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


# -- reading a flat record of primitives straight into columns ----------------------------------

_COLUMN_KINDS = frozenset({"boolean", "int", "long", "float", "double"})
# After the values: a field starts at most 1 byte past the end (a union index read there) and
# reads at most 16 bytes (two words of a long varint), so every read stays in the buffer.
_PAD = bytes(32)


class _Field(NamedTuple):
    name: str
    kind: str  # one of _COLUMN_KINDS
    null_tag: int | None  # for a ["null", kind] union: the byte of its null branch's index (0 or 2)


class _ColumnReader:
    """Reads a micro-batch of records of a flat schema straight into Arrow columns, with numpy.

    Only records whose fields are all booleans, ints, longs, floats or doubles, each possibly in
    a union with null, and no logical type: then every field is a varint, a fixed number of
    bytes, or a union index byte then one of those, and each field of every record can be read
    at once across the batch (one numpy pass per field). The values are exactly fastavro's:
    longs and ints as int64, floats as float32 (through a double, as fastavro's Python floats
    are), doubles bit for bit. Anything unusual makes :meth:`read` return None and the caller
    reads with fastavro (and names the bad records): a varint longer than 10 bytes or beyond
    64 bits, a boolean byte other than 0 or 1, a union index byte other than 0 or 2, or a record
    that does not end exactly where its value ends.
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: list[_Field]) -> None:
        self._fields = fields

    @classmethod
    def of(cls, schema: dict[str, Any]) -> _ColumnReader | None:
        """The reader of a (timestamp-stripped) record schema, or None if it is not flat."""
        if schema.get("type") != "record" or not isinstance(schema.get("fields"), list):
            return None
        fields = [_flat_field(field) for field in schema["fields"]]
        if not fields or None in fields or len({f.name for f in fields if f}) != len(fields):
            return None
        return cls(cast("list[_Field]", fields))

    def read(self, values: Sequence[bytes], skip: int) -> pa.RecordBatch | None:
        """Read every value (after its first ``skip`` bytes) into columns; None if one needs a closer look."""
        # One C call concatenates the values and gives where each starts (the offsets).
        joined = pa.array([*values, _PAD], pa.large_binary())
        offsets = np.frombuffer(joined.buffers()[1], np.int64, len(values) + 1)
        position, ends = offsets[:-1] + skip, offsets[1:]
        buffer = _Buffer(joined.buffers()[2])
        arrays = []
        for field in self._fields:
            present = None
            at = position
            if field.null_tag is not None:
                tags = buffer.u8[position]
                present = tags == 2 - field.null_tag
                if not (present | (tags == field.null_tag)).all():
                    return None
                position = position + 1
                at = position[present]
            read = _READERS[field.kind](buffer, at)
            if read is None:
                return None
            column, after = read
            if present is None:
                position = after
                arrays.append(pa.array(column))
            else:
                position[present] = after
                arrays.append(pa.array(_spread(column, present), mask=~present))
            if (position > ends).any():
                return None
        if not np.array_equal(position, ends):
            return None
        return pa.RecordBatch.from_arrays(arrays, names=[f.name for f in self._fields])


def _flat_field(field: object) -> _Field | None:
    """A record field that :class:`_ColumnReader` reads, or None."""
    if not isinstance(field, dict) or not isinstance(field.get("name"), str):
        return None
    avro_type, null_tag = field.get("type"), None
    if isinstance(avro_type, list):
        if len(avro_type) != 2 or avro_type.count("null") != 1:
            return None
        null_index = avro_type.index("null")
        avro_type, null_tag = avro_type[1 - null_index], 2 * null_index
    if isinstance(avro_type, dict):
        avro_type = None if "logicalType" in avro_type else avro_type.get("type")
    if avro_type not in _COLUMN_KINDS:
        return None
    return _Field(field["name"], avro_type, null_tag)


def _spread(column: np.ndarray[Any, Any], present: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``column`` (the values of the ``present`` rows) spread over all rows; the others are zero."""
    full = np.zeros(len(present), column.dtype)
    full[present] = column
    return full


class _Buffer:
    """The concatenated values, viewed from every byte offset as uint8, uint64, float32 and float64."""

    __slots__ = ("f32", "f64", "u8", "u64")

    def __init__(self, data: pa.Buffer) -> None:
        size = data.size
        self.u8: np.ndarray[Any, Any] = np.frombuffer(data, np.uint8)
        self.u64: np.ndarray[Any, Any] = np.ndarray((size - 7,), "<u8", buffer=data, strides=(1,))
        self.f32: np.ndarray[Any, Any] = np.ndarray((size - 3,), "<f4", buffer=data, strides=(1,))
        self.f64: np.ndarray[Any, Any] = np.ndarray((size - 7,), "<f8", buffer=data, strides=(1,))


_Read = tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]] | None
_U64 = np.uint64
_STOP_BITS = _U64(0x8080808080808080)
_SEVEN_BITS = _U64(0x7F7F7F7F7F7F7F7F)
# Gathering the 7-bit groups of 8 bytes into 56 bits: pairs, then quads, then the eight.
_GATHER = (
    (_U64(0x007F007F007F007F), _U64(0x7F007F007F007F00), _U64(1)),
    (_U64(0x00003FFF00003FFF), _U64(0x3FFF00003FFF0000), _U64(2)),
    (_U64(0x000000000FFFFFFF), _U64(0x0FFFFFFF00000000), _U64(4)),
)


def _swar_bit_count(words: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The set bits of each uint64 (SWAR popcount: ``np.bitwise_count`` needs NumPy 2)."""
    words = words - ((words >> _U64(1)) & _U64(0x5555555555555555))
    words = (words & _U64(0x3333333333333333)) + ((words >> _U64(2)) & _U64(0x3333333333333333))
    words = (words + (words >> _U64(4))) & _U64(0x0F0F0F0F0F0F0F0F)
    return (words * _U64(0x0101010101010101)) >> _U64(56)  # wraps modulo 2**64, as meant


_bit_count: Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]] = getattr(np, "bitwise_count", _swar_bit_count)


def _read_varints(buffer: _Buffer, at: np.ndarray[Any, Any]) -> _Read:
    """The zigzag varints at ``at`` as int64 (fastavro's longs), and the positions after them.

    Eight bytes are read as one little-endian word per varint; its last byte is the first whose
    high bit is clear. Varints of 9 or 10 bytes take one more word; a longer one, or one beyond
    64 bits, returns None.
    """
    words = buffer.u64[at]
    stops = ~words & _STOP_BITS
    first = stops & (_U64(0) - stops)  # the high bit of the last byte; 0 if beyond 8 bytes
    keep = (first << _U64(1)) - _U64(1)  # the bytes up to it (all when it is the 8th, or none found)
    lengths = (_bit_count(keep) >> _U64(3)).astype(np.int64)
    value = words & keep & _SEVEN_BITS
    for low, high, shift in _GATHER:
        value = (value & low) | ((value & high) >> shift)
    longer = np.flatnonzero(first == 0)
    if len(longer):
        more = buffer.u64[at[longer] + 8]
        ninth, tenth = more & _U64(0xFF), (more >> _U64(8)) & _U64(0xFF)
        ten = ninth >= 0x80
        if (tenth[ten] > 1).any():
            return None  # longer than 10 bytes, or beyond 64 bits
        value[longer] |= ((ninth & _U64(0x7F)) << _U64(56)) | ((tenth * ten) << _U64(63))
        lengths[longer] = 9 + ten
    signs = -(value & _U64(1)).view(np.int64)
    return (value >> _U64(1)).view(np.int64) ^ signs, at + lengths


def _read_floats(buffer: _Buffer, at: np.ndarray[Any, Any]) -> _Read:
    # Through a double and back, like fastavro's Python float into a float32 column (a signalling NaN
    # quiets; NumPy 1 warns "invalid value encountered in cast" on it, NumPy 2 does not).
    with np.errstate(invalid="ignore"):
        return buffer.f32[at].astype(np.float64).astype(np.float32), at + 4


def _read_doubles(buffer: _Buffer, at: np.ndarray[Any, Any]) -> _Read:
    return buffer.f64[at], at + 8


def _read_booleans(buffer: _Buffer, at: np.ndarray[Any, Any]) -> _Read:
    raw = buffer.u8[at]
    if (raw > 1).any():
        return None  # fastavro reads any non-zero byte as True: leave such records to it
    return raw == 1, at + 1


_READERS: dict[str, Callable[[_Buffer, np.ndarray[Any, Any]], _Read]] = {
    "boolean": _read_booleans,
    "int": _read_varints,
    "long": _read_varints,
    "float": _read_floats,
    "double": _read_doubles,
}
