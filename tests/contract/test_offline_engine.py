"""The offline engine contract: every registered engine gives the same answers.

Each test runs once per ``provender.offline_engines`` entry point (the ``engine`` fixture,
``tests/contract/conftest.py``): DuckDB in process, Spark on the test run's one local session.
Retrieval through ``Client.get_historical_features`` must follow the point-in-time rule
(``tests/support/pit_oracle.py``): ``max_age`` bounds, ties broken by the created timestamp,
every entity row kept in order (duplicates too) with its other columns passed through, the
declared types; ``read_latest`` must give the rule's row per key over ``[start, end)``. Sources
and bad input are in ``test_offline_engine_sources.py``; what only one engine has (DuckDB's
settings, Spark's job handle) stays with its own tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import provender as pv
from provender.offline.plan import LatestPlan, table_join
from tests.support import pit_oracle
from tests.support.builders import CUSTOMER, DRIVER, ENTITIES, Layout, write_parquet, write_table
from tests.support.engines import EngineCase
from tests.support.retrieval import DAY0, driver_rows, driver_stats, entity_frame, expected

# -- entity rows and results -----------------------------------------------------------------------


@pytest.fixture
def project(engine: EngineCase, tmp_path: Path) -> Iterator[tuple[pv.Client, pv.FeatureTable]]:
    """A project with ``driver_stats`` in hive partitions by date."""
    table = write_table(driver_stats(), driver_rows(), entities=ENTITIES, root=tmp_path / "data", layout=Layout.HIVE)
    with engine.client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        yield client, table


def test_the_known_answer(project: tuple[pv.Client, pv.FeatureTable]) -> None:
    client, _ = project
    result = client.get_historical_features(["driver_stats:trips", "driver_stats:rate"], entity_frame()).to_pandas()
    assert list(result.columns) == [
        "driver_id",
        "event_timestamp",
        "label",
        "request",
        "driver_stats__trips",
        "driver_stats__rate",
    ]
    # 03-02 07:00 -> the 06:00 row (n=5); 03-03 00:00 exactly -> n=8; before any row; unknown driver.
    assert result["driver_stats__trips"].tolist()[:2] == [51, 82]
    assert result["driver_stats__trips"].isna().tolist() == [False, False, True, True, False]
    assert result["driver_stats__rate"].tolist()[:2] == [2.5, 4.0]
    assert result["request"].tolist() == ["r0", "r1", "r2", None, "r0"]


def test_entity_source_kinds_give_the_same_result(project: tuple[pv.Client, pv.FeatureTable], tmp_path: Path) -> None:
    client, table = project
    refs = ["driver_stats:rate", "driver_stats:trips"]
    frame = entity_frame()
    arrow = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    write_parquet(arrow, tmp_path / "entities.parquet")
    write_parquet(arrow.slice(0, 3), tmp_path / "entity_dir" / "part-0.parquet")
    write_parquet(arrow.slice(3), tmp_path / "entity_dir" / "part-1.parquet")
    sources: dict[str, object] = {
        "pandas": frame,
        "arrow": arrow,
        "parquet file": str(tmp_path / "entities.parquet"),
        "parquet Path": tmp_path / "entities.parquet",
        "directory": str(tmp_path / "entity_dir"),
        "glob": str(tmp_path / "entity_dir" / "part-*.parquet"),
    }
    results = {kind: client.get_historical_features(refs, source).to_arrow() for kind, source in sources.items()}
    pit_oracle.assert_matches(results["pandas"], expected(table, [], refs))
    for kind, result in results.items():
        assert result.equals(results["pandas"]), kind


def test_the_callers_dataframe_is_not_modified(project: tuple[pv.Client, pv.FeatureTable]) -> None:
    client, _ = project
    frame = entity_frame()
    frame.index = pd.Index([10, 30, 20, 40, 0], name="my_index")
    frame["event_timestamp"] = frame["event_timestamp"].dt.tz_localize("Europe/Paris")
    before = frame.copy(deep=True)
    result = client.get_historical_features(["driver_stats"], frame).to_pandas()
    pd.testing.assert_frame_equal(frame, before)
    assert list(frame.columns) == list(before.columns)
    assert len(result) == len(frame)


def test_aware_entity_times_are_converted_to_utc(project: tuple[pv.Client, pv.FeatureTable]) -> None:
    client, table = project
    rows = [
        {"driver_id": 1, "event_timestamp": pd.Timestamp("2024-03-02 08:00", tz="Europe/Paris")},
        {"driver_id": 2, "event_timestamp": pd.Timestamp("2024-03-02 20:00", tz="America/New_York")},
    ]
    result = client.get_historical_features(["driver_stats"], pd.DataFrame(rows)).to_arrow()
    assert result.column("event_timestamp").to_pylist() == [
        datetime(2024, 3, 2, 7, tzinfo=UTC),
        datetime(2024, 3, 3, 1, tzinfo=UTC),
    ]
    pit_oracle.assert_matches(
        result, pit_oracle.retrieve(rows, [pit_oracle.SourceData(table, driver_rows())], ["driver_stats"])
    )


def test_date_entity_times_mean_midnight_utc(project: tuple[pv.Client, pv.FeatureTable]) -> None:
    client, _ = project
    entities = pa.table({"driver_id": [1], "event_timestamp": pa.array([date(2024, 3, 3)], pa.date32())})
    result = client.get_historical_features(["driver_stats:trips"], entities).to_arrow().to_pylist()
    assert result == [{"driver_id": 1, "event_timestamp": datetime(2024, 3, 3, tzinfo=UTC), "driver_stats__trips": 81}]


def test_pandas_arrow_and_parquet_results_are_equal(project: tuple[pv.Client, pv.FeatureTable], tmp_path: Path) -> None:
    client, _ = project
    job = client.get_historical_features(["driver_stats:trips", "driver_stats:rate"], entity_frame())
    arrow = job.to_arrow()
    out = tmp_path / "new" / "dir" / "training.parquet"
    assert job.to_parquet(out) == arrow.num_rows
    from_file = pq.read_table(out)
    assert from_file.schema.remove_metadata() == arrow.schema
    assert from_file.to_pylist() == arrow.to_pylist()
    pd.testing.assert_frame_equal(job.to_pandas(), arrow.to_pandas())
    assert job.to_arrow().equals(arrow), "a job gives the same result each time"
    assert pa.Table.from_batches(list(job.to_arrow_reader())).equals(arrow)


def test_output_types_are_the_declared_ones(engine: EngineCase, tmp_path: Path) -> None:
    features = [pv.Feature(f"f_{value_type.value.lower()}", value_type) for value_type in pv.ValueType]
    table = pv.FeatureTable(
        name="typed",
        entities=["customer_id"],
        features=features,
        batch_source=pv.FileSource(path="-", event_timestamp_column="ts"),
    )
    scalars: dict[pv.ValueType, object] = {
        pv.ValueType.BOOL: True,
        pv.ValueType.INT32: -5,
        pv.ValueType.INT64: 2**40,
        pv.ValueType.FLOAT: 0.5,
        pv.ValueType.DOUBLE: 0.25,
        pv.ValueType.STRING: "ß",
        pv.ValueType.BYTES: b"\x00\xff",
        pv.ValueType.UNIX_TIMESTAMP: DAY0,
    }
    row: dict[str, object] = {"customer_id": "c", "ts": DAY0}
    for feature in features:
        value = scalars[feature.value_type.element]
        row[feature.name] = [value, None] if feature.value_type.is_list else value
    table = write_table(table, [row], entities=ENTITIES, root=tmp_path / "data")
    entities = pd.DataFrame({"customer_id": ["c", "none"], "event_timestamp": [DAY0, DAY0]})
    with engine.client(tmp_path / "project") as client:
        client.apply([CUSTOMER, table])
        result = client.get_historical_features(["typed"], entities).to_arrow()
    assert result.schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")
    assert result.schema.field("customer_id").type == pa.string()
    for feature in features:
        column = f"typed__{feature.name}"
        assert result.schema.field(column).type == feature.value_type.to_arrow(), column
        assert result.column(column).to_pylist() == [row[feature.name], None], column


def test_extra_columns_pass_through_unchanged(project: tuple[pv.Client, pv.FeatureTable]) -> None:
    client, _ = project
    frame = pd.DataFrame(
        {
            "driver_id": [1, 2],
            "event_timestamp": [datetime(2024, 3, 2), datetime(2024, 3, 3)],
            "small": pd.array([1, -1], dtype="int8"),
            "big": pd.array([1, 2**63], dtype="uint64"),
            "maybe": pd.array([1, None], dtype="Int64"),
            "flag": [True, False],
            "score": [0.1, float("nan")],
            "text": ["é", None],
            "other_time": [datetime(2020, 1, 1, 0, 0, 0, 1), datetime(2021, 1, 1)],
            "day": [date(2020, 1, 1), date(2020, 1, 2)],
            "tags": [["a"], []],
        }
    )
    source = pa.Table.from_pandas(frame, preserve_index=False)
    result = client.get_historical_features(["driver_stats:trips"], frame).to_arrow()
    for name in frame.columns:
        if name == "event_timestamp":
            continue
        assert result.schema.field(name).type == source.schema.field(name).type, name
        assert result.column(name).to_pylist() == source.column(name).to_pylist(), name
    pd.testing.assert_frame_equal(result.to_pandas()[["score"]], frame[["score"]])


def test_aware_extra_columns_keep_their_instants(project: tuple[pv.Client, pv.FeatureTable]) -> None:
    client, _ = project
    other = pd.Series(pd.to_datetime(["2020-01-01 10:00", "2020-06-01 10:00"])).dt.tz_localize("America/New_York")
    frame = pd.DataFrame({"driver_id": [1, 2], "event_timestamp": [DAY0, DAY0], "other": other})
    result = client.get_historical_features(["driver_stats:trips"], frame).to_pandas()
    assert (result["other"] == frame["other"]).all()


@pytest.mark.parametrize(
    "column",
    [pd.Series([timedelta(hours=1), timedelta(days=2)]), pd.Series(pd.Categorical(["a", "b"]))],
    ids=["duration", "categorical"],
)
def test_extra_columns_of_exotic_types_pass_through(
    project: tuple[pv.Client, pv.FeatureTable], column: pd.Series
) -> None:
    client, _ = project
    frame = pd.DataFrame({"driver_id": [1, 2], "event_timestamp": [DAY0, DAY0], "extra": column})
    result = client.get_historical_features(["driver_stats:trips"], frame).to_pandas()
    pd.testing.assert_series_equal(result["extra"], frame["extra"])  # in memory: the caller's own column


def test_an_empty_entity_source_gives_an_empty_typed_result(project: tuple[pv.Client, pv.FeatureTable]) -> None:
    client, _ = project
    refs = ["driver_stats:rate", "driver_stats:trips"]
    frame = entity_frame().iloc[:0]
    for source in (frame, pa.Table.from_pandas(frame, preserve_index=False)):
        result = client.get_historical_features(refs, source).to_arrow()
        assert result.num_rows == 0
        assert result.column_names == [
            "driver_id",
            "event_timestamp",
            "label",
            "request",
            "driver_stats__rate",
            "driver_stats__trips",
        ]
        assert result.schema.field("driver_id").type == pa.int64()
        assert result.schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")
        assert result.schema.field("driver_stats__rate").type == pa.float32()
        assert result.schema.field("driver_stats__trips").type == pa.int64()
    untyped = pd.DataFrame(columns=["driver_id", "event_timestamp"])
    result = client.get_historical_features(refs, untyped).to_arrow()
    assert result.num_rows == 0
    assert result.column_names == ["driver_id", "event_timestamp", "driver_stats__rate", "driver_stats__trips"]


def test_nothing_in_any_partition_gives_nulls(project: tuple[pv.Client, pv.FeatureTable]) -> None:
    """Entity rows long before the data: every partition is pruned, and the rows get nulls."""
    client, _ = project
    frame = pd.DataFrame({"driver_id": [1, 2], "event_timestamp": [datetime(2023, 1, 1), datetime(2023, 1, 2)]})
    result = client.get_historical_features(["driver_stats"], frame).to_pandas()
    assert result["driver_stats__trips"].isna().all()
    assert result["driver_stats__rate"].isna().all()


# -- the rule: times, max_age, ties, keys ----------------------------------------------------------


@pytest.fixture
def local_time_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Set the process's local time zone (``TZ``) for the test; restored afterwards."""

    def set_zone(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield set_zone
    monkeypatch.undo()
    time.tzset()


def test_naive_times_are_utc_whatever_the_local_time_zone(
    engine: EngineCase, tmp_path: Path, local_time_zone: Callable[[str], None]
) -> None:
    local_time_zone("America/Los_Angeles")
    table = write_table(driver_stats(), driver_rows(), entities=ENTITIES, root=tmp_path / "data", layout=Layout.HIVE)
    with engine.client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        result = client.get_historical_features(["driver_stats"], entity_frame()).to_arrow()
    pit_oracle.assert_matches(result, expected(table, [], ["driver_stats"]))


def test_nanosecond_entity_times_never_see_the_future(project: tuple[pv.Client, pv.FeatureTable]) -> None:
    """DuckDB rounds nanoseconds to the nearest microsecond; T must be rounded down, T - max_age up."""
    client, _ = project
    row_at = pd.Timestamp("2024-03-03 00:00")  # a driver 1 row (trips 81); the previous is 18:00 the day before
    last = pd.Timestamp("2024-03-05 18:00")  # driver 1's last row (trips 191); max_age is 1 day
    one_ns, one_day = pd.Timedelta(nanoseconds=1), pd.Timedelta(days=1)
    frame = pd.DataFrame(
        {
            "driver_id": [1, 1, 1, 1, 1],
            "event_timestamp": [row_at - one_ns, row_at, row_at + one_ns, last + one_day, last + one_day + one_ns],
        }
    )
    assert frame["event_timestamp"].dtype == "datetime64[ns]"
    result = client.get_historical_features(["driver_stats:trips"], frame).to_pandas()
    # 1 ns before the row: the one before; at and after it: the row; exactly max_age later: the last
    # row, and 1 ns later: nothing.
    assert result["driver_stats__trips"].tolist()[:4] == [71, 81, 81, 191]
    assert pd.isna(result["driver_stats__trips"].iloc[4])
    assert result["event_timestamp"].iloc[0] == pd.Timestamp("2024-03-02 23:59:59.999999", tz="UTC")


def test_max_age_exactly_at_the_bound(engine: EngineCase, tmp_path: Path) -> None:
    rows = [{"driver_id": 1, "trips": 5, "rate": 1.0, "event_ts": DAY0, "created": None}]
    table = write_table(driver_stats(max_age=timedelta(hours=1)), rows, entities=ENTITIES, root=tmp_path / "data")
    frame = pd.DataFrame(
        {
            "driver_id": [1, 1, 1],
            "event_timestamp": [
                DAY0 + timedelta(hours=1),
                DAY0 + timedelta(hours=1, microseconds=1),
                DAY0 - timedelta(microseconds=1),
            ],
        }
    )
    with engine.client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        result = client.get_historical_features(["driver_stats:trips"], frame).to_pandas()
    assert result["driver_stats__trips"].tolist()[0] == 5
    assert result["driver_stats__trips"].isna().tolist() == [False, True, True]


def test_a_max_age_longer_than_any_calendar_means_no_bound(engine: EngineCase, tmp_path: Path) -> None:
    rows = [{"driver_id": 1, "trips": 5, "rate": 1.0, "event_ts": DAY0, "created": None}]
    table = write_table(
        driver_stats(max_age=timedelta.max), rows, entities=ENTITIES, root=tmp_path / "data", layout=Layout.HIVE
    )
    with engine.client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        result = client.get_historical_features(["driver_stats:trips"], entity_frame()).to_pandas()
    assert result["driver_stats__trips"].isna().tolist() == [False, True, True, True, False]
    assert result["driver_stats__trips"].iloc[0] == 5


def test_created_time_breaks_ties_and_missing_created_ranks_lowest(engine: EngineCase, tmp_path: Path) -> None:
    rows = [
        {"driver_id": 1, "trips": 1, "rate": 1.0, "event_ts": DAY0, "created": DAY0 + timedelta(hours=2)},
        {"driver_id": 1, "trips": 2, "rate": 2.0, "event_ts": DAY0, "created": DAY0 + timedelta(hours=5)},
        {"driver_id": 1, "trips": 3, "rate": 3.0, "event_ts": DAY0, "created": None},
        {"driver_id": 1, "trips": 4, "rate": 4.0, "event_ts": DAY0, "created": DAY0 + timedelta(hours=1)},
    ]
    table = write_table(driver_stats(), rows, entities=ENTITIES, root=tmp_path / "data", layout=Layout.DIRECTORY)
    frame = pd.DataFrame({"driver_id": [1], "event_timestamp": [DAY0]})
    with engine.client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        result = client.get_historical_features(["driver_stats"], frame).to_arrow().to_pylist()
    assert (result[0]["driver_stats__trips"], result[0]["driver_stats__rate"]) == (2, 2.0)


@pytest.mark.parametrize("kind", ["pandas", "parquet"])
def test_columns_differing_only_in_case_stay_apart(
    project: tuple[pv.Client, pv.FeatureTable], tmp_path: Path, kind: str
) -> None:
    """DuckDB binds names case-insensitively: ``Driver_Id`` must neither be joined on nor replace ``driver_id``."""
    client, _ = project
    frame = pd.DataFrame(
        {
            "Driver_Id": [2, 2],
            "EVENT_TIMESTAMP": [datetime(2023, 1, 1), datetime(2023, 1, 1)],
            "driver_id": [1, 1],
            "event_timestamp": [datetime(2024, 3, 2, 7), datetime(2024, 3, 3)],
            "label": [1, 2],
            "LABEL": [3, 4],
        }
    )
    source: object = frame
    if kind == "parquet":
        source = write_parquet(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "entities.parquet")
    result = client.get_historical_features(["driver_stats:trips"], source).to_arrow()
    assert result.column_names == [*frame.columns, "driver_stats__trips"]
    assert result.column("Driver_Id").to_pylist() == [2, 2]
    assert result.column("EVENT_TIMESTAMP").to_pylist() == [datetime(2023, 1, 1)] * 2
    assert result.column("label").to_pylist() == [1, 2]
    assert result.column("LABEL").to_pylist() == [3, 4]
    assert result.column("event_timestamp").to_pylist() == [
        datetime(2024, 3, 2, 7, tzinfo=UTC),
        datetime(2024, 3, 3, tzinfo=UTC),
    ]
    assert result.column("driver_stats__trips").to_pylist() == [51, 81]  # driver 1's, not driver 2's


def test_null_keys_match_nothing(engine: EngineCase, tmp_path: Path) -> None:
    rows: list[dict[str, object]] = [
        {"driver_id": None, "trips": 1, "rate": 1.0, "event_ts": DAY0, "created": None},
        {"driver_id": 1, "trips": 2, "rate": 2.0, "event_ts": DAY0, "created": None},
    ]
    table = write_table(driver_stats(max_age=None), rows, entities=ENTITIES, root=tmp_path / "data")
    frame = pd.DataFrame({"driver_id": pd.array([None, 1], dtype="Int64"), "event_timestamp": [DAY0, DAY0]})
    with engine.client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        result = client.get_historical_features(["driver_stats:trips"], frame).to_arrow()
    assert result.column("driver_id").to_pylist() == [None, 1]
    assert result.column("driver_stats__trips").to_pylist() == [None, 2]


# -- read_latest (offline-to-online ingestion) -----------------------------------------------------


def latest_by_rule(rows: list[dict[str, Any]], start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Per driver, the row with the greatest (event, created) in ``[start, end)``; a missing created ranks lowest."""

    def rank(row: dict[str, Any]) -> tuple[datetime, bool, datetime]:
        return row["event_ts"], row["created"] is not None, row["created"] or row["event_ts"]

    best: dict[int, dict[str, Any]] = {}
    for row in rows:
        current = best.get(row["driver_id"])
        if start <= row["event_ts"] < end and (current is None or rank(row) > rank(current)):
            best[row["driver_id"]] = row
    return [
        {
            "driver_id": r["driver_id"],
            "trips": r["trips"],
            "rate": r["rate"],
            "event_timestamp": r["event_ts"],
            "created_timestamp": r["created"],
        }
        for _, r in sorted(best.items())
    ]


def read_latest(engine: EngineCase, base_dir: Path, plan: LatestPlan, *, batch_rows: int) -> list[pa.RecordBatch]:
    opened = engine.open(base_dir)
    try:
        return list(opened.read_latest(plan, batch_rows=batch_rows))
    finally:
        opened.close()


def test_read_latest_is_the_rule_over_the_window(engine: EngineCase, tmp_path: Path) -> None:
    """Per key the rule's row in ``[start, end)``: ties broken by created time, the end excluded."""
    last = DAY0 + timedelta(hours=66)  # the last row before the window's end, for both drivers
    rows = [
        *driver_rows(),
        {"driver_id": 1, "trips": 1001, "rate": 0.25, "event_ts": last, "created": last + timedelta(hours=1)},
        {"driver_id": 1, "trips": 1002, "rate": 0.75, "event_ts": last, "created": None},
        {"driver_id": 2, "trips": 2002, "rate": 0.75, "event_ts": last, "created": None},
    ]
    table = write_table(driver_stats(max_age=None), rows, entities=ENTITIES, root=tmp_path / "data", layout=Layout.HIVE)
    start, end = DAY0 + timedelta(days=1), DAY0 + timedelta(days=3)  # a row of each driver lies at exactly end
    plan = LatestPlan(join=table_join(table, table.features, ENTITIES), start=start, end=end)
    batches = read_latest(engine, tmp_path, plan, batch_rows=1)
    assert all(batch.num_rows <= 1 for batch in batches)
    got = pa.Table.from_batches(batches).sort_by("driver_id")
    assert got.schema.names == ["driver_id", "trips", "rate", "event_timestamp", "created_timestamp"]
    assert got.schema.field("rate").type == pa.float32()
    assert got.schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")
    assert got.to_pylist() == latest_by_rule(rows, start, end)
    assert got.column("trips").to_pylist() == [1001, 112]


def test_read_latest_of_an_empty_window_is_empty(engine: EngineCase, tmp_path: Path) -> None:
    table = write_table(driver_stats(), driver_rows(), entities=ENTITIES, root=tmp_path / "data", layout=Layout.HIVE)
    plan = LatestPlan(
        join=table_join(table, table.features, ENTITIES), start=datetime(2023, 1, 1), end=datetime(2023, 1, 2)
    )
    assert sum(batch.num_rows for batch in read_latest(engine, tmp_path, plan, batch_rows=100)) == 0


def test_ingestion_window_with_naive_times_is_utc(
    engine: EngineCase, tmp_path: Path, local_time_zone: Callable[[str], None]
) -> None:
    """read_latest prunes partitions by the UTC dates of a naive window, not by local dates."""
    local_time_zone("America/Los_Angeles")
    table = write_table(driver_stats(), driver_rows(), entities=ENTITIES, root=tmp_path / "data", layout=Layout.HIVE)
    # 17:00 in Los Angeles is 01:00 UTC the next day: read as local, the 03-01 partition is pruned.
    plan = LatestPlan(
        join=table_join(table, table.features, ENTITIES), start=datetime(2024, 3, 1, 17), end=datetime(2024, 3, 1, 23)
    )
    rows = pa.Table.from_batches(read_latest(engine, tmp_path, plan, batch_rows=100)).sort_by("driver_id").to_pylist()
    assert [(r["driver_id"], r["trips"]) for r in rows] == [(1, 31), (2, 32)]  # the 03-01 18:00 rows
