"""Decoding stream messages: plain Avro, the Confluent wire format with a real (local) registry, JSON."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import fastavro
import pytest

import provender as pv
from provender.ingestion.formats import AvroDecoder, JsonDecoder, decoder_for
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
