"""Decoding stream messages: plain Avro, the Confluent wire format with a real (local) registry, JSON."""

from __future__ import annotations

import io
import json
import math
import pickle
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import fastavro
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import provender as pv
from provender.ingestion.formats import AvroDecoder, ColumnRecords, JsonDecoder, decoder_for
from provender.ingestion.schema_registry import SchemaRegistryClient

SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Trip",
    "fields": [
        {"name": "driver_id", "type": "long"},
        {"name": "trips_today", "type": "int"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    ],
}
# An older writer schema: no trips_today yet (the reader's default fills it), a city since removed.
OLD_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Trip",
    "fields": [
        {"name": "driver_id", "type": "long"},
        {"name": "city", "type": "string"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    ],
}
READER: dict[str, Any] = json.loads(json.dumps(SCHEMA))
READER["fields"][1] = {"name": "trips_today", "type": "int", "default": -1}
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
T0_US = int(T0.timestamp()) * 1_000_000


def avro(record: dict[str, Any], schema: dict[str, Any] = SCHEMA) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema, named_schemas={}), record)
    return out.getvalue()


def wire(schema_id: int, payload: bytes) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + payload


def test_plain_avro_decodes_timestamps_as_integers_with_their_unit() -> None:
    decoder = AvroDecoder(pv.AvroFormat(json.dumps(SCHEMA)))
    decoded = decoder.decode([avro({"driver_id": 1, "trips_today": 2, "ts": T0})])
    assert decoded.records == [{"driver_id": 1, "trips_today": 2, "ts": T0_US}]
    assert decoder.timestamp_units == {"ts": "us"}


def test_corrupt_avro_is_reported_and_does_not_spoil_its_neighbours() -> None:
    good = avro({"driver_id": 1, "trips_today": 2, "ts": T0})
    values: list[bytes | None] = [good, b"\xff\xff\xff", good[:-2], good + b"\x00", None, b"", good]
    decoded = AvroDecoder(pv.AvroFormat(json.dumps(SCHEMA))).decode(values)
    assert decoded.positions == [0, 6]
    assert [i for i, _ in decoded.errors] == [1, 2, 3, 4, 5]
    assert "left over" in dict(decoded.errors)[3]
    assert dict(decoded.errors)[4] == "empty message"


def test_json_objects_decode_and_anything_else_is_reported() -> None:
    values: list[bytes | None] = [b'{"driver_id": 1}', b"[1, 2]", b"{nope", b"\xff", None, b'{"a": "\xc3\xa9"}']
    decoded = JsonDecoder().decode(values)
    assert decoded.records == [{"driver_id": 1}, {"a": "é"}]
    assert decoded.positions == [0, 5]
    assert [i for i, _ in decoded.errors] == [1, 2, 3, 4]
    assert "not a JSON object" in dict(decoded.errors)[1]


class Registry:
    """A tiny schema registry on loopback: ``GET /schemas/ids/<id>``, counting requests."""

    def __init__(self, schemas: dict[int, dict[str, Any]]) -> None:
        self.schemas = schemas
        self.requests = 0
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                registry.requests += 1
                schema_id = int(self.path.rsplit("/", 1)[-1]) if self.path.startswith("/schemas/ids/") else -1
                if schema_id in registry.schemas:
                    body = json.dumps({"schema": json.dumps(registry.schemas[schema_id])}).encode()
                    self.send_response(200)
                else:
                    body = b'{"error_code": 40403, "message": "Schema not found"}'
                    self.send_response(404)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def registry() -> Iterator[Registry]:
    server = Registry({1: SCHEMA, 2: OLD_SCHEMA})
    yield server
    server.close()


def test_wire_format_fetches_writer_schemas_by_id_once_and_resolves_them(registry: Registry) -> None:
    decoder = decoder_for(pv.AvroFormat(json.dumps(READER)), schema_registry_url=registry.url)
    new = wire(1, avro({"driver_id": 1, "trips_today": 5, "ts": T0}))
    old = wire(2, avro({"driver_id": 2, "city": "Lyon", "ts": T0}, OLD_SCHEMA))
    decoded = decoder.decode([new, old, new, old])
    assert decoded.errors == []
    assert (
        decoded.records
        == [
            {"driver_id": 1, "trips_today": 5, "ts": T0_US},
            {"driver_id": 2, "trips_today": -1, "ts": T0_US},
        ]
        * 2
    )
    decoder.decode([new, old])
    assert registry.requests == 2


