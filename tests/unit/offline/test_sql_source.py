"""pv.SqlSource: the query's validation, the registry codec, and the schema check at apply.

Both engines' results over SQL sources are in ``tests/contract/test_offline_engine_sql_sources.py``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import provender as pv
from provender.cli.main import cli
from provender.definitions.sql import transpile
from provender.errors import DataError, DefinitionError
from provender.registry import codec
from tests.support.builders import DRIVER, make_client

NOW = datetime(2026, 5, 10, tzinfo=UTC)
TRIPS = pv.FileSource(path="trips.parquet", event_timestamp_column="ts")
DRIVERS = pv.FileSource(path="drivers.parquet", event_timestamp_column="since")
QUERY = "SELECT t.driver_id, t.ts, t.fare * 2 AS fare2, d.city FROM trips t JOIN drivers d USING (driver_id)"


def source(query: object = QUERY, **changes: object) -> pv.SqlSource:
    values: dict[str, object] = {
        "query": query,
        "sources": {"trips": TRIPS, "drivers": DRIVERS},
        "event_timestamp_column": "ts",
    }
    return pv.SqlSource(**(values | changes))  # type: ignore[arg-type]


def table(batch_source: pv.SqlSource, **features: pv.ValueType) -> pv.FeatureTable:
    return pv.FeatureTable(
        name="rides",
        entities=["driver_id"],
        features=[pv.Feature(name, value_type) for name, value_type in features.items()],
        batch_source=batch_source,
    )


# -- the definition


def test_a_sql_source_names_its_inputs() -> None:
    made = source()
    assert list(made.sources) == ["drivers", "trips"]
    assert made.path == "sql:drivers,trips"
    assert (made.dialect, made.created_timestamp_column) == ("duckdb", None)


@pytest.mark.parametrize(
    ("changes", "field", "text"),
    [
        (
            {"query": "SELECT * FROM trips JOIN other USING (driver_id)"},
            "query",
            "reads other, which sources does not name",
        ),
        ({"query": "SELECT * FROM main.trips"}, "query", "reads main.trips, which sources does not name"),
        ({"query": "SELECT * FROM trips"}, "sources", "lists drivers, which the query does not read"),
        ({"query": "DELETE FROM trips"}, "query", "must be a SELECT query (it parses as DELETE)"),
        ({"query": "SELECT 1 FROM trips; SELECT 2 FROM drivers"}, "query", "must be one query, got 2 statements"),
        ({"query": "SELECT FROM WHERE trips drivers ("}, "query", "is not valid duckdb SQL"),
        ({"query": "  "}, "query", "must be a SELECT query"),
        ({"dialect": "klingon"}, "dialect", "'klingon' is not a SQL dialect sqlglot knows"),
        (
            {"query": "SELECT approx_top_k(t.fare, 3) AS top FROM trips t JOIN drivers d USING (driver_id)"},
            "query",
            "cannot be written for the duckdb engine (duckdb SQL): APPROX_TOP_K",
        ),
        ({"sources": {}}, "sources", "must map each table name"),
        ({"sources": {"trips": TRIPS, "drivers": "x.parquet"}}, "sources", "'drivers' must be a FileSource"),
        ({"sources": {"trips": TRIPS, "dri vers": DRIVERS}}, "sources", "'dri vers' is not a table name"),
    ],
)
def test_invalid_sql_sources_name_the_field(changes: dict[str, object], field: str, text: str) -> None:
    with pytest.raises(DefinitionError, match=re.escape(text)) as info:
        source(**changes)
    assert (info.value.obj, info.value.field) == ("SqlSource", field)


def test_ctes_and_unions_are_fine() -> None:
    query = (
        "WITH paid AS (SELECT * FROM trips WHERE fare > 0) "
        "SELECT driver_id, ts FROM paid UNION ALL SELECT driver_id, since AS ts FROM drivers"
    )
    assert source(query).query == query


def test_transpile_renames_the_inputs_and_keeps_aliases() -> None:
    relations = {"trips": "v_trips", "drivers": "v_drivers"}
    spark = transpile("SELECT IF(t.fare > 1, 1, 0) AS f FROM trips t", "spark", to="duckdb", relations=relations)
    assert spark == "SELECT CASE WHEN t.fare > 1 THEN 1 ELSE 0 END AS f FROM v_trips AS t"
    assert transpile("SELECT * FROM trips", "duckdb", to="spark", relations=relations) == (
        "SELECT * FROM v_trips AS trips"
    )


def test_codec_round_trip() -> None:
    made = table(
        source(dialect="duckdb", created_timestamp_column="ts2", field_mapping={"fare2": "f"}), f=pv.ValueType.DOUBLE
    )
    data = codec.to_dict(made)
    assert data["format_version"] == 5
    assert data["spec"]["batch_source"]["type"] == "sql"  # type: ignore[index]
    assert codec.from_json(codec.to_json(made)) == made


# -- checked at apply


@pytest.fixture
def project(tmp_path: Path) -> Path:
    trips = pa.table(
        {
            "driver_id": pa.array([1, 2], pa.int64()),
            "fare": [10.0, 20.0],
            "ts": pa.array([NOW - timedelta(hours=2), NOW - timedelta(hours=1)], pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(trips, tmp_path / "trips.parquet")
    pq.write_table(
        pa.table({"driver_id": pa.array([1, 2], pa.int64()), "city": ["a", "b"]}), tmp_path / "drivers.parquet"
    )
    return tmp_path


def test_apply_checks_the_query_runs_and_gives_the_declared_columns(project: Path) -> None:
    with make_client(project) as client:
        good = table(source(), fare2=pv.ValueType.DOUBLE, city=pv.ValueType.STRING)
        client.apply([DRIVER, good])
        got = client.get_historical_features(
            ["rides:fare2", "rides:city"], pd.DataFrame({"driver_id": [1, 2], "event_timestamp": [NOW, NOW]})
        ).to_arrow()
        assert got.column("rides__fare2").to_pylist() == [20.0, 40.0]
        stats = client.get_statistics("rides", start=NOW - timedelta(days=1), end=NOW)
        assert stats.rows == 2 and stats["fare2"].mean == 30.0
        version = client.registry_version()
        cases = [
            (
                table(source(QUERY.replace("t.fare * 2", "t.fares * 2")), fare2=pv.ValueType.DOUBLE),
                '"fares"',
            ),
            (table(source(), fare3=pv.ValueType.DOUBLE), "has no column 'fare3' (feature 'fare3')"),
            (table(source(), city=pv.ValueType.INT64), "Column 'city' (feature 'city')"),
            (table(source(QUERY.replace("t.ts", "t.fare AS ts")), city=pv.ValueType.STRING), "'ts' (event timestamp)"),
        ]
        for bad, text in cases:  # DuckDB's reason names the unknown column ("fares")
            with pytest.raises(DataError, match=re.escape(text)):
                client.apply([bad])
            with pytest.raises(DataError, match=re.escape(text)):
                client.plan([bad])
        assert client.registry_version() == version
    described = CliRunner().invoke(cli, ["--config", str(project / "provender.yaml"), "tables", "describe", "rides"])
    assert described.exit_code == 0, described.output
    assert "sql:drivers,trips (SQL (duckdb) over drivers=drivers.parquet, trips=trips.parquet)" in described.output
    assert f"query:     {QUERY}" in described.output


def test_an_input_that_does_not_exist_is_named(project: Path) -> None:
    missing = source(
        sources={"trips": TRIPS, "drivers": pv.FileSource(path="gone.parquet", event_timestamp_column="x")}
    )
    with (
        make_client(project) as client,
        pytest.raises(
            DataError,
            match=re.escape("Input 'drivers' of the SQL source of feature table 'rides': Source path 'gone.parquet'"),
        ),
    ):
        client.apply([DRIVER, table(missing, city=pv.ValueType.STRING)])


def test_a_delta_input_is_read_at_its_pin_and_stored_as_version_7(project: Path) -> None:
    """A Delta input: its pinned version is what the query reads; the codec says 7 (older readers refuse)."""
    deltalake = pytest.importorskip("deltalake")
    drivers = project / "drivers_delta"
    deltalake.write_deltalake(str(drivers), pa.table({"driver_id": pa.array([1, 2], pa.int64()), "city": ["a", "b"]}))
    deltalake.write_deltalake(
        str(drivers), pa.table({"driver_id": pa.array([1, 2], pa.int64()), "city": ["x", "y"]}), mode="overwrite"
    )
    entity_rows = pd.DataFrame({"driver_id": [1, 2], "event_timestamp": [NOW, NOW]})
    trips = pv.FileSource(path=str(project / "trips.parquet"), event_timestamp_column="ts")
    got = {}
    for pin in (0, None):
        delta = pv.DeltaSource(path=str(drivers), event_timestamp_column="since", version=pin)
        made = table(
            source(sources={"trips": trips, "drivers": delta}), fare2=pv.ValueType.DOUBLE, city=pv.ValueType.STRING
        )
        record = codec.to_dict(made)
        assert record["format_version"] == 7
        assert codec.from_json(codec.to_json(made)) == made
        with make_client(project / f"p{pin}") as client:
            client.apply([DRIVER, made])
            job = client.get_historical_features(["rides:city", "rides:fare2"], entity_rows)
            got[pin] = job.to_arrow().column("rides__city").to_pylist()
            (read,) = job.lineage()
            assert read.files and all(str(drivers) in f.path or f.path.endswith("trips.parquet") for f in read.files)
    assert got == {0: ["a", "b"], None: ["x", "y"]}
    with pytest.raises(DefinitionError, match="newer than this Provender understands"):
        codec.from_dict({**record, "format_version": 8})
