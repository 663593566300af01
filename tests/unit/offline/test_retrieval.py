"""Historical retrieval through ``Client.get_historical_features`` on DuckDB: deterministic cases.

Entity sources (DataFrame, Arrow, Parquet file/directory/glob), result forms and types, empty
input, CSV sources, ``field_mapping``, date-partition pruning (proved by corrupting the
partitions that must not be opened), the ``offline:`` settings, and regressions found by the
differential test.
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
from provender.offline.duckdb import DuckDBEngine
from provender.offline.plan import LatestPlan, table_join
from tests.support import pit_oracle
from tests.support.builders import (
    PARTITION_COLUMN,
    Format,
    Layout,
    make_client,
    source_schema,
    with_source_path,
    write_parquet,
    write_table,
)

DRIVER = pv.Entity(name="driver_id", value_type=pv.ValueType.INT64)
CUSTOMER = pv.Entity(name="customer_id", value_type=pv.ValueType.STRING)
ENTITIES = {"driver_id": DRIVER, "customer_id": CUSTOMER}
DAY0 = datetime(2024, 3, 1, tzinfo=UTC)


def driver_stats(*, max_age: timedelta | None = timedelta(days=1), **source: Any) -> pv.FeatureTable:
    return pv.FeatureTable(
        name="driver_stats",
        entities=["driver_id"],
        features=[pv.Feature("trips", pv.ValueType.INT64), pv.Feature("rate", pv.ValueType.FLOAT)],
        batch_source=pv.FileSource(
            path="-", event_timestamp_column="event_ts", created_timestamp_column="created", **source
        ),
        max_age=max_age,
    )


def driver_rows() -> list[dict[str, Any]]:
    """Drivers 1 and 2, a row every 6 hours over five days; trips counts the rows."""
    return [
        {
            "driver_id": driver,
            "trips": n * 10 + driver,
            "rate": n * 0.5,
            "event_ts": DAY0 + n * timedelta(hours=6),
            "created": DAY0 + n * timedelta(hours=6),
        }
        for n in range(20)
        for driver in (1, 2)
    ]


def entity_rows() -> list[dict[str, Any]]:
    return [
        {"driver_id": 1, "event_timestamp": datetime(2024, 3, 2, 7), "label": 1.5, "request": "r0"},
        {"driver_id": 2, "event_timestamp": datetime(2024, 3, 3), "label": 0.0, "request": "r1"},
        {"driver_id": 1, "event_timestamp": datetime(2024, 2, 28), "label": -1.0, "request": "r2"},
        {"driver_id": 3, "event_timestamp": datetime(2024, 3, 4, 12), "label": 2.0, "request": None},
        {"driver_id": 1, "event_timestamp": datetime(2024, 3, 2, 7), "label": 1.5, "request": "r0"},
    ]


def entity_frame(rows: list[dict[str, Any]] | None = None) -> pd.DataFrame:
    return pd.DataFrame(entity_rows() if rows is None else rows)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[tuple[pv.Client, pv.FeatureTable]]:
    """A project with ``driver_stats`` in hive partitions by date."""
    table = write_table(driver_stats(), driver_rows(), entities=ENTITIES, root=tmp_path / "data", layout=Layout.HIVE)
    with make_client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        yield client, table


def expected(table: pv.FeatureTable, rows: list[dict[str, Any]], refs: list[str]) -> pit_oracle.Expected:
    return pit_oracle.retrieve(rows or entity_rows(), [pit_oracle.SourceData(table, driver_rows())], refs)


# -- entity sources --------------------------------------------------------------------------------


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


# -- results -----------------------------------------------------------------------------------


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


def test_output_types_are_the_declared_ones(tmp_path: Path) -> None:
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
    with make_client(tmp_path / "project") as client:
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


# -- sources ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", [Layout.FILE, Layout.DIRECTORY, Layout.GLOB, Layout.HIVE])
def test_csv_sources(tmp_path: Path, layout: Layout) -> None:
    rows = driver_rows()
    for n, row in enumerate(rows):
        row["created"] = None if n % 3 else row["created"]  # files whose created column is empty
        if n % 2:
            row["event_ts"] = row["event_ts"].replace(tzinfo=None)  # naive text: UTC
        if n % 5 == 0:
            row["rate"] = None
    table = write_table(
        driver_stats(), rows, entities=ENTITIES, root=tmp_path / "data", layout=layout, file_format=Format.CSV
    )
    assert isinstance(table.batch_source, pv.FileSource)
    assert isinstance(table.batch_source.file_format, pv.CsvFormat)
    with make_client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        result = client.get_historical_features(["driver_stats"], entity_frame()).to_arrow()
    pit_oracle.assert_matches(
        result, pit_oracle.retrieve(entity_rows(), [pit_oracle.SourceData(table, rows)], ["driver_stats"])
    )


def test_csv_with_another_delimiter(tmp_path: Path) -> None:
    path = tmp_path / "stats.tsv"
    path.write_text(
        "driver_id\ttrips\trate\tevent_ts\tcreated\n1\t7\t0.5\t2024-03-02 00:00:00+00:00\t\n", encoding="utf-8"
    )
    table = with_source_path(driver_stats(max_age=None, file_format=pv.CsvFormat(delimiter="\t")), str(path))
    with make_client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        result = client.get_historical_features(["driver_stats:trips"], entity_frame()).to_arrow().to_pylist()
    assert [row["driver_stats__trips"] for row in result] == [7, None, None, None, 7]


def test_field_mapping_renames_source_columns(tmp_path: Path) -> None:
    renames = {"drv": "driver_id", "n_trips": "trips"}
    table = driver_stats(field_mapping=renames)
    schema = source_schema(table, ENTITIES)
    assert schema.names[:3] == ["drv", "n_trips", "rate"]
    rows = [
        {"drv": r["driver_id"], "n_trips": r["trips"], **{k: r[k] for k in ("rate", "event_ts", "created")}}
        for r in driver_rows()
    ]
    table = write_table(table, rows, entities=ENTITIES, root=tmp_path / "data", schema=schema)
    with make_client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        result = client.get_historical_features(["driver_stats"], entity_frame()).to_arrow()
    assert result.column_names[-2:] == ["driver_stats__trips", "driver_stats__rate"]
    pit_oracle.assert_matches(
        result, pit_oracle.retrieve(entity_rows(), [pit_oracle.SourceData(table, rows)], ["driver_stats"])
    )


# -- partition pruning -----------------------------------------------------------------------------


def daily_rows(days: int) -> list[dict[str, Any]]:
    """Driver 1, one row a day at noon from 2024-03-01; trips is the day of the month."""
    return [
        {"driver_id": 1, "trips": day, "rate": 1.0, "event_ts": datetime(2024, 3, day, 12, tzinfo=UTC), "created": None}
        for day in range(1, days + 1)
    ]


def corrupt_partitions(root: Path, keep: Callable[[date], bool]) -> list[date]:
    """Overwrite the files of the partitions that ``keep`` rejects with garbage; return their dates."""
    corrupted = []
    for directory in sorted(root.glob(f"{PARTITION_COLUMN}=*")):
        day = date.fromisoformat(directory.name.removeprefix(f"{PARTITION_COLUMN}="))
        if not keep(day):
            for file in directory.iterdir():
                file.write_bytes(b"this is not a parquet file")
            corrupted.append(day)
    return corrupted


def test_partitions_outside_the_window_are_not_opened(tmp_path: Path) -> None:
    table = write_table(
        driver_stats(max_age=timedelta(days=1)),
        daily_rows(10),
        entities=ENTITIES,
        root=tmp_path / "data",
        layout=Layout.HIVE,
    )
    assert table.batch_source is not None and table.batch_source.date_partition_column == PARTITION_COLUMN
    # Entity times span [03-05 06:00, 03-06 18:00]; with max_age 1 day rows from 03-04 06:00 can match.
    corrupted = corrupt_partitions(
        Path(table.batch_source.path), lambda day: date(2024, 3, 4) <= day <= date(2024, 3, 6)
    )
    assert len(corrupted) == 7
    frame = pd.DataFrame(
        {
            "driver_id": [1, 1, 1],
            "event_timestamp": [datetime(2024, 3, 5, 6), datetime(2024, 3, 6, 18), datetime(2024, 3, 5, 12)],
        }
    )
    with make_client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        result = client.get_historical_features(["driver_stats:trips"], frame).to_pandas()
        assert result["driver_stats__trips"].tolist() == [4, 6, 5]
        # The same data with an entity row on 03-08 must open a corrupted partition, and fails.
        later = pd.concat([frame, pd.DataFrame({"driver_id": [1], "event_timestamp": [datetime(2024, 3, 8)]})])
        with pytest.raises(pv.DataError, match="driver_stats"):
            client.get_historical_features(["driver_stats:trips"], later).to_arrow()


def test_partition_dates_are_utc_dates(tmp_path: Path) -> None:
    """An entity row at 21:00 in New York on 03-06 is 02:00 UTC on 03-07: that partition is read."""
    rows = [
        *daily_rows(6),
        {"driver_id": 1, "trips": 70, "rate": 1.0, "event_ts": datetime(2024, 3, 7, 1, tzinfo=UTC), "created": None},
    ]
    table = write_table(
        driver_stats(max_age=timedelta(hours=12)), rows, entities=ENTITIES, root=tmp_path / "data", layout=Layout.HIVE
    )
    assert table.batch_source is not None
    corrupt_partitions(Path(table.batch_source.path), lambda day: day >= date(2024, 3, 6))
    frame = pd.DataFrame(
        {"driver_id": [1], "event_timestamp": [pd.Timestamp("2024-03-06 21:00", tz="America/New_York")]}
    )
    with make_client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        result = client.get_historical_features(["driver_stats:trips"], frame).to_pandas()
    assert result["driver_stats__trips"].tolist() == [70]


def test_without_max_age_only_later_partitions_are_skipped(tmp_path: Path) -> None:
    table = write_table(
        driver_stats(max_age=None), daily_rows(10), entities=ENTITIES, root=tmp_path / "data", layout=Layout.HIVE
    )
    assert table.batch_source is not None
    corrupt_partitions(Path(table.batch_source.path), lambda day: day <= date(2024, 3, 4))
    frame = pd.DataFrame({"driver_id": [1, 1], "event_timestamp": [datetime(2024, 3, 4, 23), datetime(2024, 3, 2)]})
    with make_client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        result = client.get_historical_features(["driver_stats:trips"], frame).to_pandas()
    assert result["driver_stats__trips"].tolist() == [4, 1]


# -- settings and environment ------------------------------------------------------------------------


def test_memory_limit_from_provender_yaml(tmp_path: Path) -> None:
    table = write_table(driver_stats(), driver_rows(), entities=ENTITIES, root=tmp_path / "data")
    offline = {"engine": "duckdb", "memory_limit": "200MB"}
    with make_client(tmp_path / "project", offline=offline) as client:
        assert client.settings.offline.model_dump() == offline
        client.apply([DRIVER, table])
        result = client.get_historical_features(["driver_stats"], entity_frame()).to_arrow()
        assert result.num_rows == 5
        engine = DuckDBEngine.from_options(client.settings.offline.model_dump(), base_dir=client.settings.base_dir)
    try:
        memory, temp = (
            engine.cursor()
            .execute("SELECT current_setting('memory_limit'), current_setting('temp_directory')")
            .fetchall()[0]
        )
    finally:
        engine.close()
    assert memory.endswith("MiB") and 180 <= float(memory.split()[0]) <= 200
    assert Path(temp).is_relative_to(tmp_path / "project" / ".provender")


def test_an_unknown_offline_setting_is_named_when_the_client_starts(tmp_path: Path) -> None:
    with pytest.raises(pv.ConfigError, match=r"offline\.memory_limt.*memory_limit"):
        make_client(tmp_path / "project", offline={"engine": "duckdb", "memory_limt": "1GB"})


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
    tmp_path: Path, local_time_zone: Callable[[str], None]
) -> None:
    local_time_zone("America/Los_Angeles")
    table = write_table(driver_stats(), driver_rows(), entities=ENTITIES, root=tmp_path / "data", layout=Layout.HIVE)
    with make_client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        result = client.get_historical_features(["driver_stats"], entity_frame()).to_arrow()
    pit_oracle.assert_matches(result, expected(table, [], ["driver_stats"]))


def test_ingestion_window_with_naive_times_is_utc(tmp_path: Path, local_time_zone: Callable[[str], None]) -> None:
    """read_latest prunes partitions by the UTC dates of a naive window, not by local dates."""
    local_time_zone("America/Los_Angeles")
    table = write_table(driver_stats(), driver_rows(), entities=ENTITIES, root=tmp_path / "data", layout=Layout.HIVE)
    engine = DuckDBEngine.from_options({"engine": "duckdb"}, base_dir=tmp_path)
    try:
        # 17:00 in Los Angeles is 01:00 UTC the next day: read as local, the 03-01 partition is pruned.
        plan = LatestPlan(
            join=table_join(table, table.features, ENTITIES),
            start=datetime(2024, 3, 1, 17),
            end=datetime(2024, 3, 1, 23),
        )
        rows = engine.read_latest(plan, batch_rows=100).read_all().sort_by("driver_id").to_pylist()
    finally:
        engine.close()
    assert [(r["driver_id"], r["trips"]) for r in rows] == [(1, 31), (2, 32)]  # the 03-01 18:00 rows


# -- time precision ----------------------------------------------------------------------------------


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


def test_max_age_exactly_at_the_bound(tmp_path: Path) -> None:
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
    with make_client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        result = client.get_historical_features(["driver_stats:trips"], frame).to_pandas()
    assert result["driver_stats__trips"].tolist()[0] == 5
    assert result["driver_stats__trips"].isna().tolist() == [False, True, True]


def test_a_max_age_longer_than_any_calendar_means_no_bound(tmp_path: Path) -> None:
    rows = [{"driver_id": 1, "trips": 5, "rate": 1.0, "event_ts": DAY0, "created": None}]
    table = write_table(
        driver_stats(max_age=timedelta.max), rows, entities=ENTITIES, root=tmp_path / "data", layout=Layout.HIVE
    )
    with make_client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        result = client.get_historical_features(["driver_stats:trips"], entity_frame()).to_pandas()
    assert result["driver_stats__trips"].isna().tolist() == [False, True, True, True, False]
    assert result["driver_stats__trips"].iloc[0] == 5


def test_created_time_breaks_ties_and_missing_created_ranks_lowest(tmp_path: Path) -> None:
    rows = [
        {"driver_id": 1, "trips": 1, "rate": 1.0, "event_ts": DAY0, "created": DAY0 + timedelta(hours=2)},
        {"driver_id": 1, "trips": 2, "rate": 2.0, "event_ts": DAY0, "created": DAY0 + timedelta(hours=5)},
        {"driver_id": 1, "trips": 3, "rate": 3.0, "event_ts": DAY0, "created": None},
        {"driver_id": 1, "trips": 4, "rate": 4.0, "event_ts": DAY0, "created": DAY0 + timedelta(hours=1)},
    ]
    table = write_table(driver_stats(), rows, entities=ENTITIES, root=tmp_path / "data", layout=Layout.DIRECTORY)
    frame = pd.DataFrame({"driver_id": [1], "event_timestamp": [DAY0]})
    with make_client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        result = client.get_historical_features(["driver_stats"], frame).to_arrow().to_pylist()
    assert (result[0]["driver_stats__trips"], result[0]["driver_stats__rate"]) == (2, 2.0)


def test_csv_with_an_empty_created_column(tmp_path: Path) -> None:
    """A column with no value in a file is sniffed as text; timestamps are typed, so it still reads."""
    rows = [dict(row, created=None) for row in driver_rows()]
    table = write_table(driver_stats(), rows, entities=ENTITIES, root=tmp_path / "data", file_format=Format.CSV)
    with make_client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        result = client.get_historical_features(["driver_stats"], entity_frame()).to_arrow()
    expected = pit_oracle.retrieve(entity_rows(), [pit_oracle.SourceData(table, rows)], ["driver_stats"])
    pit_oracle.assert_matches(result, expected)


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


def test_null_keys_match_nothing(tmp_path: Path) -> None:
    rows = [
        {"driver_id": None, "trips": 1, "rate": 1.0, "event_ts": DAY0, "created": None},
        {"driver_id": 1, "trips": 2, "rate": 2.0, "event_ts": DAY0, "created": None},
    ]
    table = write_table(driver_stats(max_age=None), rows, entities=ENTITIES, root=tmp_path / "data")
    frame = pd.DataFrame({"driver_id": pd.array([None, 1], dtype="Int64"), "event_timestamp": [DAY0, DAY0]})
    with make_client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        result = client.get_historical_features(["driver_stats:trips"], frame).to_arrow()
    assert result.column("driver_id").to_pylist() == [None, 1]
    assert result.column("driver_stats__trips").to_pylist() == [None, 2]
