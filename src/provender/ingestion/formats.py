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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, cast

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

    records: list[dict[str, Any]]
    positions: list[int]
    errors: list[tuple[int, str]]


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
        """Read every value in one fastavro call, or return None if any value needs a closer look.

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
        if self._registry is not None:
            header = present[0][:_WIRE_HEADER_BYTES]
            if not all(value.startswith(header) for value in present):
                return None
            try:
                schemas = self._wire_schemas(present[0])
            except SchemaNotFoundError:
                return None
            present = [value[_WIRE_HEADER_BYTES:] for value in present]
        if schemas.batch_writer is None:
            return None
        count = len(present)
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
