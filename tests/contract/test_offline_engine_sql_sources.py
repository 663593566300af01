"""SQL-defined sources give the same rows on every offline engine (DESIGN.md, "Transformations").

One query, a join of two Parquet inputs with a filter and expressions, is the batch source of a
feature table with a plain feature and a windowed aggregation. On each engine (DuckDB in process,
Spark local), historical retrieval equals the point-in-time rule applied by hand to the query's
rows computed here with pandas; offline-to-online ingestion over it (into Redis, which Spark's
executors can write) gives at ``end`` the historical values at ``end``. A query written in the
Spark dialect runs on both engines too, and on-demand features over the SQL source's features
are computed from the engine's result the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import provender as pv
from tests.support.builders import DRIVER
from tests.support.engines import EngineCase
from tests.support.services import RedisServer

END = datetime(2026, 5, 10, tzinfo=UTC)
H = timedelta(hours=1)
QUERY = """
    SELECT t.driver_id, t.ts, t.fare * 2 AS fare2, upper(d.city) AS city,
           CASE WHEN t.fare > 20 THEN true ELSE false END AS big
    FROM trips AS t JOIN drivers AS d ON t.driver_id = d.driver_id
    WHERE t.fare > 0 AND d.active
"""
SPARK_QUERY = """
    SELECT t.driver_id, t.ts, nvl(t.fare, 0) * 2 AS fare2, upper(d.city) AS city, IF(t.fare > 20, true, false) AS big
    FROM trips t JOIN drivers d ON t.driver_id = d.driver_id
    WHERE t.fare > 0 AND d.active
"""
TRIPS = pd.DataFrame(
    {
        "driver_id": [1, 1, 1, 2, 2, 3, 1],
        "fare": [10.0, 25.0, -1.0, 30.0, 5.0, 50.0, 12.5],
        "ts": [END - 50 * H, END - 20 * H, END - 10 * H, END - 30 * H, END - 2 * H, END - 5 * H, END + 5 * H],
    }
)
DRIVERS = pd.DataFrame({"driver_id": [1, 2, 3], "city": ["paris", "lyon", "nice"], "active": [True, True, False]})
ENTITY_TIMES = [END - 40 * H, END - 15 * H, END, END - 1 * H, END]
ENTITY_DRIVERS = [1, 1, 1, 2, 3]


def query_rows() -> pd.DataFrame:
    """The query's rows, computed by pandas (the brute-force reference)."""
    joined = TRIPS.merge(DRIVERS, on="driver_id")
    kept = joined[(joined.fare > 0) & joined.active]
    return pd.DataFrame(
        {
            "driver_id": kept.driver_id,
            "ts": kept.ts,
            "fare2": kept.fare * 2,
            "city": kept.city.str.upper(),
            "big": kept.fare > 20,
        }
    )


def expected(at: datetime, driver: int) -> dict[str, object]:
    """The point-in-time rule and the 1-day sum over :func:`query_rows`, by hand."""
    rows = query_rows()
    mine = rows[(rows.driver_id == driver) & (rows.ts <= at)].sort_values("ts")
    window = mine[mine.ts > at - timedelta(days=1)]
    if mine.empty:
        return {"city": None, "big": None, "fare2_sum_1d": None}
    last = mine.iloc[-1]
    total = float(window.fare2.sum()) if not window.empty else None
    return {"city": last.city, "big": bool(last.big), "fare2_sum_1d": total}


def make_table(root: Path, *, query: str = QUERY, dialect: str = "duckdb") -> pv.FeatureTable:
    root.mkdir(parents=True, exist_ok=True)
    trips = pa.Table.from_pandas(TRIPS, preserve_index=False).cast(
        pa.schema([("driver_id", pa.int64()), ("fare", pa.float64()), ("ts", pa.timestamp("us", tz="UTC"))])
    )
    pq.write_table(trips, root / "trips.parquet")
    pq.write_table(pa.Table.from_pandas(DRIVERS, preserve_index=False), root / "drivers.parquet")
    return pv.FeatureTable(
        name="rides",
        entities=["driver_id"],
        features=[
            pv.Feature("fare2", pv.ValueType.DOUBLE),
            pv.Feature("city", pv.ValueType.STRING),
            pv.Feature("big", pv.ValueType.BOOL),
        ],
        batch_source=pv.SqlSource(
            query=query,
            dialect=dialect,
            sources={
                "trips": pv.FileSource(path=str(root / "trips.parquet"), event_timestamp_column="ts"),
                "drivers": pv.FileSource(path=str(root / "drivers.parquet"), event_timestamp_column="since"),
            },
            event_timestamp_column="ts",
        ),
        aggregations=[pv.Aggregation(column="fare2", function="sum", window=timedelta(days=1), name="fare2_sum_1d")],
    )


REFS = ["rides:city", "rides:big", "rides:fare2_sum_1d"]
DOUBLED = pv.OnDemandFeatures(
    name="ride_calc",
    inputs=["rides:fare2_sum_1d"],
    request_schema={"tip": pv.ValueType.DOUBLE},
    features=[pv.Feature("doubled_plus_tip", pv.ValueType.DOUBLE)],
    function="tests.support.on_demand_functions:doubled",
    mode="python",
)


@pytest.mark.parametrize(
    ("query", "dialect"), [(QUERY, "duckdb"), (SPARK_QUERY, "spark")], ids=["duckdb-sql", "spark-sql"]
)
def test_retrieval_over_a_sql_source_follows_the_rule(
    engine: EngineCase, tmp_path: Path, query: str, dialect: str
) -> None:
    table = make_table(tmp_path / "data", query=query, dialect=dialect)
    entity_df = pd.DataFrame({"driver_id": ENTITY_DRIVERS, "event_timestamp": ENTITY_TIMES, "label": range(5)})
    with engine.client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        got = client.get_historical_features(REFS, entity_df).to_arrow().to_pylist()
    assert [row["label"] for row in got] == list(range(5))
    for row, at, driver in zip(got, ENTITY_TIMES, ENTITY_DRIVERS, strict=True):
        want = expected(at, driver)
        assert {
            "city": row["rides__city"],
            "big": row["rides__big"],
            "fare2_sum_1d": row["rides__fare2_sum_1d"],
        } == want


def test_ingestion_over_a_sql_source_equals_retrieval_at_end(
    engine: EngineCase, tmp_path: Path, redis_server: RedisServer
) -> None:
    table = make_table(tmp_path / "data")
    online = {"store": "redis", "url": redis_server.url}
    with engine.client(tmp_path / "project", online=online, project=f"sql_{engine.name}") as client:
        client.apply([DRIVER, table])
        client.start_offline_to_online_ingestion("rides", start=END - timedelta(days=3), end=END).wait()
        served = client.get_online_features(REFS, [{"driver_id": d} for d in (1, 2, 3)]).to_dict()
        entity_df = pd.DataFrame({"driver_id": [1, 2, 3], "event_timestamp": [END] * 3})
        historical = client.get_historical_features(REFS, entity_df).to_arrow().to_pydict()
    for ref in REFS:
        column = ref.replace(":", "__")
        assert served[column] == historical[column], column
    assert served["rides__city"] == ["PARIS", "LYON", None]  # driver 3 is inactive: filtered out by the query
