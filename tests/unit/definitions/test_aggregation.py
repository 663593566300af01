"""Aggregation and FeatureTable(aggregations=...): features, types and every validation rule."""

from __future__ import annotations

import dataclasses
import pickle
from datetime import timedelta

import pytest

import provender as pv
from provender.definitions import Aggregation, Feature, FeatureTable, FileSource, ValueType
from provender.errors import DefinitionError
from provender.offline.plan import refuse_aggregations, table_join
from provender.registry import codec
from tests.unit.definitions.expect import definition_error

WEEK = timedelta(days=7)


def trips(*aggregations: Aggregation, features: list[Feature] | None = None) -> FeatureTable:
    return FeatureTable(
        name="trips",
        entities=["rider"],
        features=features or [Feature("fare", ValueType.FLOAT), Feature("city", ValueType.STRING)],
        batch_source=FileSource(path="data/trips", event_timestamp_column="ts"),
        aggregations=list(aggregations),
    )


def test_aggregations_are_features_of_the_table_after_the_declared_ones() -> None:
    table = trips(
        pv.Aggregation(column="fare", function="sum", window=WEEK, name="fare_sum_7d"),
        Aggregation(column="fare", function="count", window=timedelta(days=30), name="fare_count_30d"),
        Aggregation(column="city", function="count_distinct", window=WEEK, name="cities_7d"),
        Aggregation(column="fare", function="mean", window=WEEK, name="fare_mean_7d"),
        Aggregation(column="city", function="last", window=WEEK, name="last_city"),
        Aggregation(column="fare", function="max", window=WEEK, name="fare_max_7d"),
    )
    assert table.feature_names == (
        "fare", "city", "fare_sum_7d", "fare_count_30d", "cities_7d", "fare_mean_7d", "last_city", "fare_max_7d"
    )  # fmt: skip
    types = {f.name: f.value_type for f in table.features}
    assert types["fare_sum_7d"] is ValueType.DOUBLE
    assert types["fare_count_30d"] is ValueType.INT64
    assert types["cities_7d"] is ValueType.INT64
    assert types["fare_mean_7d"] is ValueType.DOUBLE
    assert types["last_city"] is ValueType.STRING
    assert types["fare_max_7d"] is ValueType.FLOAT
    assert [f.name for f in table.source_features] == ["fare", "city"]
    assert table.get_aggregation("fare_sum_7d") == table.aggregations[0]
    assert table.get_aggregation("fare") is None
    # replace() passes the derived features back; they are recognized, not declared twice
    assert dataclasses.replace(table, max_age=WEEK).features == table.features
    assert pickle.loads(pickle.dumps(table)) == table


def test_integer_sum_stays_integer() -> None:
    table = trips(
        Aggregation(column="n", function="sum", window=WEEK, name="n_7d"),
        features=[Feature("n", ValueType.INT32)],
    )
    assert table.get_feature("n_7d") == Feature("n_7d", ValueType.INT64)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"function": "median"}, "function"),
        ({"window": timedelta(0)}, "window"),
        ({"window": timedelta(days=-1)}, "window"),
        ({"window": 7}, "window"),
        ({"name": "bad name"}, "name"),
        ({"column": "bad-col"}, "column"),
    ],
)
def test_bad_aggregations_are_refused_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    fields: dict[str, object] = {"column": "fare", "function": "sum", "window": WEEK, "name": "fare_sum_7d"} | kwargs
    with definition_error("Aggregation", field) as excinfo:
        Aggregation(**fields)  # type: ignore[arg-type]
    if field == "function":
        assert "median" in str(excinfo.value) and "count_distinct" in str(excinfo.value)


def test_unknown_input_column_is_refused() -> None:
    with definition_error("FeatureTable 'trips'", "aggregations") as excinfo:
        trips(Aggregation(column="tip", function="sum", window=WEEK, name="tip_7d"))
    assert "'tip'" in str(excinfo.value) and "fare, city" in str(excinfo.value)


def test_type_mismatch_between_input_and_function_is_refused() -> None:
    with definition_error("Aggregation 'city_sum'", "function") as excinfo:
        trips(Aggregation(column="city", function="sum", window=WEEK, name="city_sum"))
    assert "STRING" in str(excinfo.value)


@pytest.mark.parametrize("name", ["fare", "rider", "dup"])
def test_names_must_be_unique(name: str) -> None:
    first = Aggregation(column="fare", function="sum", window=WEEK, name="dup")
    with definition_error("FeatureTable 'trips'", "aggregations"):
        trips(first, Aggregation(column="fare", function="count", window=WEEK, name=name))


def test_an_aggregation_named_like_the_column_it_reads_is_refused_naming_both() -> None:
    with definition_error("FeatureTable 'trips'", "aggregations") as excinfo:
        trips(Aggregation(column="fare", function="sum", window=WEEK, name="fare"))
    assert "aggregation 'fare' reads column 'fare', which is also the name of an aggregation" in str(excinfo.value)


