"""OnlineReader: plans, statuses, max_age, column order, registry caching; over the memory store."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest

import provender as pv
from provender.online.memory import MemoryStore
from provender.online.read import FeatureStatus, OnlineReader, to_entity_value
from tests.support.online import CUSTOMER, DRIVER, DRIVER_STATS, SOURCE, at, batch

NOW_US = int(at(100).timestamp() * 1_000_000)
FRESH = pv.FeatureTable(
    name="fresh",
    entities=["driver_id", "customer_id"],
    features=[pv.Feature("score", pv.ValueType.DOUBLE), pv.Feature("seen", pv.ValueType.UNIX_TIMESTAMP)],
    batch_source=SOURCE,
    max_age=timedelta(seconds=50),
)


@dataclass
class Catalog:
    """A registry snapshot stand-in that counts how often it is read."""

    feature_tables: dict[str, pv.FeatureTable]
    entities: Mapping[str, pv.Entity] = field(default_factory=lambda: {"driver_id": DRIVER, "customer_id": CUSTOMER})
    project: str = "test"
    version: int = 1
    reads: int = 0
    on_demand_features: Mapping[str, pv.OnDemandFeatures] = field(default_factory=dict)

    def load(self) -> Catalog:
        self.reads += 1
        return Catalog(dict(self.feature_tables), self.entities, self.project, self.version)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> Iterator[MemoryStore]:
    memory = MemoryStore.from_options({}, base_dir=Path())
    memory.write(
        DRIVER_STATS,
        batch(
            DRIVER_STATS,
            [
                {"driver_id": 1, "conv_rate": 0.5, "acc_rate": 0.25, "trips": 10},
                {"driver_id": 2, "conv_rate": None, "acc_rate": 0.75, "trips": 20},
            ],
        ),
    )
    memory.write(
        FRESH,
        batch(
            FRESH,
            [
                {"driver_id": 1, "customer_id": 7, "score": 1.5, "seen": at(1), "event_timestamp": at(60)},
                {"driver_id": 2, "customer_id": 7, "score": 2.5, "event_timestamp": at(40)},
            ],
        ),
    )
    yield memory
    memory.close()


@pytest.fixture
def catalog() -> Catalog:
    return Catalog({DRIVER_STATS.name: DRIVER_STATS, FRESH.name: FRESH})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def reader(store: MemoryStore, catalog: Catalog, clock: Clock) -> OnlineReader:
    return OnlineReader(store, load_catalog=catalog.load, refresh_seconds=10, clock=clock)


def test_values_statuses_and_column_order(reader: OnlineReader) -> None:
    rows = [
        {"customer_id": 7, "driver_id": 1, "request": "a"},
        {"customer_id": 7, "driver_id": 2, "request": "b"},
        {"customer_id": 8, "driver_id": 3, "request": "c"},
    ]
    response = reader.read(["fresh:score", "driver_stats", "fresh:seen"], rows, now_us=NOW_US)
    assert response.to_dict() == {
        "customer_id": [7, 7, 8],
        "driver_id": [1, 2, 3],
        "request": ["a", "b", "c"],
        "fresh__score": [1.5, None, None],
        "driver_stats__conv_rate": [0.5, None, None],
        "driver_stats__acc_rate": [0.25, 0.75, None],
        "driver_stats__trips": [10, 20, None],
        "fresh__seen": [at(1), None, None],
    }
    P, N, OLD, V = (
        FeatureStatus.PRESENT,
        FeatureStatus.NOT_FOUND,
        FeatureStatus.OUTSIDE_MAX_AGE,
        FeatureStatus.NULL_VALUE,
    )
    assert response.statuses() == {
        "fresh__score": [P, OLD, N],
        "driver_stats__conv_rate": [P, V, N],
        "driver_stats__acc_rate": [P, P, N],
        "driver_stats__trips": [P, P, N],
        "fresh__seen": [P, OLD, N],
    }
    assert response.statuses()["fresh__score"] == ["PRESENT", "OUTSIDE_MAX_AGE", "NOT_FOUND"]
    assert len(response) == 3


def test_max_age_boundary_is_inclusive(reader: OnlineReader) -> None:
    row = [{"driver_id": 1, "customer_id": 7}]
    at_limit = int(at(110).timestamp() * 1_000_000)  # event 60 s + max_age 50 s
    assert reader.read(["fresh:score"], row, now_us=at_limit).to_dict()["fresh__score"] == [1.5]
    assert reader.read(["fresh:score"], row, now_us=at_limit + 1).to_dict()["fresh__score"] == [None]


TRIPS = pv.FeatureTable(
    name="trips",
    entities=["driver_id"],
    features=[pv.Feature("fare", pv.ValueType.DOUBLE)],
    batch_source=SOURCE,
    max_age=timedelta(seconds=50),
    aggregations=[
        pv.Aggregation(column="fare", function="sum", window=timedelta(days=7), name="fare_sum_7d"),
        pv.Aggregation(column="fare", function="count", window=timedelta(days=7), name="fare_count_7d"),
    ],
)


def test_max_age_applies_to_plain_features_never_to_aggregations(store: MemoryStore, clock: Clock) -> None:
    """A row batch ingestion wrote, older than max_age: its plain feature is OUTSIDE_MAX_AGE, its aggregates PRESENT."""
    rows = [{"driver_id": 1, "fare": 3.0, "fare_sum_7d": 12.0, "fare_count_7d": 4, "event_timestamp": at(40)}]
    store.write(TRIPS, batch(TRIPS, rows))
    reader = OnlineReader(store, load_catalog=Catalog({TRIPS.name: TRIPS}).load, clock=clock)
    refs = ["trips:fare", "trips:fare_sum_7d", "trips:fare_count_7d"]
    response = reader.read(refs, [{"driver_id": 1}, {"driver_id": 2}], now_us=NOW_US)  # 60 s after: > max_age
    assert response.to_dict() == {
        "driver_id": [1, 2],
        "trips__fare": [None, None],
        "trips__fare_sum_7d": [12.0, None],
        "trips__fare_count_7d": [4, 0],
    }
    assert response.statuses() == {
        "trips__fare": ["OUTSIDE_MAX_AGE", "NOT_FOUND"],
        "trips__fare_sum_7d": ["PRESENT", "NOT_FOUND"],
        "trips__fare_count_7d": ["PRESENT", "NOT_FOUND"],
    }
    fresh = reader.read(refs, [{"driver_id": 1}], now_us=int(at(90).timestamp() * 1_000_000))  # within max_age
    assert fresh.to_dict()["trips__fare"] == [3.0]
    assert fresh.statuses()["trips__fare"] == ["PRESENT"]


def test_to_arrow_is_typed_by_the_registry(reader: OnlineReader) -> None:
    table = reader.read(
        ["driver_stats:trips", "fresh:seen"], [{"driver_id": 1, "customer_id": 7}], now_us=NOW_US
    ).to_arrow()
    assert table.schema == pa.schema(
        [
            ("driver_id", pa.int64()),
            ("customer_id", pa.int64()),
            ("driver_stats__trips", pa.int64()),
            ("fresh__seen", pa.timestamp("us", tz="UTC")),
        ]
    )


def test_duplicate_rows_are_read_but_a_feature_named_twice_is_refused(reader: OnlineReader) -> None:
    response = reader.read(["driver_stats:trips"], [{"driver_id": 1}] * 3)
    assert response.to_dict()["driver_stats__trips"] == [10, 10, 10]
    with pytest.raises(pv.FeatureRefError, match="requested twice") as info:
        reader.read(["driver_stats:trips", "driver_stats"], [{"driver_id": 1}])
    assert info.value.ref == "driver_stats:trips"


def test_no_entity_rows_give_empty_columns(reader: OnlineReader) -> None:
    response = reader.read(["fresh:score"], [])
    assert response.to_dict() == {"driver_id": [], "customer_id": [], "fresh__score": []}
    assert response.statuses() == {"fresh__score": []}


def test_to_dict_returns_fresh_lists(reader: OnlineReader) -> None:
    response = reader.read(["driver_stats:trips"], [{"driver_id": 1}])
    response.to_dict()["driver_stats__trips"].append(0)
    assert response.to_dict()["driver_stats__trips"] == [10]


@pytest.mark.parametrize(
    ("refs", "error", "message"),
    [
        (
            ["driver_stat:trips"],
            pv.FeatureTableNotFoundError,
            "No feature table 'driver_stat'.*Did you mean 'driver_stats'",
        ),
        (["driver_stats:trip"], pv.FeatureRefError, "has no feature 'trip'. Did you mean 'trips'"),
        (["driver_stats:zzz"], pv.FeatureRefError, "Its features: conv_rate, acc_rate, trips"),
        (["a:b:c"], pv.FeatureRefError, "expected '<table>:<feature>'"),
        ("driver_stats", pv.FeatureRefError, "must be a non-empty list"),
    ],
)
def test_bad_refs(reader: OnlineReader, refs: list[str], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        reader.read(refs, [{"driver_id": 1}])


def test_bad_entity_rows(reader: OnlineReader) -> None:
    with pytest.raises(pv.DataError, match=r"entity_rows\[1\]\['driver_id'\] is 'abc' \(str\), not a valid INT64"):
        reader.read(["driver_stats"], [{"driver_id": 1}, {"driver_id": "abc"}])
    with pytest.raises(pv.DataError, match=r"entity_rows\[0\] lacks the entity column 'customer_id'"):
        reader.read(["fresh"], [{"driver_id": 1}])
    with pytest.raises(pv.DataError, match="got one mapping"):
        reader.read(["fresh"], {"driver_id": 1})  # type: ignore[arg-type]


def test_the_registry_is_read_once_per_refresh_interval(reader: OnlineReader, catalog: Catalog, clock: Clock) -> None:
    for _ in range(5):
        reader.read(["driver_stats"], [{"driver_id": 1}])
    assert catalog.reads == 1
    clock.now = 10.5
    reader.read(["driver_stats"], [{"driver_id": 1}])
    assert catalog.reads == 2


def test_a_changed_table_is_seen_after_the_refresh_interval(
    reader: OnlineReader, catalog: Catalog, clock: Clock
) -> None:
    assert reader.read(["driver_stats:trips"], [{"driver_id": 1}]).to_dict()["driver_stats__trips"] == [10]
    shorter = pv.FeatureTable(
        name=DRIVER_STATS.name,
        entities=["driver_id"],
        features=DRIVER_STATS.features,
        batch_source=SOURCE,
        max_age=timedelta(seconds=1),
    )
    catalog.feature_tables[DRIVER_STATS.name] = shorter
    catalog.version = 2
    assert reader.read(["driver_stats:trips"], [{"driver_id": 1}]).to_dict()["driver_stats__trips"] == [10]
    clock.now = 11
    assert reader.read(["driver_stats:trips"], [{"driver_id": 1}]).to_dict()["driver_stats__trips"] == [None]


def test_an_unknown_table_triggers_one_reread_before_failing(reader: OnlineReader, catalog: Catalog) -> None:
    reader.read(["driver_stats"], [{"driver_id": 1}])
    catalog.feature_tables["later"] = pv.FeatureTable(
        name="later", entities=["driver_id"], features=[pv.Feature("x", pv.ValueType.INT64)], batch_source=SOURCE
    )
    assert reader.read(["later"], [{"driver_id": 1}]).to_dict() == {"driver_id": [1], "later__x": [None]}
    assert catalog.reads == 2
    with pytest.raises(pv.FeatureTableNotFoundError):
        reader.read(["nowhere"], [{"driver_id": 1}])
    assert catalog.reads == 3


def test_invalidate_forgets_the_snapshot(reader: OnlineReader, catalog: Catalog) -> None:
    reader.read(["driver_stats"], [{"driver_id": 1}])
    reader.invalidate()
    reader.read(["driver_stats"], [{"driver_id": 1}])
    assert catalog.reads == 2


@pytest.mark.parametrize(
    ("value_type", "text", "value"),
    [
        (pv.ValueType.INT64, "1001", 1001),
        (pv.ValueType.INT32, "-5", -5),
        (pv.ValueType.STRING, "a,b", "a,b"),
        (pv.ValueType.BYTES, "0x00ff", b"\x00\xff"),
        (pv.ValueType.BYTES, "abc", b"abc"),
        (pv.ValueType.BOOL, "true", True),
        (pv.ValueType.BOOL, "0", False),
    ],
)
def test_command_line_entity_values_parse_by_type(value_type: pv.ValueType, text: str, value: object) -> None:
    assert to_entity_value(text, pv.Entity(name="k", value_type=value_type)) == value


def test_unparseable_command_line_values() -> None:
    with pytest.raises(pv.DataError, match="'maybe' is not a valid BOOL value"):
        to_entity_value("maybe", pv.Entity(name="k", value_type=pv.ValueType.BOOL))
