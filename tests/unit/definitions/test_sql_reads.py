"""What a SQL source's query needs from its inputs (``plan_reads``): columns, and which input a time filter may move to.

A time filter may move to an input only when the result's event time is that input's column
unchanged along every step and each step keeps rows one for one; each refused case below is
one where moving it would change the result (other rows feed a window or an aggregate, a LIMIT
picks other rows, the same rows are read twice, the value is computed).
"""

from __future__ import annotations

import duckdb
import pytest

from provender.definitions.sql import plan_reads

SCHEMAS = {
    "trips": ["driver_id", "Fare", "ts", "note", "day"],
    "drivers": ["driver_id", "city", "active", "since"],
}
OUTPUT = ["driver_id", "ts", "fare2"]
JOIN = (
    "SELECT t.driver_id, t.ts, t.fare * 2 AS fare2, upper(d.city) AS city "
    "FROM trips AS t JOIN drivers AS d ON t.driver_id = d.driver_id WHERE t.fare > 0 AND d.active"
)


def test_only_the_columns_feeding_the_result_columns_read_are_read() -> None:
    plan = plan_reads(JOIN, "duckdb", SCHEMAS, OUTPUT, "ts")
    assert plan is not None
    assert plan.columns == {"trips": ("driver_id", "Fare", "ts"), "drivers": ("driver_id", "active")}
    assert plan.time_columns == {"trips": "ts"}
    assert '"t"."Fare"' in plan.query  # spelled as the input does: Spark may resolve names case-sensitively


def test_a_star_reads_only_what_the_result_columns_need_and_distinct_keeps_every_column() -> None:
    plan = plan_reads("SELECT *, fare AS fare2 FROM trips", "duckdb", {"trips": SCHEMAS["trips"]}, OUTPUT, "ts")
    assert plan is not None
    assert plan.columns == {"trips": ("driver_id", "Fare", "ts")}
    distinct = plan_reads(
        "SELECT DISTINCT *, fare AS fare2 FROM trips", "duckdb", {"trips": SCHEMAS["trips"]}, OUTPUT, "ts"
    )
    assert distinct is not None
    assert distinct.columns == {"trips": tuple(SCHEMAS["trips"])}  # DISTINCT over every column
    assert distinct.time_columns == {"trips": "ts"}


def test_the_planned_query_gives_the_same_rows_as_the_declared_one() -> None:
    with duckdb.connect() as db:
        db.execute(
            "CREATE TABLE trips AS SELECT i % 3 AS driver_id, i * 1.5 - 3 AS Fare, "
            "TIMESTAMP '2026-01-01' + to_hours(i) AS ts, 'x' AS note, DATE '2026-01-01' AS day FROM range(20) t(i)"
        )
        db.execute(
            "CREATE TABLE drivers AS SELECT * FROM (VALUES (0, 'a', true, TIMESTAMP '2025-01-01'), "
            "(1, 'b', false, TIMESTAMP '2025-01-01'), (2, 'c', true, TIMESTAMP '2025-01-01')) "
            "v(driver_id, city, active, since)"
        )
        plan = plan_reads(JOIN, "duckdb", SCHEMAS, OUTPUT, "ts")
        assert plan is not None
        got = db.sql(f"SELECT * FROM ({plan.query}) ORDER BY ALL").fetchall()
        want = db.sql(f"SELECT driver_id, ts, fare2 FROM ({JOIN}) ORDER BY ALL").fetchall()
        assert got == want
        assert [d[0] for d in db.sql(plan.query).description] == OUTPUT


@pytest.mark.parametrize(
    ("query", "time_columns"),
    [
        ("SELECT driver_id, ts, fare AS fare2 FROM (SELECT * FROM trips WHERE fare > 1) AS s", {"trips": "ts"}),
        (
            "SELECT d.driver_id, t.ts, t.fare AS fare2 FROM drivers AS d LEFT JOIN trips AS t USING (driver_id)",
            {"trips": "ts"},  # rows without a trip have no time: no read keeps them
        ),
        (
            "SELECT driver_id, ts, fare AS fare2 FROM trips UNION ALL SELECT driver_id, since, 0 FROM drivers",
            {"trips": "ts", "drivers": "since"},
        ),
        ("SELECT driver_id, ts + INTERVAL 1 HOUR AS ts, fare AS fare2 FROM trips", {}),
        ("SELECT driver_id, CAST(ts AS TIMESTAMP) AS ts, fare AS fare2 FROM trips", {}),
        ("SELECT driver_id, ts, sum(fare) OVER (PARTITION BY driver_id ORDER BY ts) AS fare2 FROM trips", {}),
        ("SELECT driver_id, ts, max(fare) AS fare2 FROM trips GROUP BY driver_id, ts", {}),
        ("SELECT driver_id, ts, fare AS fare2 FROM trips ORDER BY ts LIMIT 10", {}),
        ("SELECT t.driver_id, t.ts, (SELECT max(fare) FROM trips) AS fare2 FROM trips AS t", {}),
        (
            "WITH x AS (SELECT * FROM trips) SELECT a.driver_id, a.ts, b.fare AS fare2 "
            "FROM x AS a JOIN x AS b USING (driver_id)",
            {},
        ),
        ("SELECT driver_id, ts, fare AS fare2 FROM trips INTERSECT SELECT driver_id, since, 0 FROM drivers", {}),
    ],
    ids=[
        "subquery",
        "outer-join",
        "union-all",
        "expression",
        "cast",
        "window-function",
        "group-by",
        "limit",
        "read-twice",
        "cte-read-twice",
        "intersect",
    ],
)
def test_the_time_filter_moves_to_an_input_only_when_provably_the_same(
    query: str, time_columns: dict[str, str]
) -> None:
    schemas = {name: SCHEMAS[name] for name in ("trips", "drivers") if name in query}
    plan = plan_reads(query, "duckdb", schemas, OUTPUT, "ts")
    assert plan is not None
    assert plan.time_columns == time_columns


def test_a_query_that_cannot_be_resolved_is_read_whole() -> None:
    assert plan_reads("SELECT driver_id, ts, nope AS fare2 FROM trips", "duckdb", SCHEMAS, OUTPUT, "ts") is None
    assert plan_reads("SELECT driver_id, ts FROM trips", "duckdb", SCHEMAS, OUTPUT, "ts") is None  # no fare2


def test_a_spark_query_is_planned_in_its_dialect() -> None:
    query = (
        "SELECT t.driver_id, t.ts, nvl(t.fare, 0) * 2 AS fare2 FROM trips t JOIN drivers d ON t.driver_id = d.driver_id"
    )
    plan = plan_reads(query, "spark", SCHEMAS, OUTPUT, "ts")
    assert plan is not None
    assert plan.columns == {"trips": ("driver_id", "Fare", "ts"), "drivers": ("driver_id",)}
    assert plan.time_columns == {"trips": "ts"}