def test_a_feature_named_like_an_aggregation_is_refused_naming_it() -> None:
    features = [Feature("fare", ValueType.FLOAT), Feature("fare_7d", ValueType.STRING)]
    with definition_error("FeatureTable 'trips'", "features") as excinfo:
        trips(Aggregation(column="fare", function="sum", window=WEEK, name="fare_7d"), features=features)
    assert "feature 'fare_7d' has the name of an aggregation" in str(excinfo.value)


def test_aggregations_need_a_batch_source() -> None:
    with definition_error("FeatureTable 'trips'", "aggregations"):
        FeatureTable(
            name="trips",
            entities=["rider"],
            features=[Feature("fare", ValueType.FLOAT)],
            stream_source=pv.KafkaSource(
                bootstrap_servers="localhost:9092",
                topic="t",
                message_format=pv.JsonFormat(),
                event_timestamp_column="ts",
            ),
            aggregations=[Aggregation(column="fare", function="sum", window=WEEK, name="s")],
        )


def test_not_an_aggregation_is_refused() -> None:
    with definition_error("FeatureTable 'trips'", "aggregations"):
        trips("fare_sum_7d")  # type: ignore[arg-type]


# -- the registry codec -------------------------------------------------------------------------


def test_codec_round_trips_aggregations_as_version_3() -> None:
    table = trips(
        Aggregation(column="fare", function="sum", window=timedelta(days=7, microseconds=3), name="fare_sum_7d"),
        Aggregation(column="city", function="last", window=timedelta(hours=1), name="last_city", description="d"),
    )
    data = codec.to_dict(table)
    assert data["format_version"] == 3
    assert codec.FORMAT_VERSION >= 3  # version 4 (Delta sources) still writes these as 3
    assert codec.from_json(codec.to_json(table)) == table


def test_codec_writes_approx_count_distinct_as_version_6_which_older_readers_refuse() -> None:
    table = trips(
        Aggregation(column="fare", function="sum", window=timedelta(days=7), name="fare_sum_7d"),
        Aggregation(column="city", function="approx_count_distinct", window=timedelta(hours=1), name="cities_1h"),
    )
    data = codec.to_dict(table)
    assert data["format_version"] == 6 < codec.FORMAT_VERSION
    assert codec.from_json(codec.to_json(table)) == table
    # a reader of version 5 refuses the record as newer than it knows (not as an unknown function)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(codec, "FORMAT_VERSION", 5)
        with pytest.raises(DefinitionError, match="newer than this Provender understands"):
            codec.from_dict(data)


def test_older_records_still_load_and_tables_without_aggregations_stay_version_2() -> None:
    plain = trips()
    text = codec.to_json(plain)
    assert '"format_version":2' in text and "aggregations" not in text
    restored = codec.from_json(text)
    assert isinstance(restored, FeatureTable)
    assert restored == plain and restored.aggregations == ()
    version_1 = {
        "format_version": 1,
        "kind": "feature_table",
        "spec": {
            "name": "trips",
            "entities": ["rider"],
            "features": [{"name": "fare", "value_type": "FLOAT", "description": ""}],
            "batch_source": codec.to_dict(plain)["spec"]["batch_source"],  # type: ignore[index]
            "stream_source": None,
            "max_age_us": None,
            "labels": {},
        },
    }
    old = codec.from_dict(version_1)
    assert isinstance(old, FeatureTable)
    assert old.aggregations == () and old.feature_names == ("fare",)


def test_bad_stored_aggregation_is_refused_naming_it() -> None:
    data = codec.to_dict(trips(Aggregation(column="fare", function="sum", window=WEEK, name="s")))
    data["spec"]["aggregations"][0]["function"] = "median"  # type: ignore[index]
    with definition_error("Aggregation 's'", "function"):
        codec.from_dict(data)


def test_engines_without_aggregations_refuse_them_clearly() -> None:
    rider = pv.Entity(name="rider", value_type=ValueType.INT64)
    table = trips(Aggregation(column="fare", function="sum", window=WEEK, name="fare_sum_7d"))
    join = table_join(table, table.features, {"rider": rider})
    assert [f.name for f in join.plain_features] == ["fare", "city"]
    assert [a.name for _, a in join.aggregations] == ["fare_sum_7d"]
    assert join.lookback is None  # plain features without max_age reach back forever
    only_sum = table_join(table, [table.features[2]], {"rider": rider})
    assert only_sum.lookback == WEEK and [f.name for f in only_sum.source_features] == ["fare"]
    with pytest.raises(pv.DataError, match="'trips' has windowed aggregations, which the spark engine"):
        refuse_aggregations([join], engine="spark", what="ingestion")
    refuse_aggregations([table_join(trips(), trips().features, {"rider": rider})], engine="spark", what="ingestion")
