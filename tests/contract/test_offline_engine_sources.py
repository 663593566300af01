"""The offline engine contract, sources and bad input: CSV, field mapping, partition pruning, errors.

Each test runs once per registered offline engine (the ``engine`` fixture). A source that is
missing, unreadable or of the wrong shape fails with a ``DataError`` naming the table and the
column, before any result; partitions outside the window are never opened (proved by
corrupting them). Errors about refs and entity columns, raised before any engine runs, are in
``tests/unit/offline/test_bad_input.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import provender as pv
from tests.support import pit_oracle
from tests.support.builders import (
    CUSTOMER,
    DRIVER,
    ENTITIES,
    PARTITION_COLUMN,
    Format,
    Layout,
    source_schema,
    with_source_path,
    write_table,
)
from tests.support.engines import EngineCase
from tests.support.retrieval import (
    AT,
    PAIRS,
    ROWS,
    STATS,
    driver_rows,
    driver_stats,
    entities,
    entity_frame,
    entity_rows,
)

# -- CSV and field mapping -------------------------------------------------------------------------


@pytest.mark.parametrize("layout", [Layout.FILE, Layout.DIRECTORY, Layout.GLOB, Layout.HIVE])
def test_csv_sources(engine: EngineCase, tmp_path: Path, layout: Layout) -> None:
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
    with engine.client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        result = client.get_historical_features(["driver_stats"], entity_frame()).to_arrow()
    pit_oracle.assert_matches(
        result, pit_oracle.retrieve(entity_rows(), [pit_oracle.SourceData(table, rows)], ["driver_stats"])
    )


def test_csv_with_another_delimiter(engine: EngineCase, tmp_path: Path) -> None:
    path = tmp_path / "stats.tsv"
    path.write_text(
        "driver_id\ttrips\trate\tevent_ts\tcreated\n1\t7\t0.5\t2024-03-02 00:00:00+00:00\t\n", encoding="utf-8"
    )
    table = with_source_path(driver_stats(max_age=None, file_format=pv.CsvFormat(delimiter="\t")), str(path))
    with engine.client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        result = client.get_historical_features(["driver_stats:trips"], entity_frame()).to_arrow().to_pylist()
    assert [row["driver_stats__trips"] for row in result] == [7, None, None, None, 7]


def test_csv_with_an_empty_created_column(engine: EngineCase, tmp_path: Path) -> None:
    """A column with no value in a file is sniffed as text; timestamps are typed, so it still reads."""
    rows = [dict(row, created=None) for row in driver_rows()]
    table = write_table(driver_stats(), rows, entities=ENTITIES, root=tmp_path / "data", file_format=Format.CSV)
    with engine.client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        result = client.get_historical_features(["driver_stats"], entity_frame()).to_arrow()
    expected = pit_oracle.retrieve(entity_rows(), [pit_oracle.SourceData(table, rows)], ["driver_stats"])
    pit_oracle.assert_matches(result, expected)


def test_field_mapping_renames_source_columns(engine: EngineCase, tmp_path: Path) -> None:
    renames = {"drv": "driver_id", "n_trips": "trips"}
    table = driver_stats(field_mapping=renames)
    schema = source_schema(table, ENTITIES)
    assert schema.names[:3] == ["drv", "n_trips", "rate"]
    rows = [
        {"drv": r["driver_id"], "n_trips": r["trips"], **{k: r[k] for k in ("rate", "event_ts", "created")}}
        for r in driver_rows()
    ]
    table = write_table(table, rows, entities=ENTITIES, root=tmp_path / "data", schema=schema)
    with engine.client(tmp_path / "project") as client:
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


def test_partitions_outside_the_window_are_not_opened(engine: EngineCase, tmp_path: Path) -> None:
    table = write_table(
        driver_stats(max_age=timedelta(days=1)),
        daily_rows(10),
        entities=ENTITIES,
        root=tmp_path / "data",
        layout=Layout.HIVE,
    )
    assert isinstance(table.batch_source, pv.FileSource)
    assert table.batch_source.date_partition_column == PARTITION_COLUMN
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
    with engine.client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        result = client.get_historical_features(["driver_stats:trips"], frame).to_pandas()
        assert result["driver_stats__trips"].tolist() == [4, 6, 5]
        # The same data with an entity row on 03-08 must open a corrupted partition, and fails.
        later = pd.concat([frame, pd.DataFrame({"driver_id": [1], "event_timestamp": [datetime(2024, 3, 8)]})])
        with pytest.raises(pv.DataError, match="driver_stats"):
            client.get_historical_features(["driver_stats:trips"], later).to_arrow()


def test_partition_dates_are_utc_dates(engine: EngineCase, tmp_path: Path) -> None:
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
    with engine.client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        result = client.get_historical_features(["driver_stats:trips"], frame).to_pandas()
    assert result["driver_stats__trips"].tolist() == [70]


def test_without_max_age_only_later_partitions_are_skipped(engine: EngineCase, tmp_path: Path) -> None:
    table = write_table(
        driver_stats(max_age=None), daily_rows(10), entities=ENTITIES, root=tmp_path / "data", layout=Layout.HIVE
    )
    assert table.batch_source is not None
    corrupt_partitions(Path(table.batch_source.path), lambda day: day <= date(2024, 3, 4))
    frame = pd.DataFrame({"driver_id": [1, 1], "event_timestamp": [datetime(2024, 3, 4, 23), datetime(2024, 3, 2)]})
    with engine.client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        result = client.get_historical_features(["driver_stats:trips"], frame).to_pandas()
    assert result["driver_stats__trips"].tolist() == [4, 1]


# -- bad sources -----------------------------------------------------------------------------------


@pytest.fixture
def client(engine: EngineCase, tmp_path: Path) -> Iterator[pv.Client]:
    """A project whose tables are registered with real data."""
    tables = [write_table(t, ROWS, entities=ENTITIES, root=tmp_path / "data") for t in (STATS, PAIRS)]
    with engine.client(tmp_path / "project") as client:
        client.apply([DRIVER, CUSTOMER, *tables])
        yield client


@pytest.fixture
def sourceless(engine: EngineCase, tmp_path: Path) -> Iterator[pv.Client]:
    """A project whose tables' sources do not exist: reaching them would raise 'does not exist'."""
    tables = [with_source_path(t, str(tmp_path / "missing" / t.name)) for t in (STATS, PAIRS)]
    with engine.client(tmp_path / "project") as client:
        client.apply([DRIVER, CUSTOMER, *tables])
        yield client