def test_wire_format_reports_unknown_ids_and_missing_headers(registry: Registry) -> None:
    decoder = decoder_for(pv.AvroFormat(json.dumps(READER)), schema_registry_url=registry.url)
    payload = avro({"driver_id": 1, "trips_today": 5, "ts": T0})
    decoded = decoder.decode([wire(99, payload), payload, wire(1, payload), wire(99, payload)])
    assert decoded.positions == [2]
    errors = dict(decoded.errors)
    assert "schema id 99 is not in the registry" in errors[0]
    assert "wire format" in errors[1]
    assert registry.requests == 2  # the unknown id is asked for once


def test_an_unreachable_registry_is_a_retryable_backend_error(registry: Registry) -> None:
    url = registry.url
    registry.close()
    with pytest.raises(pv.BackendError, match="unreachable") as failure:
        SchemaRegistryClient(url, timeout_seconds=1).schema(1)
    assert failure.value.retryable


def test_registry_url_must_be_http() -> None:
    with pytest.raises(pv.ConfigError, match="schema_registry_url"):
        SchemaRegistryClient("ftp://registry")


def test_an_invalid_avro_schema_is_a_definition_error() -> None:
    bad = {"type": "record", "name": "T", "fields": [{"name": "x", "type": "no-such-type"}]}
    with pytest.raises(pv.DefinitionError, match="schema_json"):
        AvroDecoder(pv.AvroFormat(json.dumps(bad)))


# -- flat records read straight into columns: the same records as fastavro, the same errors ------

FLAT: dict[str, Any] = {
    "type": "record",
    "name": "Flat",
    "fields": [
        {"name": "b", "type": "boolean"},
        {"name": "i", "type": "int"},
        {"name": "l", "type": "long"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "nl", "type": ["null", "long"]},
        {"name": "ln", "type": ["long", "null"]},
        {"name": "nf", "type": ["null", "float"]},
        {"name": "nd", "type": ["double", "null"]},
        {"name": "nb", "type": ["null", "boolean"]},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-nanos"}},
    ],
}
LONGS = st.integers(-(2**63), 2**63 - 1) | st.sampled_from([0, -1, 63, -64, 64, 2**55, -(2**55) - 1, 2**62, -(2**63)])
FLOATS = st.floats(width=32, allow_nan=True) | st.sampled_from([0.0, -0.0, math.inf, -math.inf])
DOUBLES = st.floats(allow_nan=True, allow_infinity=True)
FLAT_RECORDS = st.fixed_dictionaries(
    {
        "b": st.booleans(),
        "i": st.integers(-(2**31), 2**31 - 1),
        "l": LONGS,
        "f": FLOATS,
        "d": DOUBLES,
        "nl": st.none() | LONGS,
        "ln": st.none() | LONGS,
        "nf": st.none() | FLOATS,
        "nd": st.none() | DOUBLES,
        "nb": st.none() | st.booleans(),
        "ts": LONGS,
    }
)


def fastavro_decoder(schema: dict[str, Any]) -> AvroDecoder:
    """A decoder without the columnar path: fastavro reads every record."""
    decoder = AvroDecoder(pv.AvroFormat(json.dumps(schema)))
    decoder._columns = None
    return decoder


def same(a: object, b: object) -> bool:
    """Equal, with NaN equal to NaN (and the bits of floats compared)."""
    return pickle.dumps(a) == pickle.dumps(b)


@settings(max_examples=150, deadline=None)
@given(records=st.lists(FLAT_RECORDS, min_size=1, max_size=40))
def test_flat_records_read_as_columns_equal_fastavro_records(records: list[dict[str, Any]]) -> None:
    values: list[bytes | None] = [avro(r, FLAT) for r in records]
    decoded = AvroDecoder(pv.AvroFormat(json.dumps(FLAT))).decode(values)
    assert isinstance(decoded.records, ColumnRecords)
    expected = fastavro_decoder(FLAT).decode(values)
    assert decoded.positions == expected.positions and decoded.errors == []
    assert same(list(decoded.records), list(expected.records))


