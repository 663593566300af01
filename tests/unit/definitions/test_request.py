"""The request model: refs -> tables, features, result columns, types; and the normalized row schema.

The same rules hold on every path; ``tests/e2e/test_ref_parity.py`` checks that each path gives
the same columns or the same error for the same refs.
"""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
import pytest

import provender as pv
from provender.definitions.request import FeatureRequest, result_column, row_schema

DRIVER = pv.Entity(name="driver_id", value_type=pv.ValueType.INT64)
CUSTOMER = pv.Entity(name="customer_id", value_type=pv.ValueType.STRING)
ENTITIES = {"driver_id": DRIVER, "customer_id": CUSTOMER}
SOURCE = pv.FileSource(path="stats/", event_timestamp_column="ts")
STATS = pv.FeatureTable(
    name="driver_stats",
    entities=["driver_id"],
    features=[
        pv.Feature("trips", pv.ValueType.INT64),
        pv.Feature("rate", pv.ValueType.FLOAT),
        pv.Feature("tags", pv.ValueType.STRING_LIST),
    ],
    batch_source=SOURCE,
    max_age=timedelta(hours=2),
)
PAIRS = pv.FeatureTable(
    name="pair_stats",
    entities=["driver_id", "customer_id"],
    features=[pv.Feature("score", pv.ValueType.DOUBLE)],
    batch_source=SOURCE,
)
ORPHAN = pv.FeatureTable(
    name="orphan", entities=["vehicle_id"], features=[pv.Feature("x", pv.ValueType.INT64)], batch_source=SOURCE
)
TABLES = {t.name: t for t in (STATS, PAIRS, ORPHAN)}


def resolve(refs: object, project: str = "p") -> FeatureRequest:
    return FeatureRequest.resolve(refs, feature_tables=TABLES, entities=ENTITIES, project=project)  # type: ignore[arg-type]


def test_columns_keep_ref_order_and_bare_tables_expand_in_declaration_order() -> None:
    request = resolve(["pair_stats:score", "driver_stats"])
    assert request.columns == ("pair_stats__score", "driver_stats__trips", "driver_stats__rate", "driver_stats__tags")
    assert [t.name for t in request.tables] == ["pair_stats", "driver_stats"]
    assert request.refs == ("pair_stats:score", "driver_stats")
    request = resolve(("driver_stats:rate", "pair_stats:score", "driver_stats:trips"))
    assert request.columns == ("driver_stats__rate", "pair_stats__score", "driver_stats__trips")
    [stats, pairs] = request.tables
    assert stats.columns == ("driver_stats__rate", "driver_stats__trips")
    assert stats.indexes == (1, 0)
    assert [f.name for f in stats.features] == ["rate", "trips"]
    assert [e.name for e in pairs.entities] == ["driver_id", "customer_id"]


def test_entities_and_types() -> None:
    request = resolve(["driver_stats:tags", "pair_stats"])
    assert [e.name for e in request.entities] == ["driver_id", "customer_id"]
    assert dict(request.types) == {
        "driver_id": pv.ValueType.INT64,
        "customer_id": pv.ValueType.STRING,
        "driver_stats__tags": pv.ValueType.STRING_LIST,
        "pair_stats__score": pv.ValueType.DOUBLE,
    }


def test_result_column_is_table_double_underscore_feature() -> None:
    assert result_column("driver_stats", "trips") == "driver_stats__trips"
    assert pv.FeatureRef.parse("driver_stats:trips").column == "driver_stats__trips"


def test_unknown_table() -> None:
    with pytest.raises(
        pv.FeatureTableNotFoundError,
        match=r"No feature table 'pair_stat' in project 'proj'\. Did you mean 'pair_stats'\?",
    ) as info:
        resolve(["pair_stat:score"], project="proj")
    assert (info.value.name, info.value.project) == ("pair_stat", "proj")


def test_unknown_feature() -> None:
    with pytest.raises(pv.FeatureRefError, match="Did you mean 'rate'") as info:
        resolve(["driver_stats:rates"])
    assert info.value.ref == "driver_stats:rates"
    with pytest.raises(pv.FeatureRefError, match="Its features: trips, rate, tags"):
        resolve(["driver_stats:zzz"])


def test_unregistered_entity_of_a_requested_table() -> None:
    with pytest.raises(pv.EntityNotFoundError, match="vehicle_id") as info:
        resolve(["orphan:x"])
    assert info.value.name == "vehicle_id"


@pytest.mark.parametrize("ref", ["a:b:c", "driver_stats:", ":x", "", "driver_stats :trips"])
def test_malformed(ref: str) -> None:
    with pytest.raises(pv.FeatureRefError) as info:
        resolve([ref])
    assert info.value.ref == ref


@pytest.mark.parametrize("refs", ["driver_stats", [], (), None, {"driver_stats": 1}])
def test_needs_a_non_empty_list(refs: object) -> None:
    with pytest.raises(pv.FeatureRefError, match="non-empty list"):
        resolve(refs)


@pytest.mark.parametrize(
    ("refs", "first"),
    [
        (["driver_stats:rate", "driver_stats:rate"], "driver_stats:rate"),
        (["driver_stats:rate", "driver_stats"], "driver_stats:rate"),
        (["driver_stats", "driver_stats:rate"], "driver_stats"),
        (["driver_stats", "pair_stats", "driver_stats"], "driver_stats"),
    ],
)
def test_a_feature_named_twice_is_refused_naming_it(refs: list[str], first: str) -> None:
    with pytest.raises(pv.FeatureRefError, match="requested twice") as info:
        resolve(refs)
    assert info.value.ref in ("driver_stats:rate", "driver_stats:trips")
    assert repr(first) in str(info.value)


def test_row_schema_is_keys_features_and_both_times() -> None:
    schema = row_schema(PAIRS, {"driver_id": pv.ValueType.INT64, "customer_id": pv.ValueType.STRING})
    stamp = pa.timestamp("us", tz="UTC")
    assert schema == pa.schema(
        [
            ("driver_id", pa.int64()),
            ("customer_id", pa.string()),
            ("score", pa.float64()),
            ("event_timestamp", stamp),
            ("created_timestamp", stamp),
        ]
    )