def test_the_fixture_data_is_good(client: pv.Client) -> None:
    result = client.get_historical_features(["driver_stats", "pair_stats"], entities()).to_pandas()
    assert result["driver_stats__trips"].tolist()[0] == 3


def test_missing_source_path_names_the_table(sourceless: pv.Client, tmp_path: Path) -> None:
    with pytest.raises(pv.DataError, match=r"Feature table 'driver_stats'.*'.*missing/driver_stats' does not exist"):
        sourceless.get_historical_features(["driver_stats:trips"], entities())


def test_source_directory_without_files(engine: EngineCase, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with engine.client(tmp_path / "project") as client:
        client.apply([DRIVER, with_source_path(STATS, str(tmp_path / "empty"))])
        with pytest.raises(pv.DataError, match=r"Feature table 'driver_stats'.*matches no \.parquet files"):
            client.get_historical_features(["driver_stats:trips"], entities())


def test_unreadable_source_file(engine: EngineCase, tmp_path: Path) -> None:
    path = tmp_path / "stats.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    with engine.client(tmp_path / "project") as client:
        client.apply([DRIVER, with_source_path(STATS, str(path))])
        with pytest.raises(
            pv.DataError, match=rf"Cannot read the batch source of feature table 'driver_stats' \({path}\)"
        ):
            client.get_historical_features(["driver_stats:trips"], entities())


@pytest.mark.parametrize(
    ("column", "found", "declared"),
    [
        ("trips", pa.string(), "int64"),
        ("trips", pa.float64(), "int64"),
        ("trips", pa.uint64(), "int64"),
        ("conv_rate", pa.float64(), "float"),
        ("driver_id", pa.string(), "int64"),
    ],
)
def test_source_column_of_the_wrong_type(
    engine: EngineCase, tmp_path: Path, column: str, found: pa.DataType, declared: str
) -> None:
    schema = source_schema(STATS, ENTITIES)
    schema = schema.set(schema.get_field_index(column), pa.field(column, found))
    rows = [{k: (str(v) if found == pa.string() and k == column else v) for k, v in row.items()} for row in ROWS]
    table = write_table(STATS, rows, entities=ENTITIES, root=tmp_path / "data", schema=schema)
    with engine.client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        with pytest.raises(pv.DataError) as info:
            client.get_historical_features(["driver_stats:trips"], entities())
    message = str(info.value)
    assert f"Column '{column}'" in message
    assert "feature table 'driver_stats'" in message
    assert f"has type {found}, but {declared} is declared" in message


def test_source_event_timestamp_that_is_not_a_time(engine: EngineCase, tmp_path: Path) -> None:
    schema = source_schema(STATS, ENTITIES, event_type=pa.string())
    rows = [dict(row, event_ts="2024-03-01") for row in ROWS]
    table = write_table(STATS, rows, entities=ENTITIES, root=tmp_path / "data", schema=schema)
    with engine.client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        with pytest.raises(
            pv.DataError,
            match=r"Column 'event_ts' \(event timestamp\).*'driver_stats'.*"
            r"has type string, but a timestamp is declared",
        ):
            client.get_historical_features(["driver_stats:trips"], entities())


def test_source_missing_a_column(engine: EngineCase, tmp_path: Path) -> None:
    schema = source_schema(STATS, ENTITIES)
    schema = schema.remove(schema.get_field_index("trips"))
    table = write_table(STATS, ROWS, entities=ENTITIES, root=tmp_path / "data", schema=schema)
    with engine.client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        with pytest.raises(
            pv.DataError,
            match=r"'driver_stats'.* has no column 'trips' \(feature 'trips'\); "
            r"columns: driver_id, conv_rate, event_ts",
        ):
            client.get_historical_features(["driver_stats:trips"], entities())


def test_source_missing_its_created_column(engine: EngineCase, tmp_path: Path) -> None:
    table = write_table(STATS, ROWS, entities=ENTITIES, root=tmp_path / "data")
    assert table.batch_source is not None
    table = with_source_path(table, table.batch_source.path, created_timestamp_column="created")
    with engine.client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        with pytest.raises(pv.DataError, match=r"no column 'created' \(created timestamp\)"):
            client.get_historical_features(["driver_stats:trips"], entities())


# -- entity rows the engine reads ---------------------------------------------------------------


def test_narrower_entity_keys_are_accepted(client: pv.Client) -> None:
    frame = entities(driver_id=pd.array([1, 2], dtype="int32"))
    result = client.get_historical_features(["driver_stats:trips"], frame).to_pandas()
    assert result["driver_stats__trips"].tolist()[0] == 3


@pytest.mark.parametrize("kind", ["pandas", "parquet"])
def test_null_event_timestamp_names_the_row(client: pv.Client, tmp_path: Path, kind: str) -> None:
    frame = pd.DataFrame({"driver_id": [1, 2, 3, 4], "event_timestamp": [AT, AT, None, None]})
    source: object = frame
    if kind == "parquet":
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "entities.parquet")
        source = str(tmp_path / "entities.parquet")
    with pytest.raises(pv.DataError, match=r"'event_timestamp' column is null in 2 row\(s\), the first at row 2"):
        client.get_historical_features(["driver_stats:trips"], source)
