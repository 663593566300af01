"""Unit tests of ``offline/plan.py`` (refs, plans, type checks) and ``offline/files.py`` (dates, files)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

import provender as pv
from provender.offline.files import DateRange, list_source_files, lower_event_bound
from provender.offline.plan import (
    RULE,
    build_retrieval_plan,
    check_key_type,
    check_source_schema,
    is_compatible,
    source_columns,
    table_join,
)

DRIVER = pv.Entity(name="driver_id", value_type=pv.ValueType.INT64)
CUSTOMER = pv.Entity(name="customer_id", value_type=pv.ValueType.STRING)
ENTITIES = {"driver_id": DRIVER, "customer_id": CUSTOMER}
STATS = pv.FeatureTable(
    name="driver_stats",
    entities=["driver_id"],
    features=[
        pv.Feature("trips", pv.ValueType.INT64),
        pv.Feature("rate", pv.ValueType.FLOAT),
        pv.Feature("tags", pv.ValueType.STRING_LIST),
    ],
    batch_source=pv.FileSource(
        path="stats/",
        event_timestamp_column="ts",
        created_timestamp_column="created",
        field_mapping={"drv": "driver_id", "n": "trips"},
    ),
    max_age=timedelta(hours=2),
)
PAIRS = pv.FeatureTable(
    name="pair_stats",
    entities=["driver_id", "customer_id"],
    features=[pv.Feature("score", pv.ValueType.DOUBLE)],
    batch_source=pv.FileSource(path="pairs/", event_timestamp_column="ts"),
)
STREAM_ONLY = pv.FeatureTable(
    name="live",
    entities=["driver_id"],
    features=[pv.Feature("speed", pv.ValueType.DOUBLE)],
    stream_source=pv.KafkaSource(
        bootstrap_servers="localhost:9092", topic="t", message_format=pv.JsonFormat(), event_timestamp_column="ts"
    ),
)
TABLES = {t.name: t for t in (STATS, PAIRS, STREAM_ONLY)}
ENTITY_SCHEMA = pa.schema(
    [
        ("label", pa.float64()),
        ("driver_id", pa.int64()),
        ("event_timestamp", pa.timestamp("us")),
        ("customer_id", pa.string()),
    ]
)


# -- build_retrieval_plan --------------------------------------------------------------------------


def plan(refs: list[str], schema: pa.Schema = ENTITY_SCHEMA):  # type: ignore[no-untyped-def]
    return build_retrieval_plan(refs, entity_schema=schema, tables=TABLES, entities=ENTITIES, project="p")


def test_plan_groups_joins_by_table_in_order_of_first_appearance() -> None:
    retrieval = plan(["pair_stats:score", "driver_stats:rate", "driver_stats:trips"])
    assert retrieval.entity_columns == ("label", "driver_id", "event_timestamp", "customer_id")
    assert [join.name for join in retrieval.joins] == ["pair_stats", "driver_stats"]
    assert retrieval.output_columns == ("pair_stats__score", "driver_stats__rate", "driver_stats__trips")
    stats = retrieval.joins[1]
    assert [f.name for f in stats.features] == ["rate", "trips"]
    assert stats.join_keys == ("driver_id",)
    assert stats.max_age == timedelta(hours=2)
    assert stats.output_column(stats.features[0]) == "driver_stats__rate"
    assert retrieval.joins[0].join_keys == ("driver_id", "customer_id")
    assert retrieval.joins[0].max_age is None


def test_plan_needs_event_timestamp() -> None:
    schema = pa.schema([("driver_id", pa.int64()), ("ts", pa.timestamp("us"))])
    with pytest.raises(pv.DataError, match=r"no 'event_timestamp' column \(columns: driver_id, ts\)"):
        plan(["driver_stats:rate"], schema)


@pytest.mark.parametrize("stamp", [pa.timestamp("s"), pa.timestamp("ns", tz="Asia/Tokyo"), pa.date32(), pa.null()])
def test_plan_accepts_times_dates_and_untyped_empty_columns(stamp: pa.DataType) -> None:
    schema = pa.schema([("driver_id", pa.int64()), ("event_timestamp", stamp)])
    assert plan(["driver_stats:rate"], schema).entity_columns == ("driver_id", "event_timestamp")


@pytest.mark.parametrize("stamp", [pa.string(), pa.int64(), pa.float64()])
def test_plan_refuses_event_timestamp_that_is_not_a_time(stamp: pa.DataType) -> None:
    schema = pa.schema([("driver_id", pa.int64()), ("event_timestamp", stamp)])
    with pytest.raises(pv.DataError, match=f"has type {stamp}; expected a timestamp"):
        plan(["driver_stats:rate"], schema)


def test_plan_names_the_missing_key_and_its_table() -> None:
    schema = ENTITY_SCHEMA.remove(ENTITY_SCHEMA.get_field_index("customer_id"))
    assert plan(["driver_stats:rate"], schema).joins[0].name == "driver_stats"
    with pytest.raises(pv.DataError, match=r"no column 'customer_id', the key of feature table 'pair_stats'"):
        plan(["driver_stats:rate", "pair_stats"], schema)


def test_plan_refuses_result_column_clashes() -> None:
    schema = ENTITY_SCHEMA.append(pa.field("driver_stats__rate", pa.float64()))
    assert plan(["driver_stats:trips"], schema).output_columns == ("driver_stats__trips",)
    with pytest.raises(pv.DataError, match="'driver_stats__rate'; rename them"):
        plan(["driver_stats:rate"], schema)


def test_plan_refuses_tables_without_batch_source() -> None:
    with pytest.raises(pv.DataError, match="'live' has no batch_source"):
        plan(["live:speed"])


def test_plan_checks_refs_before_entity_columns() -> None:
    with pytest.raises(pv.FeatureRefError):
        plan(["driver_stats:nope"], pa.schema([("x", pa.int64())]))


# -- types -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entity", "found", "ok"),
    [
        (DRIVER, pa.int64(), True),
        (DRIVER, pa.int32(), True),
        (DRIVER, pa.int8(), True),
        (DRIVER, pa.uint32(), True),
        (DRIVER, pa.uint64(), False),
        (DRIVER, pa.float64(), False),
        (DRIVER, pa.string(), False),
        (DRIVER, pa.null(), True),
        (CUSTOMER, pa.string(), True),
        (CUSTOMER, pa.large_string(), True),
        (CUSTOMER, pa.binary(), False),
        (CUSTOMER, pa.int64(), False),
        (pv.Entity(name="k", value_type=pv.ValueType.INT32), pa.int64(), False),
        (pv.Entity(name="k", value_type=pv.ValueType.BYTES), pa.large_binary(), True),
    ],
)
def test_check_key_type(entity: pv.Entity, found: pa.DataType, ok: bool) -> None:
    if ok:
        check_key_type(entity, found, where="entity source")
    else:
        with pytest.raises(pv.DataError, match=rf"Column '{entity.name}' of the entity source has type {found}"):
            check_key_type(entity, found, where="entity source")


@pytest.mark.parametrize(
    ("declared", "found", "ok"),
    [
        (pa.int64(), pa.int64(), True),
        (pa.int64(), pa.int16(), True),
        (pa.int64(), pa.uint32(), True),
        (pa.int64(), pa.uint64(), False),
        (pa.int32(), pa.int64(), False),
        (pa.int32(), pa.uint16(), True),
        (pa.int32(), pa.uint32(), False),
        (pa.int64(), pa.float64(), False),
        (pa.float64(), pa.float32(), True),
        (pa.float64(), pa.float16(), True),
        (pa.float32(), pa.float64(), False),
        (pa.float32(), pa.float16(), True),
        (pa.float64(), pa.int64(), False),
        (pa.string(), pa.large_string(), True),
        (pa.string(), pa.binary(), False),
        (pa.binary(), pa.large_binary(), True),
        (pa.binary(), pa.binary(4), True),
        (pa.binary(), pa.string(), False),
        (pa.bool_(), pa.bool_(), True),
        (pa.bool_(), pa.int8(), False),
        (pa.timestamp("us", tz="UTC"), pa.timestamp("ns"), True),
        (pa.timestamp("us", tz="UTC"), pa.date32(), False),
        (pa.list_(pa.int64()), pa.list_(pa.int32()), True),
        (pa.list_(pa.int64()), pa.large_list(pa.int64()), True),
        (pa.list_(pa.int32()), pa.list_(pa.int64()), False),
        (pa.list_(pa.string()), pa.string(), False),
        (pa.string(), pa.null(), True),
    ],
)
def test_is_compatible(declared: pa.DataType, found: pa.DataType, ok: bool) -> None:
    assert is_compatible(declared, found) is ok


def test_source_columns_apply_field_mapping() -> None:
    columns = source_columns(STATS, STATS.batch_source)  # type: ignore[arg-type]
    assert columns.keys == ("drv",)
    assert columns.features == ("n", "rate", "tags")
    assert (columns.event_timestamp, columns.created_timestamp) == ("ts", "created")


def stats_schema(**changes: pa.DataType | None) -> pa.Schema:
    fields = {
        "drv": pa.int64(),
        "n": pa.int64(),
        "rate": pa.float32(),
        "tags": pa.list_(pa.string()),
        "ts": pa.timestamp("us"),
        "created": pa.timestamp("us"),
    }
    fields.update(changes)
    return pa.schema([(name, kind) for name, kind in fields.items() if kind is not None])


def test_check_source_schema_accepts_compatible_sources() -> None:
    join = table_join(STATS, STATS.features, ENTITIES)
    check_source_schema(join, stats_schema())
    check_source_schema(join, stats_schema(drv=pa.int32(), rate=pa.float16(), ts=pa.date32(), created=pa.null()))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"n": pa.string()},
            r"Column 'n' \(feature 'trips'\) of the batch source of feature table 'driver_stats' "
            r"\(stats/\) has type string, but int64 is declared",
        ),
        ({"drv": pa.string()}, r"Column 'drv' \(entity 'driver_id'\) .* has type string, but int64 is declared"),
        ({"tags": pa.list_(pa.int64())}, r"Column 'tags' .* has type list<item: int64>, but list<item: string>"),
        ({"ts": pa.string()}, r"Column 'ts' \(event timestamp\) .* has type string, but a timestamp is declared"),
        ({"created": pa.int64()}, r"Column 'created' \(created timestamp\) .* has type int64"),
        ({"rate": None}, r"'driver_stats' \(stats/\) has no column 'rate' \(feature 'rate'\); columns: drv, n, tags"),
        ({"created": None}, r"has no column 'created' \(created timestamp\)"),
    ],
)
def test_check_source_schema_names_table_column_and_types(changes: dict[str, pa.DataType | None], message: str) -> None:
    join = table_join(STATS, STATS.features[:1], ENTITIES)
    with pytest.raises(pv.DataError, match=message):
        check_source_schema(join, stats_schema(**changes))


def test_the_rule_as_data() -> None:
    assert RULE.ranking == ("event_timestamp DESC", "created_timestamp DESC NULLS LAST")
    assert RULE.event_at_most_entity_time and RULE.max_age_lower_bound_inclusive


# -- DateRange and source files --------------------------------------------------------------------


def test_date_range_for_window() -> None:
    earliest, latest = datetime(2024, 3, 5, 1), datetime(2024, 3, 7, 23, 59)
    assert DateRange.for_window(earliest, latest, timedelta(hours=2)) == DateRange(
        first=date(2024, 3, 4), last=date(2024, 3, 7)
    )
    assert DateRange.for_window(earliest, latest, timedelta(hours=1)) == DateRange(
        first=date(2024, 3, 5), last=date(2024, 3, 7)
    )
    assert DateRange.for_window(earliest, latest, None) == DateRange(first=None, last=date(2024, 3, 7))
    assert DateRange.for_window(None, None, timedelta(days=1)) == DateRange(first=None, last=None)
    assert DateRange.for_window(earliest, latest, timedelta.max) == DateRange(first=None, last=date(2024, 3, 7))


def test_lower_event_bound() -> None:
    at = datetime(2024, 3, 5)
    assert lower_event_bound(at, timedelta(days=1)) == datetime(2024, 3, 4)
    assert lower_event_bound(at, None) is None
    assert lower_event_bound(None, timedelta(days=1)) is None
    assert lower_event_bound(at, timedelta(days=10**6)) is None  # before year 1: no bound


def test_date_range_contains_is_inclusive() -> None:
    days = DateRange(first=date(2024, 3, 4), last=date(2024, 3, 6))
    assert [days.contains(date(2024, 3, d)) for d in range(3, 8)] == [False, True, True, True, False]
    assert DateRange(first=None, last=None).contains(date(1, 1, 1))
    assert DateRange(first=None, last=date(2024, 3, 6)).contains(date(1970, 1, 1))
    assert not DateRange(first=date(2024, 3, 4), last=None).contains(date(2024, 3, 3))


def test_date_range_for_interval_reads_naive_times_as_utc() -> None:
    from datetime import UTC, timezone

    assert DateRange.for_interval(datetime(2024, 3, 1, 23), datetime(2024, 3, 2, 1)) == DateRange(
        first=date(2024, 3, 1), last=date(2024, 3, 2)
    )
    tokyo = timezone(timedelta(hours=9))
    assert DateRange.for_interval(datetime(2024, 3, 2, 8, tzinfo=tokyo), datetime(2024, 3, 3, tzinfo=UTC)) == (
        DateRange(first=date(2024, 3, 1), last=date(2024, 3, 3))
    )


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_list_source_files_prunes_date_partitions(tmp_path: Path) -> None:
    for day in (1, 2, 3, 4):
        touch(tmp_path / "t" / f"date=2024-03-0{day}" / "part-0.parquet")
    touch(tmp_path / "t" / "date=2024-03-03" / "_SUCCESS")
    touch(tmp_path / "t" / "date=2024-03-03" / ".part-0.parquet.crc")
    touch(tmp_path / "t" / "notes.txt")
    source = pv.FileSource(path="t", event_timestamp_column="ts", date_partition_column="date")
    everything = list_source_files(source, base_dir=tmp_path)
    assert [Path(f).parent.name for f in everything] == [f"date=2024-03-0{d}" for d in (1, 2, 3, 4)]
    days = DateRange(first=date(2024, 3, 2), last=date(2024, 3, 3))
    assert [Path(f).parent.name for f in list_source_files(source, base_dir=tmp_path, dates=days)] == [
        "date=2024-03-02",
        "date=2024-03-03",
    ]
    before = DateRange(first=None, last=date(2024, 2, 1))
    assert list_source_files(source, base_dir=tmp_path, dates=before) == []
    unpartitioned = pv.FileSource(path="t", event_timestamp_column="ts")
    assert len(list_source_files(unpartitioned, base_dir=tmp_path, dates=days)) == 4


def test_list_source_files_file_glob_and_absolute_path(tmp_path: Path) -> None:
    one = touch(tmp_path / "a" / "x.parquet")
    touch(tmp_path / "a" / "y.parquet")
    assert list_source_files(pv.FileSource(path="a/x.parquet", event_timestamp_column="t"), base_dir=tmp_path) == [
        str(one)
    ]
    globbed = list_source_files(
        pv.FileSource(path=str(tmp_path / "a" / "*.parquet"), event_timestamp_column="t"), base_dir=Path("/nonexistent")
    )
    assert [Path(f).name for f in globbed] == ["x.parquet", "y.parquet"]
    csv = pv.FileSource(path="a", event_timestamp_column="t", file_format=pv.CsvFormat())
    with pytest.raises(pv.DataError, match=r"matches no \.csv files"):
        list_source_files(csv, base_dir=tmp_path)


def test_list_source_files_refuses_a_partition_that_is_not_a_date(tmp_path: Path) -> None:
    touch(tmp_path / "t" / "date=yesterday" / "part-0.parquet")
    source = pv.FileSource(path="t", event_timestamp_column="ts", date_partition_column="date")
    with pytest.raises(pv.DataError, match=r"'date=yesterday'.*expected date=YYYY-MM-DD"):
        list_source_files(source, base_dir=tmp_path, dates=DateRange(first=None, last=date(2024, 1, 1)))


def test_list_source_files_missing_path(tmp_path: Path) -> None:
    with pytest.raises(pv.DataError, match="'nope' does not exist"):
        list_source_files(pv.FileSource(path="nope", event_timestamp_column="t"), base_dir=tmp_path)
