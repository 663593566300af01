"""The versioned JSON codec: exact round trips, stable text, refusal of what it cannot read."""

from __future__ import annotations

import json
import keyword
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provender import (
    AvroFormat,
    CsvFormat,
    DefinitionError,
    Entity,
    Feature,
    FeatureTable,
    FileSource,
    JsonFormat,
    KafkaSource,
    ParquetFormat,
    ValueType,
)
from provender.definitions.types import ENTITY_KEY_TYPES
from provender.registry import codec
from tests.unit.registry.definitions import driver, driver_statistics

AVRO_SCHEMA = json.dumps(
    {
        "type": "record",
        "name": "Trip",
        "fields": [{"name": "driver_id", "type": "long"}, {"name": "datetime", "type": "long"}],
    }
)


def round_trip(definition: Entity | FeatureTable) -> Entity | FeatureTable:
    text = codec.to_json(definition)
    restored = codec.from_json(text)
    assert type(restored) is type(definition)
    assert restored == definition
    assert codec.to_json(restored) == text
    return restored


def kafka_source(message_format: AvroFormat | JsonFormat) -> KafkaSource:
    return KafkaSource(
        bootstrap_servers="broker-1:9092,broker-2:9092",
        topic="driver_trips",
        message_format=message_format,
        event_timestamp_column="datetime",
        created_timestamp_column="created",
        field_mapping={"id": "driver_id", "trips": "avg_daily_trips"},
    )


# -- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("value_type", list(ValueType))
def test_every_value_type_round_trips_as_a_feature(value_type: ValueType) -> None:
    table = driver_statistics(features=[Feature("value", value_type, "a feature")])
    restored = round_trip(table)
    assert isinstance(restored, FeatureTable)
    assert restored.features[0].value_type is value_type


@pytest.mark.parametrize("value_type", sorted(ENTITY_KEY_TYPES))
def test_entities_of_every_key_type_round_trip(value_type: ValueType) -> None:
    entity = Entity(name="key", value_type=value_type, description="the key", labels={"team": "ride", "tier": "1"})
    restored = round_trip(entity)
    assert isinstance(restored, Entity)
    assert restored.value_type is value_type
    assert dict(restored.labels) == {"team": "ride", "tier": "1"}


@pytest.mark.parametrize(
    "file_format", [ParquetFormat(), CsvFormat(), CsvFormat(delimiter="|"), CsvFormat(delimiter="\t")]
)
def test_file_source_with_every_optional_field_round_trips(file_format: ParquetFormat | CsvFormat) -> None:
    source = FileSource(
        path="gs://bucket/driver_statistics/",
        event_timestamp_column="event time",
        file_format=file_format,
        created_timestamp_column="created",
        date_partition_column="date",
        field_mapping={"id": "driver_id"},
    )
    restored = round_trip(driver_statistics(batch_source=source))
    assert isinstance(restored, FeatureTable)
    assert restored.batch_source == source
    assert restored.batch_source is not None
    assert restored.batch_source.file_format == file_format


def test_file_source_with_no_optional_field_round_trips() -> None:
    source = FileSource(path="data.csv", event_timestamp_column="ts", file_format=CsvFormat())
    restored = round_trip(driver_statistics(batch_source=source))
    assert isinstance(restored, FeatureTable)
    assert restored.batch_source == source


@pytest.mark.parametrize("message_format", [AvroFormat(AVRO_SCHEMA), JsonFormat()])
def test_kafka_source_round_trips(message_format: AvroFormat | JsonFormat) -> None:
    restored = round_trip(driver_statistics(stream_source=kafka_source(message_format)))
    assert isinstance(restored, FeatureTable)
    assert restored.stream_source == kafka_source(message_format)


def test_stream_only_table_round_trips() -> None:
    restored = round_trip(driver_statistics(batch_source=None, stream_source=kafka_source(JsonFormat())))
    assert isinstance(restored, FeatureTable)
    assert restored.batch_source is None


@pytest.mark.parametrize(
    "max_age",
    [
        None,
        timedelta(microseconds=1),
        timedelta(milliseconds=1),
        timedelta(seconds=1, microseconds=500_001),
        timedelta(days=1),
        timedelta(days=36500, microseconds=999_999),
    ],
)
def test_max_age_round_trips_exactly(max_age: timedelta | None) -> None:
    restored = round_trip(driver_statistics(max_age=max_age))
    assert isinstance(restored, FeatureTable)
    assert restored.max_age == max_age


def test_max_age_is_stored_in_whole_microseconds() -> None:
    data = json.loads(codec.to_json(driver_statistics(max_age=timedelta(seconds=1, microseconds=5))))
    assert data["spec"]["max_age_us"] == 1_000_005
    assert json.loads(codec.to_json(driver_statistics(max_age=None)))["spec"]["max_age_us"] is None


