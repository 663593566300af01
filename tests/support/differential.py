"""Random retrieval cases for the differential tests (Hypothesis): data, tables, entity rows.

Every case is a temp project with up to three feature tables:

- ``driver_stats``: key ``driver_id`` (INT64), a created column, features FLOAT/INT64 and
  ``seen_at`` (UNIX_TIMESTAMP) which always equals the row's event time, so the result itself
  shows which row was picked;
- ``pair_stats``: composite key (``driver_id``, ``customer_id``), no created column;
- ``customer_profile``: string key, ``field_mapping`` renames, created times sometimes null;

each in a random layout (one file, directory, hive partitions with ``date_partition_column``,
glob) and format (Parquet, CSV), with a random ``max_age``. Event times fall on a coarse grid
(30 minutes) so that ties, rows exactly at T and rows exactly at T - max_age are common; entity
times are naive or aware (UTC or another zone), sometimes a nanosecond or a second off the grid.

``tests/unit/offline/test_duckdb_differential.py`` checks the DuckDB engine against the oracle
on these cases, ``tests/integration/test_spark_differential.py`` the Spark engine against the
oracle and DuckDB.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import strategies as st

import provender as pv
from tests.support import pit_oracle
from tests.support.builders import ENTITIES, Format, Layout, source_schema

BASE = datetime(2024, 3, 1, tzinfo=UTC)
STEP = timedelta(minutes=30)
GRID = 150  # about three days, so hive partitions span several dates

DRIVERS = [1, 2, 3]
CUSTOMERS = ["a", "b", "ß"]
UNMATCHED_DRIVER, UNMATCHED_CUSTOMER = 99, "zz"
MAX_AGES = [None, STEP, 4 * STEP, timedelta(days=1), timedelta(seconds=90)]
ZONES = [None, "UTC", "America/New_York", "Asia/Kolkata"]


def driver_stats(max_age: timedelta | None) -> pv.FeatureTable:
    return pv.FeatureTable(
        name="driver_stats",
        entities=["driver_id"],
        features=[
            pv.Feature("conv_rate", pv.ValueType.FLOAT),
            pv.Feature("trips", pv.ValueType.INT64),
            pv.Feature("seen_at", pv.ValueType.UNIX_TIMESTAMP),
        ],
        batch_source=pv.FileSource(path="-", event_timestamp_column="event_ts", created_timestamp_column="created"),
        max_age=max_age,
    )


def pair_stats(max_age: timedelta | None) -> pv.FeatureTable:
    return pv.FeatureTable(
        name="pair_stats",
        entities=["driver_id", "customer_id"],
        features=[pv.Feature("score", pv.ValueType.DOUBLE), pv.Feature("flag", pv.ValueType.BOOL)],
        batch_source=pv.FileSource(path="-", event_timestamp_column="ts"),
        max_age=max_age,
    )


def customer_profile(max_age: timedelta | None) -> pv.FeatureTable:
    return pv.FeatureTable(
        name="customer_profile",
        entities=["customer_id"],
        features=[pv.Feature("balance", pv.ValueType.DOUBLE), pv.Feature("tier", pv.ValueType.STRING)],
        batch_source=pv.FileSource(
            path="-",
            event_timestamp_column="event_time",
            created_timestamp_column="created_at",
            field_mapping={"cust": "customer_id", "bal": "balance"},
        ),
        max_age=max_age,
    )


TABLES = {"driver_stats": driver_stats, "pair_stats": pair_stats, "customer_profile": customer_profile}


@dataclass(frozen=True)
class TableCase:
    table: pv.FeatureTable
    rows: list[dict[str, Any]]
    layout: Layout
    file_format: Format
    schema: pa.Schema


@dataclass(frozen=True)
class Case:
    tables: list[TableCase]
    entity_rows: list[dict[str, Any]]
    entity_columns: list[str]
    zone: str | None
    unit: str
    entity_kind: str
    refs: list[str]


def grid_time(index: int) -> datetime:
    return BASE + index * STEP


@st.composite
def stamps(draw: st.DrawFn, *, naive: bool) -> datetime:
    at = grid_time(draw(st.integers(0, GRID)))
    return at.replace(tzinfo=None) if naive else at


@st.composite
def driver_rows(draw: st.DrawFn) -> list[dict[str, Any]]:
    naive = draw(st.booleans())
    rows = []
    for _ in range(draw(st.integers(1, 14))):
        event = draw(stamps(naive=naive))
        delay = draw(st.one_of(st.none(), st.integers(0, 3)))
        created = None if delay is None else event + delay * timedelta(minutes=10)
        rows.append(
            {
                "driver_id": draw(st.sampled_from(DRIVERS)),
                "conv_rate": draw(st.sampled_from([0.25, -1.5, 3.0, None])),
                "trips": draw(st.sampled_from([0, 7, -2, 2**40, None])),
                "seen_at": pit_oracle.to_utc(event),
                "event_ts": event,
                "created": created,
            }
        )
    return rows


@st.composite
def pair_rows(draw: st.DrawFn) -> list[dict[str, Any]]:
    naive = draw(st.booleans())
    return [
        {
            "driver_id": draw(st.sampled_from(DRIVERS)),
            "customer_id": draw(st.sampled_from(CUSTOMERS)),
            "score": draw(st.sampled_from([0.5, -7.125, 1e10, None])),
            "flag": draw(st.sampled_from([True, False, None])),
            "ts": draw(stamps(naive=naive)),
        }
        for _ in range(draw(st.integers(1, 14)))
    ]


@st.composite
def customer_rows(draw: st.DrawFn) -> list[dict[str, Any]]:
    naive = draw(st.booleans())
    rows = []
    for _ in range(draw(st.integers(1, 10))):
        event = draw(stamps(naive=naive))
        rows.append(
            {
                "cust": draw(st.sampled_from(CUSTOMERS)),
                "bal": draw(st.sampled_from([1.5, -3.25, 0.0, None])),
                "tier": draw(st.sampled_from(["gold", "ünï", "x y", None])),
                "event_time": event,
                "created_at": draw(st.sampled_from([None, event, event + timedelta(hours=1)])),
            }
        )
    return rows


ROWS = {"driver_stats": driver_rows, "pair_stats": pair_rows, "customer_profile": customer_rows}


@st.composite
def table_cases(draw: st.DrawFn, name: str) -> TableCase:
    table = TABLES[name](draw(st.sampled_from(MAX_AGES)))
    rows = draw(ROWS[name]())
    file_format = draw(st.sampled_from(Format))
    stamp_type = draw(
        st.sampled_from(
            [
                pa.timestamp("us", tz="UTC"),
                pa.timestamp("us"),
                pa.timestamp("ns", tz="UTC"),
                pa.timestamp("ms"),
            ]
        )
    )
    schema = source_schema(table, ENTITIES, event_type=stamp_type, created_type=stamp_type)
    return TableCase(
        table=table, rows=rows, layout=draw(st.sampled_from(Layout)), file_format=file_format, schema=schema
    )


@st.composite
def refs_for(draw: st.DrawFn, tables: list[pv.FeatureTable]) -> list[str]:
    refs: list[str] = []
    for table in tables:
        if draw(st.booleans()):
            refs.append(table.name)
        else:
            names = draw(st.permutations([f.name for f in table.features]))
            refs += [f"{table.name}:{name}" for name in names[: draw(st.integers(1, len(names)))]]
    return draw(st.permutations(refs))


@st.composite
def entity_times(draw: st.DrawFn, tables: list[TableCase], *, unit: str) -> pd.Timestamp:
    """A grid time, or one anchored on a feature row: at its event time or at event + max_age."""
    if draw(st.booleans()):
        case = draw(st.sampled_from(tables))
        row = draw(st.sampled_from(case.rows))
        source = case.table.batch_source
        assert source is not None
        at = pit_oracle.to_utc(row[source.event_timestamp_column])
        if case.table.max_age is not None and draw(st.booleans()):
            at += case.table.max_age
    else:
        at = grid_time(draw(st.integers(-2, GRID + 2)))
    offsets = [
        pd.Timedelta(0),
        pd.Timedelta(seconds=1),
        pd.Timedelta(seconds=-1),
        pd.Timedelta(microseconds=1),
        pd.Timedelta(microseconds=-1),
    ]
    if unit == "ns":
        offsets += [pd.Timedelta(nanoseconds=1), pd.Timedelta(nanoseconds=-1), pd.Timedelta(nanoseconds=-999)]
    offset = draw(st.sampled_from(offsets[:1] * 4 + offsets))
    return pd.Timestamp(at) + offset


@st.composite
def cases(draw: st.DrawFn) -> Case:
    names = draw(st.lists(st.sampled_from(list(TABLES)), min_size=1, max_size=3, unique=True))
    tables = [draw(table_cases(name)) for name in names]
    refs = draw(refs_for([t.table for t in tables]))
    zone = draw(st.sampled_from(ZONES))
    unit = draw(st.sampled_from(["ns", "us"]))
    entity_rows: list[dict[str, Any]] = []
    for n in range(draw(st.integers(0, 12))):
        if entity_rows and draw(st.integers(0, 5)) == 0:  # a duplicate of an earlier row
            row = dict(draw(st.sampled_from(entity_rows)))
        else:
            at = draw(entity_times(tables, unit=unit))
            row = {
                "driver_id": draw(st.sampled_from([*DRIVERS, UNMATCHED_DRIVER])),
                "customer_id": draw(st.sampled_from([*CUSTOMERS, UNMATCHED_CUSTOMER])),
                "event_timestamp": at.tz_localize(None) if zone is None else at.tz_convert(zone),
                "note": draw(st.sampled_from(["x", "ÿ", None])),
            }
        row["row_no"] = n
        entity_rows.append(row)
    columns = draw(st.permutations(["row_no", "driver_id", "customer_id", "event_timestamp", "note"]))
    kind = draw(st.sampled_from(["pandas", "arrow", "parquet"]))
    return Case(
        tables=tables,
        entity_rows=entity_rows,
        entity_columns=list(columns),
        zone=zone,
        unit=unit,
        entity_kind=kind,
        refs=refs,
    )


def entity_frame(case: Case) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "row_no": pd.array([r["row_no"] for r in case.entity_rows], dtype="int64"),
            "driver_id": pd.array([r["driver_id"] for r in case.entity_rows], dtype="int64"),
            "customer_id": pd.Series([r["customer_id"] for r in case.entity_rows], dtype=object),
            "event_timestamp": pd.Series(
                pd.DatetimeIndex(
                    [r["event_timestamp"] for r in case.entity_rows],
                    dtype=f"datetime64[ns, {case.zone}]" if case.zone else "datetime64[ns]",
                )
            ).astype(f"datetime64[{case.unit}, {case.zone}]" if case.zone else f"datetime64[{case.unit}]"),
            "note": pd.Series([r["note"] for r in case.entity_rows], dtype=object),
        }
    )
    return frame[case.entity_columns]


def entity_source(case: Case, frame: pd.DataFrame, root: Path) -> object:
    schema = pa.schema(
        [
            ("row_no", pa.int64()),
            ("driver_id", pa.int64()),
            ("customer_id", pa.string()),
            ("event_timestamp", pa.timestamp(case.unit, tz=case.zone)),
            ("note", pa.string()),
        ]
    )
    schema = pa.schema([schema.field(name) for name in case.entity_columns])
    if case.entity_kind == "pandas":
        return frame
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False).replace_schema_metadata(None)
    if case.entity_kind == "arrow":
        return table
    path = root / "entities.parquet"
    pq.write_table(table, path)
    return str(path)


def check_properties(result: pa.Table, case: Case) -> None:
    """The properties that hold whatever the oracle says: count, order, no leak, max_age."""
    rows = result.to_pylist()
    assert [r["row_no"] for r in rows] == [r["row_no"] for r in case.entity_rows]
    assert result.schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")
    stats = next((t.table for t in case.tables if t.table.name == "driver_stats"), None)
    if stats is None or "driver_stats__seen_at" not in result.column_names:
        return
    for row, entity_row in zip(rows, case.entity_rows, strict=True):
        seen_at = row["driver_stats__seen_at"]
        if seen_at is None:
            continue
        at = pit_oracle.to_utc(entity_row["event_timestamp"])
        assert seen_at <= at, f"row {row['row_no']}: value from {seen_at} is newer than its entity row ({at})"
        if stats.max_age is not None:
            assert seen_at >= at - stats.max_age, f"row {row['row_no']}: value from {seen_at} is older than max_age"
