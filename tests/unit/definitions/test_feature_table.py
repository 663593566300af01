"""Feature and FeatureTable: construction, immutability and every validation rule."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from provender.definitions import (
    Feature,
    FeatureTable,
    FileSource,
    JsonFormat,
    KafkaSource,
    ParquetFormat,
    ValueType,
)
from provender.errors import DefinitionError
from tests.unit.definitions.expect import definition_error

BAD_NAMES = ["driver stats", "1stats", "driver-stats", "", "def", "lambda", "driver__stats", "stats.v2"]
TABLE = "FeatureTable 'driver_statistics'"


def batch_source() -> FileSource:
    return FileSource(path="data/driver_statistics/", event_timestamp_column="datetime")


def stream_source() -> KafkaSource:
    return KafkaSource(
        bootstrap_servers="localhost:9092",
        topic="driver_trips",
        message_format=JsonFormat(),
        event_timestamp_column="datetime",
    )


def make_table(**overrides: object) -> FeatureTable:
    fields: dict[str, object] = {
        "name": "driver_statistics",
        "entities": ["driver_id"],
        "features": [Feature("avg_daily_trips", ValueType.INT32), Feature("conv_rate", ValueType.FLOAT)],
        "batch_source": batch_source(),
    }
    fields.update(overrides)
    return FeatureTable(**fields)  # type: ignore[arg-type]


# -- Feature ------------------------------------------------------------------------------------


def test_feature_positional_construction() -> None:
    feature = Feature("conv_rate", ValueType.FLOAT, "conversion rate")
    assert (feature.name, feature.value_type, feature.description) == (
        "conv_rate",
        ValueType.FLOAT,
        "conversion rate",
    )
    assert Feature("conv_rate", ValueType.FLOAT).description == ""


@pytest.mark.parametrize("value_type", list(ValueType))
def test_feature_accepts_every_value_type(value_type: ValueType) -> None:
    assert Feature("f", value_type).value_type is value_type


def test_feature_value_type_string_is_converted() -> None:
    assert Feature("f", "DOUBLE_LIST").value_type is ValueType.DOUBLE_LIST  # type: ignore[arg-type]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_feature_bad_names_are_refused(name: str) -> None:
    with definition_error(f"Feature {name!r}", "name"):
        Feature(name, ValueType.INT32)


@pytest.mark.parametrize("value_type", ["FLOAT32", None, 1])
def test_feature_unknown_value_type_is_refused(value_type: object) -> None:
    with definition_error("Feature 'f'", "value_type"):
        Feature("f", value_type)  # type: ignore[arg-type]


def test_feature_description_must_be_a_string() -> None:
    with definition_error("Feature 'f'", "description"):
        Feature("f", ValueType.INT32, 5)  # type: ignore[arg-type]


def test_feature_is_frozen() -> None:
    feature = Feature("f", ValueType.INT32)
    with pytest.raises(dataclasses.FrozenInstanceError):
        feature.value_type = ValueType.INT64  # type: ignore[misc]
    assert feature.value_type is ValueType.INT32


# -- FeatureTable: valid ------------------------------------------------------------------------


def test_design_example_is_valid() -> None:
    table = FeatureTable(
        name="driver_statistics",
        entities=["driver_id"],
        features=[
            Feature("avg_daily_trips", ValueType.INT32),
            Feature("conv_rate", ValueType.FLOAT),
            Feature("acc_rate", ValueType.FLOAT),
        ],
        batch_source=FileSource(
            path="data/driver_statistics/",
            file_format=ParquetFormat(),
            event_timestamp_column="datetime",
            created_timestamp_column="created",
            date_partition_column="date",
        ),
        stream_source=stream_source(),
        max_age=timedelta(days=1),
        labels={"owner": "ride-team"},
    )
    assert table.entities == ("driver_id",)
    assert isinstance(table.features, tuple)
    assert table.feature_names == ("avg_daily_trips", "conv_rate", "acc_rate")
    assert table.get_feature("conv_rate") == Feature("conv_rate", ValueType.FLOAT)
    assert table.get_feature("nope") is None
    assert table.max_age == timedelta(days=1)
    assert dict(table.labels) == {"owner": "ride-team"}


def test_defaults() -> None:
    table = make_table()
    assert table.stream_source is None
    assert table.max_age is None
    assert dict(table.labels) == {}


def test_composite_key() -> None:
    table = make_table(entities=("driver_id", "customer_id"))
    assert table.entities == ("driver_id", "customer_id")


def test_stream_only_table_is_valid() -> None:
    table = make_table(batch_source=None, stream_source=stream_source())
    assert table.batch_source is None
    assert table.stream_source == stream_source()


@pytest.mark.parametrize("max_age", [timedelta(microseconds=1), timedelta(seconds=0.5), timedelta(days=3650)])
def test_positive_max_age_is_kept_exactly(max_age: timedelta) -> None:
    assert make_table(max_age=max_age).max_age == max_age


def test_equality_is_by_value() -> None:
    assert make_table() == make_table()
    assert make_table(labels={"a": "1", "b": "2"}) == make_table(labels={"b": "2", "a": "1"})
    assert make_table() != make_table(max_age=timedelta(hours=1))
    assert make_table() != make_table(features=[Feature("avg_daily_trips", ValueType.INT64)])


# -- FeatureTable: refused ----------------------------------------------------------------------


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_table_names_are_refused(name: str) -> None:
    with definition_error(f"FeatureTable {name!r}", "name"):
        make_table(name=name)


@pytest.mark.parametrize("entity", ["driver id", "class", "driver__id", "", 5])
def test_bad_entity_names_are_refused(entity: object) -> None:
    with definition_error(TABLE, "entities"):
        make_table(entities=[entity])


def test_entities_as_a_plain_string_is_refused() -> None:
    with definition_error(TABLE, "entities") as excinfo:
        make_table(entities="driver_id")
    assert "must be a list of entity names, e.g. ['driver_id']" in str(excinfo.value)


@pytest.mark.parametrize("entities", [[], (), None, 5])
def test_no_entities_is_refused(entities: object) -> None:
    with definition_error(TABLE, "entities"):
        make_table(entities=entities)


def test_duplicate_entities_are_refused() -> None:
    with definition_error(TABLE, "entities"):
        make_table(entities=["driver_id", "driver_id"])


@pytest.mark.parametrize("features", [[], (), None, "conv_rate", ["conv_rate"]])
def test_no_features_or_non_features_are_refused(features: object) -> None:
    with definition_error(TABLE, "features"):
        make_table(features=features)


def test_duplicate_feature_names_are_refused() -> None:
    with pytest.raises(DefinitionError) as excinfo:
        make_table(features=[Feature("conv_rate", ValueType.FLOAT), Feature("conv_rate", ValueType.DOUBLE)])
    assert (excinfo.value.obj, excinfo.value.field) == (TABLE, "features")
    assert "'conv_rate' appears twice" in str(excinfo.value)


def test_feature_named_like_an_entity_is_refused() -> None:
    with pytest.raises(DefinitionError) as excinfo:
        make_table(entities=["driver_id"], features=[Feature("driver_id", ValueType.INT64)])
    assert (excinfo.value.obj, excinfo.value.field) == (TABLE, "features")
    assert "'driver_id' has the name of an entity" in str(excinfo.value)


def test_no_source_is_refused() -> None:
    with definition_error(TABLE, "batch_source"):
        make_table(batch_source=None, stream_source=None)


def test_batch_source_must_be_a_file_source() -> None:
    with definition_error(TABLE, "batch_source"):
        make_table(batch_source=stream_source())


def test_stream_source_must_be_a_kafka_source() -> None:
    with definition_error(TABLE, "stream_source"):
        make_table(stream_source=batch_source())


@pytest.mark.parametrize(
    "max_age",
    [timedelta(0), timedelta(seconds=-1), timedelta(microseconds=-1), 3600, 86400.0, "1d", True],
)
def test_bad_max_age_is_refused(max_age: object) -> None:
    with definition_error(TABLE, "max_age"):
        make_table(max_age=max_age)


@pytest.mark.parametrize("labels", [{"owner": 1}, {2: "x"}, ["owner"], "owner"])
def test_bad_labels_are_refused(labels: object) -> None:
    with definition_error(TABLE, "labels"):
        make_table(labels=labels)


# -- immutability -------------------------------------------------------------------------------


def test_feature_table_is_frozen() -> None:
    table = make_table()
    for field, value in [("name", "x"), ("max_age", timedelta(1)), ("entities", ("a",)), ("labels", {})]:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(table, field, value)
    assert table == make_table()


def test_caller_lists_are_copied_into_tuples() -> None:
    entities = ["driver_id"]
    features = [Feature("conv_rate", ValueType.FLOAT)]
    labels = {"owner": "ride"}
    table = make_table(entities=entities, features=features, labels=labels)
    entities.append("customer_id")
    features.append(Feature("acc_rate", ValueType.FLOAT))
    labels["owner"] = "other"
    assert table.entities == ("driver_id",)
    assert table.feature_names == ("conv_rate",)
    assert dict(table.labels) == {"owner": "ride"}
    with pytest.raises(TypeError):
        table.labels["owner"] = "x"  # type: ignore[index]