@pytest.mark.parametrize("labels", [{}, {"owner": "ride-team"}, {"ünïcödé": "✓", "": "empty key", "k": ""}])
def test_labels_round_trip(labels: dict[str, str]) -> None:
    restored = round_trip(driver_statistics(labels=labels))
    assert isinstance(restored, FeatureTable)
    assert dict(restored.labels) == labels


def test_feature_order_and_descriptions_are_kept() -> None:
    features = [Feature("z", ValueType.INT32, "last letter"), Feature("a", ValueType.STRING_LIST, "first")]
    restored = round_trip(driver_statistics(features=features))
    assert isinstance(restored, FeatureTable)
    assert restored.features == tuple(features)


def test_composite_key_order_is_kept() -> None:
    restored = round_trip(driver_statistics(entities=["driver_id", "customer_id"]))
    assert isinstance(restored, FeatureTable)
    assert restored.entities == ("driver_id", "customer_id")


# -- the JSON form ------------------------------------------------------------------------------


def test_envelope_shape() -> None:
    entity_data = json.loads(codec.to_json(driver()))
    assert entity_data == {
        "format_version": 2,
        "kind": "entity",
        "spec": {"name": "driver_id", "value_type": "INT64", "description": "Driver id", "labels": {}},
    }
    table_data = json.loads(codec.to_json(driver_statistics()))
    assert table_data["format_version"] == 2
    assert table_data["kind"] == "feature_table"
    assert table_data["spec"]["batch_source"]["type"] == "file"
    assert table_data["spec"]["batch_source"]["file_format"] == {"type": "parquet"}


def test_json_is_stable() -> None:
    assert codec.to_json(driver_statistics()) == codec.to_json(driver_statistics())
    # equal objects built with labels and mappings in another order give identical text
    first = driver_statistics(labels={"a": "1", "b": "2"})
    second = driver_statistics(labels={"b": "2", "a": "1"})
    assert codec.to_json(first) == codec.to_json(second)
    text = codec.to_json(first)
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))


def test_different_objects_give_different_text() -> None:
    assert codec.to_json(driver_statistics()) != codec.to_json(driver_statistics(max_age=timedelta(hours=1)))
    assert codec.to_json(driver()) != codec.to_json(driver(description="other"))


def test_to_dict_refuses_other_objects() -> None:
    with pytest.raises(TypeError, match="expected Entity, FeatureTable or OnDemandFeatures"):
        codec.to_dict(Feature("f", ValueType.INT32))  # type: ignore[arg-type]


# -- refusals -----------------------------------------------------------------------------------


def test_newer_format_version_is_refused_clearly() -> None:
    data = codec.to_dict(driver_statistics())
    data["format_version"] = codec.FORMAT_VERSION + 1
    with pytest.raises(DefinitionError) as excinfo:
        codec.from_json(json.dumps(data))
    assert excinfo.value.field == "format_version"
    message = str(excinfo.value)
    assert f"{codec.FORMAT_VERSION + 1} is newer than this Provender understands ({codec.FORMAT_VERSION})" in message
    assert "upgrade provender" in message


@pytest.mark.parametrize("version", [None, 0, -1, "1", 1.0])
def test_missing_or_invalid_format_version_is_refused(version: object) -> None:
    data = codec.to_dict(driver())
    if version is None:
        del data["format_version"]
    else:
        data["format_version"] = version
    with pytest.raises(DefinitionError) as excinfo:
        codec.from_dict(data)
    assert excinfo.value.field == "format_version"


@pytest.mark.parametrize("kind", ["feature_view", "Entity", None, ""])
def test_unknown_kind_is_refused(kind: object) -> None:
    data = codec.to_dict(driver())
    data["kind"] = kind
    with pytest.raises(DefinitionError) as excinfo:
        codec.from_dict(data)
    assert excinfo.value.field == "kind"
    assert f"unknown kind {kind!r}" in str(excinfo.value)


@pytest.mark.parametrize("text", ["", "{", "not json", "[1, 2"])
def test_invalid_json_is_refused(text: str) -> None:
    with pytest.raises(DefinitionError, match="is not valid JSON"):
        codec.from_json(text)


@pytest.mark.parametrize("data", [[], "entity", 1, None])
def test_non_object_record_is_refused(data: object) -> None:
    with pytest.raises(DefinitionError) as excinfo:
        codec.from_dict(data)
    assert excinfo.value.field == "record"


def test_missing_spec_field_is_named() -> None:
    data = codec.to_dict(driver_statistics())
    spec = data["spec"]
    assert isinstance(spec, dict)
    del spec["entities"]
    with pytest.raises(DefinitionError) as excinfo:
        codec.from_dict(data)
    assert "entities" in excinfo.value.field