@settings(max_examples=150, deadline=None)
@given(
    records=st.lists(FLAT_RECORDS, min_size=1, max_size=8),
    damage=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 80), st.binary(max_size=3)), min_size=1, max_size=3),
)
def test_damaged_flat_records_decode_as_fastavro_decodes_them(
    records: list[dict[str, Any]], damage: list[tuple[int, int, bytes]]
) -> None:
    values: list[bytes | None] = [avro(r, FLAT) for r in records]
    for which, at, insert in damage:  # cut, overwrite or extend a value
        value = values[which % len(values)]
        assert value is not None
        values[which % len(values)] = value[:at] + insert + value[at + len(insert) + (at % 2) :]
    decoded = AvroDecoder(pv.AvroFormat(json.dumps(FLAT))).decode(values)
    expected = fastavro_decoder(FLAT).decode(values)
    assert decoded.positions == expected.positions
    assert without_addresses(decoded.errors) == without_addresses(expected.errors)
    assert same(list(decoded.records), list(expected.records))


def without_addresses(errors: list[tuple[int, str]]) -> list[tuple[int, str]]:
    return [(index, re.sub(r" at 0x[0-9a-f]+", "", error)) for index, error in errors]


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("boolean", b"\x02"),  # fastavro reads it as True
        ("long", b"\x80" * 10 + b"\x00"),  # an 11-byte zero
        ("long", b"\xff" * 9 + b"\x03"),  # beyond 64 bits: fastavro wraps
        ("long", b"\xff" * 9 + b"\x01"),  # the 10-byte minimum
        ("long", b"\x80\x00"),  # a non-minimal zero
    ],
)
def test_unusual_encodings_decode_as_fastavro_decodes_them(field: str, raw: bytes) -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "x", "type": field}, {"name": "y", "type": "int"}]}
    values: list[bytes | None] = [raw + b"\x02", b"\x00\x04"]
    decoded = AvroDecoder(pv.AvroFormat(json.dumps(schema))).decode(values)
    expected = fastavro_decoder(schema).decode(values)
    assert (decoded.positions, decoded.errors) == (expected.positions, expected.errors)
    assert same(list(decoded.records), list(expected.records))


def test_schemas_that_are_not_flat_primitives_are_read_by_fastavro() -> None:
    for field_type in ("string", {"type": "int", "logicalType": "date"}, ["null", "long", "string"], "bytes"):
        schema = {"type": "record", "name": "R", "fields": [{"name": "x", "type": field_type}]}
        assert AvroDecoder(pv.AvroFormat(json.dumps(schema)))._columns is None


def test_wire_format_records_of_the_reader_schema_are_read_as_columns(registry: Registry) -> None:
    decoder = decoder_for(pv.AvroFormat(json.dumps(SCHEMA)), schema_registry_url=registry.url)
    values: list[bytes | None] = [wire(1, avro({"driver_id": n, "trips_today": 5, "ts": T0})) for n in range(3)]
    decoded = decoder.decode(values)
    assert isinstance(decoded.records, ColumnRecords)
    assert decoded.records == [{"driver_id": n, "trips_today": 5, "ts": T0_US} for n in range(3)]


def test_bit_count_without_numpy_2_counts_as_numpy_does() -> None:
    """The varint reader counts bits with NumPy 2's bitwise_count or, on NumPy 1, a SWAR popcount."""
    from provender.ingestion.formats import _swar_bit_count

    rng = np.random.default_rng(7)
    words = np.concatenate(
        [
            rng.integers(0, 2**63, 1000, dtype=np.uint64) * np.uint64(2) + np.uint64(1),
            np.array([0, 1, 2**64 - 1, 2**63, (2**56) - 1, 0x8080808080808080], dtype=np.uint64),
        ]
    )
    expected = np.array([bin(int(w)).count("1") for w in words], dtype=np.uint64)
    assert (_swar_bit_count(words) == expected).all()
