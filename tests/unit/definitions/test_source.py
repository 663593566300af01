"""FileSource, KafkaSource and their formats: construction, immutability, validation."""

from __future__ import annotations

import dataclasses
import json

import pytest

from provender.definitions import AvroFormat, CsvFormat, FileSource, JsonFormat, KafkaSource, ParquetFormat
from tests.unit.definitions.expect import definition_error

AVRO_SCHEMA = json.dumps(
    {
        "type": "record",
        "name": "DriverTrips",
        "fields": [
            {"name": "driver_id", "type": "long"},
            {"name": "trips", "type": "int"},
            {"name": "datetime", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        ],
    }
)


def kafka(**overrides: object) -> KafkaSource:
    fields: dict[str, object] = {
        "bootstrap_servers": "localhost:9092",
        "topic": "driver_trips",
        "message_format": JsonFormat(),
        "event_timestamp_column": "datetime",
    }
    fields.update(overrides)
    return KafkaSource(**fields)  # type: ignore[arg-type]


def file(**overrides: object) -> FileSource:
    fields: dict[str, object] = {"path": "data/driver_statistics/", "event_timestamp_column": "datetime"}
    fields.update(overrides)
    return FileSource(**fields)  # type: ignore[arg-type]


# -- FileSource ---------------------------------------------------------------------------------


def test_file_source_defaults() -> None:
    source = file()
    assert source.file_format == ParquetFormat()
    assert source.created_timestamp_column is None
    assert source.date_partition_column is None
    assert dict(source.field_mapping) == {}


def test_file_source_with_every_field() -> None:
    source = FileSource(
        path="s3://bucket/driver_statistics/*.csv",
        event_timestamp_column="datetime",
        file_format=CsvFormat(delimiter=";"),
        created_timestamp_column="created",
        date_partition_column="date",
        field_mapping={"id": "driver_id"},
    )
    assert source.path == "s3://bucket/driver_statistics/*.csv"
    assert source.file_format == CsvFormat(delimiter=";")
    assert source.created_timestamp_column == "created"
    assert source.date_partition_column == "date"
    assert dict(source.field_mapping) == {"id": "driver_id"}


@pytest.mark.parametrize("path", ["", "   ", None, 5])
def test_file_source_path_is_required(path: object) -> None:
    with definition_error("FileSource", "path"):
        file(path=path)


@pytest.mark.parametrize("file_format", [JsonFormat(), AvroFormat(AVRO_SCHEMA), "parquet", None])
def test_file_source_format_must_be_a_file_format(file_format: object) -> None:
    with definition_error("FileSource", "file_format"):
        file(file_format=file_format)


@pytest.mark.parametrize("column", ["", "  ", None])
def test_file_source_event_timestamp_column_is_required(column: object) -> None:
    with definition_error("FileSource", "event_timestamp_column"):
        file(event_timestamp_column=column)


def test_file_source_created_column_must_differ_from_event_column() -> None:
    with definition_error("FileSource", "created_timestamp_column") as excinfo:
        file(created_timestamp_column="datetime")
    assert "must differ from event_timestamp_column" in str(excinfo.value)


@pytest.mark.parametrize("column", ["", " ", 5])
def test_file_source_empty_created_column_is_refused(column: object) -> None:
    with definition_error("FileSource", "created_timestamp_column"):
        file(created_timestamp_column=column)


@pytest.mark.parametrize("column", ["", " ", 5])
def test_file_source_empty_partition_column_is_refused(column: object) -> None:
    with definition_error("FileSource", "date_partition_column"):
        file(date_partition_column=column)


@pytest.mark.parametrize("mapping", [{"id": 5}, ["id"], "id=driver_id"])
def test_file_source_bad_field_mapping_is_refused(mapping: object) -> None:
    with definition_error("FileSource", "field_mapping"):
        file(field_mapping=mapping)


def test_file_source_is_frozen() -> None:
    source = file(field_mapping={"id": "driver_id"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        source.path = "elsewhere"  # type: ignore[misc]
    with pytest.raises(TypeError):
        source.field_mapping["id"] = "x"  # type: ignore[index]
    assert source == file(field_mapping={"id": "driver_id"})


# -- formats ------------------------------------------------------------------------------------


def test_csv_format_default_delimiter() -> None:
    assert CsvFormat().delimiter == ","
    assert CsvFormat(delimiter="\t").delimiter == "\t"


@pytest.mark.parametrize("delimiter", ["", ",,", "\t\t", None, 44])
def test_csv_format_delimiter_must_be_one_character(delimiter: object) -> None:
    with definition_error("CsvFormat", "delimiter"):
        CsvFormat(delimiter=delimiter)  # type: ignore[arg-type]


def test_avro_format_keeps_its_schema() -> None:
    assert AvroFormat(AVRO_SCHEMA).schema_json == AVRO_SCHEMA


@pytest.mark.parametrize("schema_json", ["{", "not json", "", None, 5])
def test_avro_format_refuses_bad_json(schema_json: object) -> None:
    with definition_error("AvroFormat", "schema_json") as excinfo:
        AvroFormat(schema_json)  # type: ignore[arg-type]
    assert "is not valid JSON" in str(excinfo.value)


@pytest.mark.parametrize(
    "schema",
    ['"string"', '{"type": "string"}', '{"type": "enum", "symbols": ["A"]}', '{"type": "record"}', "[]"],
)
def test_avro_format_refuses_non_record_schemas(schema: str) -> None:
    with definition_error("AvroFormat", "schema_json") as excinfo:
        AvroFormat(schema)
    assert "record schema" in str(excinfo.value)


def test_formats_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        CsvFormat().delimiter = ";"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        AvroFormat(AVRO_SCHEMA).schema_json = "{}"  # type: ignore[misc]
    assert ParquetFormat() == ParquetFormat()
    assert JsonFormat() == JsonFormat()
    assert CsvFormat(delimiter=";") != CsvFormat()


# -- KafkaSource --------------------------------------------------------------------------------


@pytest.mark.parametrize("message_format", [JsonFormat(), AvroFormat(AVRO_SCHEMA)])
def test_kafka_source(message_format: object) -> None:
    source = kafka(message_format=message_format, created_timestamp_column="created", field_mapping={"a": "b"})
    assert source.message_format == message_format
    assert source.bootstrap_servers == "localhost:9092"
    assert source.topic == "driver_trips"
    assert source.created_timestamp_column == "created"
    assert dict(source.field_mapping) == {"a": "b"}


def test_kafka_source_defaults() -> None:
    source = kafka()
    assert source.created_timestamp_column is None
    assert dict(source.field_mapping) == {}


@pytest.mark.parametrize("servers", ["", " ", None])
def test_kafka_source_needs_bootstrap_servers(servers: object) -> None:
    with definition_error("KafkaSource", "bootstrap_servers"):
        kafka(bootstrap_servers=servers)


@pytest.mark.parametrize("topic", ["", " ", None])
def test_kafka_source_needs_a_topic(topic: object) -> None:
    with definition_error("KafkaSource", "topic"):
        kafka(topic=topic)


@pytest.mark.parametrize("message_format", [ParquetFormat(), CsvFormat(), "json", None])
def test_kafka_source_format_must_be_a_message_format(message_format: object) -> None:
    with definition_error("KafkaSource", "message_format"):
        kafka(message_format=message_format)


@pytest.mark.parametrize("column", ["", " ", None])
def test_kafka_source_event_timestamp_column_is_required(column: object) -> None:
    with definition_error("KafkaSource", "event_timestamp_column"):
        kafka(event_timestamp_column=column)


def test_kafka_source_created_column_must_differ_from_event_column() -> None:
    with definition_error("KafkaSource", "created_timestamp_column"):
        kafka(created_timestamp_column="datetime")


def test_kafka_source_bad_field_mapping_is_refused() -> None:
    with definition_error("KafkaSource", "field_mapping"):
        kafka(field_mapping={"a": None})


def test_kafka_source_is_frozen() -> None:
    source = kafka()
    with pytest.raises(dataclasses.FrozenInstanceError):
        source.topic = "other"  # type: ignore[misc]
    assert source.topic == "driver_trips"
