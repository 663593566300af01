"""Validating stream records into normalized rows: types, field mapping, timestamps, bad records."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta, timezone

import fastavro
import pyarrow as pa
import pytest

import provender as pv
from provender.definitions.request import CREATED_TIMESTAMP, EVENT_TIMESTAMP
from provender.ingestion.formats import AvroDecoder, ColumnRecords
from provender.ingestion.rows import (
    Built,
    DeadLetterReason,
    RowBuilder,
    check_avro_schema,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T0_S = int(T0.timestamp())
TYPES = {"driver_id": pv.ValueType.INT64, "city": pv.ValueType.STRING}


def table(*features: pv.Feature, created: str | None = None, mapping: dict[str, str] | None = None) -> pv.FeatureTable:
    return pv.FeatureTable(
        name="trips",
        entities=["driver_id"],
        features=list(features) or [pv.Feature("trips_today", pv.ValueType.INT32)],
        stream_source=pv.KafkaSource(
            bootstrap_servers="localhost:9092",
            topic="trips",
            message_format=pv.JsonFormat(),
            event_timestamp_column="ts",
            created_timestamp_column=created,
            field_mapping=mapping or {},
        ),
    )


def build(t: pv.FeatureTable, records: list[dict[str, object]], units: dict[str, str] | None = None) -> Built:
    assert t.stream_source is not None
    return RowBuilder(t, t.stream_source, TYPES, units).build(records)


def test_good_records_become_normalized_rows() -> None:
    t = table(pv.Feature("trips_today", pv.ValueType.INT32), pv.Feature("rate", pv.ValueType.FLOAT), created="c")
    built = build(
        t,
        [
            {"driver_id": 1, "trips_today": 3, "rate": 0.5, "ts": "2026-03-01T12:00:00Z", "c": T0_S, "extra": "x"},
            {"driver_id": 2, "trips_today": None, "rate": 1, "ts": T0_S * 1000},
        ],
    )
    assert built.errors == {}
    assert built.rows.schema == pa.schema(
        [
            ("driver_id", pa.int64()),
            ("trips_today", pa.int32()),
            ("rate", pa.float32()),
            (EVENT_TIMESTAMP, pa.timestamp("us", tz="UTC")),
            (CREATED_TIMESTAMP, pa.timestamp("us", tz="UTC")),
        ]
    )
    rows = built.rows.to_pylist()
    assert rows[0] | {"rate": None} == {
        "driver_id": 1,
        "trips_today": 3,
        "rate": None,
        EVENT_TIMESTAMP: T0,
        CREATED_TIMESTAMP: T0,
    }
    assert rows[1]["trips_today"] is None and rows[1]["rate"] == 1.0
    assert rows[1][EVENT_TIMESTAMP] == T0 and rows[1][CREATED_TIMESTAMP] is None


def test_field_mapping_renames_message_fields() -> None:
    t = table(pv.Feature("trips_today", pv.ValueType.INT64), mapping={"driver": "driver_id", "n": "trips_today"})
    built = build(t, [{"driver": 7, "n": 70, "ts": T0_S}, {"driver_id": 8, "n": 80, "ts": T0_S}])
    assert built.rows.to_pylist()[0]["driver_id"] == 7
    assert set(built.errors) == {1}
    assert built.errors[1].reason is DeadLetterReason.MISSING_ENTITY_KEY
    assert "'driver'" in built.errors[1].message


@pytest.mark.parametrize(
    ("record", "reason", "words"),
    [
        ({"trips_today": 1, "ts": T0_S}, DeadLetterReason.MISSING_ENTITY_KEY, "'driver_id'"),
        ({"driver_id": None, "trips_today": 1, "ts": T0_S}, DeadLetterReason.MISSING_ENTITY_KEY, "missing"),
        ({"driver_id": "7", "trips_today": 1, "ts": T0_S}, DeadLetterReason.WRONG_TYPE, "INT64"),
        ({"driver_id": True, "trips_today": 1, "ts": T0_S}, DeadLetterReason.WRONG_TYPE, "bool"),
        ({"driver_id": 1, "trips_today": 1.5, "ts": T0_S}, DeadLetterReason.WRONG_TYPE, "1.5"),
        ({"driver_id": 1, "trips_today": 2**40, "ts": T0_S}, DeadLetterReason.WRONG_TYPE, "out of range"),
        ({"driver_id": 1, "trips_today": "many", "ts": T0_S}, DeadLetterReason.WRONG_TYPE, "'many'"),
        ({"driver_id": 1, "trips_today": 1}, DeadLetterReason.BAD_TIMESTAMP, "'ts'"),
        ({"driver_id": 1, "trips_today": 1, "ts": "yesterday"}, DeadLetterReason.BAD_TIMESTAMP, "ISO-8601"),
        ({"driver_id": 1, "trips_today": 1, "ts": True}, DeadLetterReason.BAD_TIMESTAMP, "bool"),
        ({"driver_id": 1, "trips_today": 1, "ts": 10**30}, DeadLetterReason.BAD_TIMESTAMP, "years"),
        ({"driver_id": 1, "trips_today": 1, "ts": float("nan")}, DeadLetterReason.BAD_TIMESTAMP, "nan"),
    ],
)
def test_a_bad_record_is_named_and_the_others_are_kept(
    record: dict[str, object], reason: DeadLetterReason, words: str
) -> None:
    good: dict[str, object] = {"driver_id": 9, "trips_today": 9, "ts": T0_S}
    built = build(table(), [good, record, good])
    assert list(built.errors) == [1]
    assert built.errors[1].reason is reason
    assert words in built.errors[1].message
    assert built.rows.column("driver_id").to_pylist() == [9, 9]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (T0_S, T0),
        (T0_S + 0.25, T0 + timedelta(milliseconds=250)),
        (T0_S * 1000 + 5, T0 + timedelta(milliseconds=5)),
        (T0_S * 1_000_000 + 5, T0 + timedelta(microseconds=5)),
        (T0_S * 1_000_000_000 + 5000, T0 + timedelta(microseconds=5)),
        ("2026-03-01T12:00:00", T0),
        ("2026-03-01 13:00:00+01:00", T0),
        ("2026-03-01T12:00:00.000001Z", T0 + timedelta(microseconds=1)),
        (datetime(2026, 3, 1, 14, tzinfo=timezone(timedelta(hours=2))), T0),
        (datetime(2026, 3, 1, 12), T0),
    ],
)
def test_timestamps_in_every_accepted_form(value: object, expected: datetime) -> None:
    for records in ([{"driver_id": 1, "ts": value}], [{"driver_id": 1, "ts": value}, {"driver_id": 2, "ts": "x"}]):
        built = build(table(), records)
        assert built.rows.column(EVENT_TIMESTAMP).to_pylist()[0] == expected


def test_integer_timestamps_use_the_declared_unit() -> None:
    built = build(table(), [{"driver_id": 1, "ts": 5}], units={"ts": "ms"})
    assert built.rows.column(EVENT_TIMESTAMP).to_pylist() == [datetime(1970, 1, 1, 0, 0, 0, 5000, tzinfo=UTC)]


def test_lists_bytes_bools_and_timestamp_features() -> None:
    t = table(
        pv.Feature("ids", pv.ValueType.INT64_LIST),
        pv.Feature("blob", pv.ValueType.BYTES),
        pv.Feature("ok", pv.ValueType.BOOL),
        pv.Feature("seen", pv.ValueType.UNIX_TIMESTAMP),
        pv.Feature("seens", pv.ValueType.UNIX_TIMESTAMP_LIST),
    )
    good = {"driver_id": 1, "ts": T0_S, "ids": [1, None, 3], "blob": "aGk=", "ok": False, "seen": T0_S, "seens": [T0_S]}
    built = build(
        t,
        [
            good,
            good | {"ids": [1, 2.5]},
            good | {"ids": 3},
            good | {"blob": "not base64!"},
            good | {"ok": 1},
            good | {"seen": "never"},
            good | {"seens": ["never"]},
        ],
    )
    row = built.rows.to_pylist()[0]
    assert (row["ids"], row["blob"], row["ok"], row["seen"], row["seens"]) == ([1, None, 3], b"hi", False, T0, [T0])
    reasons = {i: e.reason for i, e in built.errors.items()}
    assert reasons == {
        1: DeadLetterReason.WRONG_TYPE,
        2: DeadLetterReason.WRONG_TYPE,
        3: DeadLetterReason.WRONG_TYPE,
        4: DeadLetterReason.WRONG_TYPE,
        5: DeadLetterReason.BAD_TIMESTAMP,
        6: DeadLetterReason.BAD_TIMESTAMP,
    }


def test_an_empty_batch_builds_empty_rows() -> None:
    built = build(table(), [])
    assert built.rows.num_rows == 0 and built.errors == {}


AVRO = {
    "type": "record",
    "name": "Trip",
    "fields": [
        {"name": "driver_id", "type": "long"},
        {"name": "trips_today", "type": ["null", "int"]},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}


def test_avro_schema_check_accepts_fitting_fields() -> None:
    t = table()
    assert t.stream_source is not None
    specs = RowBuilder(t, t.stream_source, TYPES).specs
    check_avro_schema(AVRO, specs, table="trips")


@pytest.mark.parametrize(
    ("field", "avro_type", "words"),
    [
        ("trips_today", "string", "cannot hold INT32"),
        ("driver_id", ["null", "double"], "cannot hold INT64"),
        ("ts", "boolean", "cannot hold UNIX_TIMESTAMP"),
    ],
)
def test_avro_schema_check_names_the_misfit(field: str, avro_type: object, words: str) -> None:
    t = table()
    assert t.stream_source is not None
    specs = RowBuilder(t, t.stream_source, TYPES).specs
    schema = json.loads(json.dumps(AVRO))
    for f in schema["fields"]:
        if f["name"] == field:
            f["type"] = avro_type
    with pytest.raises(pv.DataError, match=words) as failure:
        check_avro_schema(schema, specs, table="trips")
    assert repr(field) in str(failure.value)


def test_avro_schema_check_names_a_missing_field() -> None:
    t = table(mapping={"driver": "driver_id"})
    assert t.stream_source is not None
    specs = RowBuilder(t, t.stream_source, TYPES).specs
    with pytest.raises(pv.DataError, match=r"'driver'.*does not exist.*driver_id, trips_today, ts"):
        check_avro_schema(AVRO, specs, table="trips")


def test_fields_typed_by_the_avro_schema_take_a_fast_path_with_the_same_rows() -> None:
    t = table(pv.Feature("trips_today", pv.ValueType.INT32), pv.Feature("rate", pv.ValueType.FLOAT))
    assert t.stream_source is not None
    schema = {
        "type": "record",
        "name": "Trip",
        "fields": [
            {"name": "driver_id", "type": "long"},
            {"name": "trips_today", "type": ["null", "long"]},
            {"name": "rate", "type": ["null", "float", "int"]},
            {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        ],
    }
    specs = RowBuilder(t, t.stream_source, TYPES).specs
    trusted = check_avro_schema(schema, specs, table="trips")
    assert trusted == {"driver_id", "trips_today", "rate", "ts"}
    fast = RowBuilder(t, t.stream_source, TYPES, {"ts": "ms"}, trusted_fields=trusted)
    slow = RowBuilder(t, t.stream_source, TYPES, {"ts": "ms"})
    records: list[dict[str, object]] = [
        {"driver_id": i, "trips_today": None if i % 3 else i, "rate": i / 2 if i % 2 else i, "ts": T0_S * 1000 + i}
        for i in range(50)
    ]
    assert fast.build(records).rows.equals(slow.build(records).rows)
    bad_records: list[tuple[dict[str, object], DeadLetterReason]] = [
        ({"driver_id": None, "ts": T0_S * 1000}, DeadLetterReason.MISSING_ENTITY_KEY),
        ({"driver_id": 1, "trips_today": 2**40, "ts": T0_S * 1000}, DeadLetterReason.WRONG_TYPE),
        ({"driver_id": 1, "ts": 10**17}, DeadLetterReason.BAD_TIMESTAMP),
    ]
    for bad, reason in bad_records:
        built = fast.build([*records, bad])
        assert {i: e.reason for i, e in built.errors.items()} == {50: reason}
        assert built.rows.equals(slow.build(records).rows)


def test_records_decoded_as_columns_build_the_same_rows_and_errors() -> None:
    features = [
        pv.Feature("narrowed", pv.ValueType.INT32),
        pv.Feature("widened", pv.ValueType.DOUBLE),
        pv.Feature("rounded", pv.ValueType.FLOAT),
        pv.Feature("from_long", pv.ValueType.DOUBLE),
        pv.Feature("small", pv.ValueType.INT64),
        pv.Feature("flag", pv.ValueType.BOOL),
    ]
    t = table(*features, created="c")
    assert t.stream_source is not None
    schema = {
        "type": "record",
        "name": "Trip",
        "fields": [
            {"name": "driver_id", "type": ["null", "long"]},
            {"name": "narrowed", "type": "long"},
            {"name": "widened", "type": ["float", "null"]},
            {"name": "rounded", "type": "double"},
            {"name": "from_long", "type": "long"},
            {"name": "small", "type": "int"},
            {"name": "flag", "type": ["null", "boolean"]},
            {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "c", "type": ["null", "long"]},
        ],
    }
    decoder = AvroDecoder(pv.AvroFormat(json.dumps(schema)))
    specs = RowBuilder(t, t.stream_source, TYPES).specs
    trusted = check_avro_schema(decoder.schema, specs, table="trips")
    builder = RowBuilder(t, t.stream_source, TYPES, decoder.timestamp_units, trusted_fields=trusted)
    writer = fastavro.parse_schema(schema, named_schemas={})

    def record(i: int, **changes: object) -> dict[str, object]:
        values = {
            "driver_id": i,
            "narrowed": -i,
            "widened": i / 4,
            "rounded": 0.1 * i,
            "from_long": 2**40 + i,
            "small": i,
            "flag": [None, True, False][i % 3],
            "ts": T0_S * 10**6 + i,
            "c": None if i % 2 else i,
        }
        return values | changes

    good = [record(i) for i in range(20)]
    changes: list[tuple[dict[str, object], DeadLetterReason | None]] = [
        ({}, None),
        ({"driver_id": None}, DeadLetterReason.MISSING_ENTITY_KEY),
        ({"narrowed": 2**40}, DeadLetterReason.WRONG_TYPE),
        ({"from_long": 2**60 + 1}, DeadLetterReason.WRONG_TYPE),  # beyond the integers a double holds exactly
        ({"rounded": 1e300}, None),
        ({"ts": 10**18}, DeadLetterReason.BAD_TIMESTAMP),
    ]
    for extra, reason in changes:
        records = [*good, record(20, **extra)]
        values: list[bytes | None] = []
        for r in records:
            out = io.BytesIO()
            fastavro.schemaless_writer(out, writer, r)
            values.append(out.getvalue())
        decoded = decoder.decode(values)
        assert isinstance(decoded.records, ColumnRecords)
        from_columns = builder.build(decoded.records)
        from_dicts = builder.build(list(decoded.records))
        assert from_columns.rows.equals(from_dicts.rows)
        assert from_columns.errors == from_dicts.errors
        if reason is not None:
            assert {i: e.reason for i, e in from_columns.errors.items()} == {20: reason}


@pytest.mark.parametrize(
    "avro_type",
    [["null", "string", "long"], "double", {"type": "array", "items": "long"}],
)
def test_fields_the_schema_does_not_pin_down_are_checked_value_by_value(avro_type: object) -> None:
    t = table(pv.Feature("trips_today", pv.ValueType.STRING), pv.Feature("ids", pv.ValueType.INT64_LIST))
    assert t.stream_source is not None
    schema = {
        "type": "record",
        "name": "Trip",
        "fields": [
            {"name": "driver_id", "type": "long"},
            {"name": "trips_today", "type": avro_type if avro_type != "double" else "string"},
            {"name": "ids", "type": {"type": "array", "items": ["null", "long", "string"]}},
            {"name": "ts", "type": avro_type if avro_type == "double" else "long"},
        ],
    }
    specs = RowBuilder(t, t.stream_source, TYPES).specs
    if isinstance(avro_type, dict):
        with pytest.raises(pv.DataError, match="cannot hold STRING"):
            check_avro_schema(schema, specs, table="trips")
        return
    trusted = check_avro_schema(schema, specs, table="trips")
    assert "ids" not in trusted
    assert ("ts" in trusted) is (avro_type != "double")
    assert ("trips_today" in trusted) is (avro_type == "double")


def test_named_types_are_resolved_in_the_schema_check() -> None:
    t = table(pv.Feature("trips_today", pv.ValueType.STRING))
    assert t.stream_source is not None
    schema = {
        "type": "record",
        "name": "Trip",
        "namespace": "rides",
        "fields": [
            {"name": "driver_id", "type": "long"},
            {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
            {"name": "trips_today", "type": ["null", "rides.Kind"]},
            {"name": "ts", "type": "long"},
        ],
    }
    specs = RowBuilder(t, t.stream_source, TYPES).specs
    assert check_avro_schema(schema, specs, table="trips") == {"driver_id", "trips_today", "ts"}


def test_an_integer_a_float_feature_cannot_hold_exactly_is_a_bad_record_not_a_failed_batch() -> None:
    t = table(pv.Feature("rate", pv.ValueType.DOUBLE), pv.Feature("share", pv.ValueType.FLOAT))
    built = build(
        t,
        [
            {"driver_id": 1, "rate": 2**53, "share": -(2**24), "ts": T0_S},
            {"driver_id": 2, "rate": 2**60 + 1, "ts": T0_S},
            {"driver_id": 3, "share": 2**24 + 1, "ts": T0_S},
        ],
    )
    assert {i: e.reason for i, e in built.errors.items()} == {
        1: DeadLetterReason.WRONG_TYPE,
        2: DeadLetterReason.WRONG_TYPE,
    }
    assert "'rate'" in built.errors[1].message and "'share'" in built.errors[2].message
    assert built.rows.column("rate").to_pylist() == [2.0**53]