def test_unknown_file_format_is_refused() -> None:
    data = json.loads(codec.to_json(driver_statistics()))
    data["spec"]["batch_source"]["file_format"] = {"type": "orc"}
    with pytest.raises(DefinitionError, match="unknown format 'orc'"):
        codec.from_dict(data)


def test_unknown_message_format_is_refused() -> None:
    data = json.loads(codec.to_json(driver_statistics(stream_source=kafka_source(JsonFormat()))))
    data["spec"]["stream_source"]["message_format"] = {"type": "protobuf"}
    with pytest.raises(DefinitionError, match="unknown format 'protobuf'"):
        codec.from_dict(data)


def test_stored_definitions_are_validated_again_on_read() -> None:
    data = json.loads(codec.to_json(driver_statistics()))
    data["spec"]["max_age_us"] = 0
    with pytest.raises(DefinitionError) as excinfo:
        codec.from_dict(data)
    assert excinfo.value.field == "max_age"


# -- property: any valid feature table round trips ----------------------------------------------

identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True).filter(
    lambda name: "__" not in name and not keyword.iskeyword(name)
)
columns = st.text(min_size=1, max_size=12).filter(lambda text: bool(text.strip()))
free_text = st.text(max_size=20)
string_maps = st.dictionaries(free_text, free_text, max_size=3)
max_ages = st.none() | st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=100_000))


@st.composite
def file_sources(draw: st.DrawFn) -> FileSource:
    event = draw(columns)
    created = draw(st.none() | columns.filter(lambda column: column != event))
    return FileSource(
        path=draw(columns),
        event_timestamp_column=event,
        file_format=draw(
            st.sampled_from([ParquetFormat()]) | st.builds(CsvFormat, delimiter=st.characters(codec="utf-8"))
        ),
        created_timestamp_column=created,
        date_partition_column=draw(st.none() | columns),
        field_mapping=draw(string_maps),
    )


@st.composite
def kafka_sources(draw: st.DrawFn) -> KafkaSource:
    event = draw(columns)
    return KafkaSource(
        bootstrap_servers=draw(columns),
        topic=draw(columns),
        message_format=draw(st.sampled_from([JsonFormat(), AvroFormat(AVRO_SCHEMA)])),  # type: ignore[arg-type]
        event_timestamp_column=event,
        created_timestamp_column=draw(st.none() | columns.filter(lambda column: column != event)),
        field_mapping=draw(string_maps),
    )


@st.composite
def feature_tables(draw: st.DrawFn) -> FeatureTable:
    entities = draw(st.lists(identifiers, min_size=1, max_size=3, unique=True))
    feature_names = draw(
        st.lists(identifiers.filter(lambda name: name not in entities), min_size=1, max_size=6, unique=True)
    )
    features = [Feature(name, draw(st.sampled_from(list(ValueType))), draw(free_text)) for name in feature_names]
    has_batch, has_stream = draw(st.sampled_from([(True, False), (False, True), (True, True)]))
    batch = draw(file_sources()) if has_batch else None
    stream = draw(kafka_sources()) if has_stream else None
    return FeatureTable(
        name=draw(identifiers),
        entities=entities,
        features=features,
        batch_source=batch,
        stream_source=stream,
        max_age=draw(max_ages),
        labels=draw(string_maps),
    )


@settings(database=None, max_examples=200, deadline=None)
@given(table=feature_tables())
def test_any_valid_feature_table_round_trips(table: FeatureTable) -> None:
    round_trip(table)


@settings(database=None, max_examples=100, deadline=None)
@given(
    name=identifiers,
    value_type=st.sampled_from(sorted(ENTITY_KEY_TYPES)),
    description=free_text,
    labels=string_maps,
)
def test_any_valid_entity_round_trips(
    name: str, value_type: ValueType, description: str, labels: dict[str, str]
) -> None:
    round_trip(Entity(name=name, value_type=value_type, description=description, labels=labels))


@pytest.mark.parametrize("kind", ["entity", "feature_table"])
def test_unknown_value_type_in_a_record_is_a_definition_error(kind: str) -> None:
    data = json.loads(codec.to_json(driver() if kind == "entity" else driver_statistics()))
    if kind == "entity":
        data["spec"]["value_type"] = "DECIMAL"
    else:
        data["spec"]["features"][0]["value_type"] = "DECIMAL"
    with pytest.raises(DefinitionError) as excinfo:
        codec.from_dict(data)
    assert excinfo.value.field == "value_type"
    assert "'DECIMAL' is not a ValueType" in str(excinfo.value)
