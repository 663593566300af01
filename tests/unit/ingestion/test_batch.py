"""Offline-to-online ingestion on every engine: the rule, the window, the guard, the job.

Each test runs once per (offline engine, online store) case: an engine that ingests in process
writes to the embedded stores (SQLite, memory); a distributed engine (``capabilities``), whose
executors write themselves, to a store they can reach (Redis, a real server). Spark runs on the
test session's one local session. What only Spark does (refusing stores the executors cannot
reach, cancelling its job) is in ``tests/integration/test_spark_ingestion.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import provender as pv
from provender import backends
from provender.ingestion.batch import JobStatus
from provender.online.store import OnlineStore
from tests.support.builders import DRIVER
from tests.support.engines import engine_case, engine_marks, engine_names
from tests.support.ingestion import driver_table, hour, write_driver_rows

NOW = hour(datetime.now(UTC))
EMBEDDED_STORES = ("sqlite", "memory")
EXECUTOR_STORES = ("redis",)  # reachable_from_executors, checked by the fixture


def _cases() -> list[Any]:
    cases = []
    for name in engine_names():
        distributed = backends.load_offline_engine(name).capabilities.is_distributed
        for store in EXECUTOR_STORES if distributed else EMBEDDED_STORES:
            marks = engine_marks(name) or ([pytest.mark.service] if store == "redis" else [])
            cases.append(pytest.param((name, store), id=f"{name}-{store}", marks=marks))
    return cases


def _online(request: pytest.FixtureRequest, store: str) -> dict[str, object]:
    if store == "redis":
        return {"store": "redis", "url": request.getfixturevalue("redis_server").url}
    return {"store": store}


@pytest.fixture(params=_cases())
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[pv.Client]:
    """A project on the case's engine and store (a project of its own: Redis is shared by the run)."""
    engine_name, store = request.param
    engine = engine_case(request, engine_name)
    project = f"p{uuid.uuid4().hex[:12]}"
    online = _online(request, store)
    if engine.capabilities.is_distributed:
        store_class = cast("type[OnlineStore]", backends.load_backend(backends.Role.ONLINE_STORE, store))
        opened = store_class.from_options(online, base_dir=tmp_path)
        reachable = opened.capabilities.reachable_from_executors
        opened.close()
        assert reachable, f"{store} is not reachable from {engine_name}'s executors"
    with engine.client(tmp_path / "project", online=online, project=project) as client:
        yield client


def counts_source_rows(client: pv.Client) -> bool:
    """Whether the client's engine counts the source rows of an ingestion (in-process engines do)."""
    return not backends.load_offline_engine(client.settings.offline.engine).capabilities.is_distributed


def expected_latest(rows: pa.Table, *, start: datetime, end: datetime) -> dict[int, dict[str, object]]:
    """The point-in-time rule at ``end`` over ``[start, end)``, row by row."""
    best: dict[int, dict[str, object]] = {}
    for row in rows.to_pylist():
        if not (start <= row["ts"] < end):
            continue
        current = best.get(row["driver_id"])
        if current is None or (row["ts"], row["created"]) > (current["ts"], current["created"]):
            best[row["driver_id"]] = row
    return best


def online_values(client: pv.Client, ids: list[int]) -> dict[int, tuple[object, ...]]:
    response = client.get_online_features(["driver_stats"], [{"driver_id": i} for i in ids]).to_dict()
    values: dict[int, tuple[object, ...]] = {}
    for i, trips, rate, tag in zip(
        response["driver_id"],
        response["driver_stats__trips"],
        response["driver_stats__rate"],
        response["driver_stats__tag"],
        strict=True,
    ):
        assert isinstance(i, int)
        values[i] = (trips, rate, tag)
    return values


def test_ingestion_writes_the_latest_row_per_key_in_the_window(client: pv.Client, tmp_path: Path) -> None:
    rows = write_driver_rows(tmp_path / "src", drivers=50, hours=30, end=NOW)
    table = driver_table(tmp_path / "src")
    client.apply([DRIVER, table])
    start, end = NOW - timedelta(hours=20), NOW - timedelta(hours=5)

    job = client.start_offline_to_online_ingestion(table, start=start, end=end).wait()

    assert job.status is JobStatus.SUCCEEDED
    assert job.rows_written == 50
    assert job.error is None
    if counts_source_rows(client):
        assert job.source_rows == sum(start <= ts < end for ts in rows.column("ts").to_pylist())  # 50 x 15 h x 2
        assert job.source_rows == 1_500
    else:
        assert job.source_rows is None
    expected = expected_latest(rows, start=start, end=end)
    got = online_values(client, list(range(1, 51)))
    for driver_id, row in expected.items():
        assert got[driver_id] == (row["trips"], row["rate"], "winner")
        assert row["ts"] == NOW - timedelta(hours=6)  # end is exclusive: the 5 h row is out


def test_rerunning_or_ingesting_an_older_window_never_moves_values_back(client: pv.Client, tmp_path: Path) -> None:
    rows = write_driver_rows(tmp_path / "src", drivers=20, hours=48, end=NOW)
    table = driver_table(tmp_path / "src", max_age=None)
    client.apply([DRIVER, table])
    recent = (NOW - timedelta(hours=10), NOW)
    client.start_offline_to_online_ingestion("driver_stats", start=recent[0], end=recent[1]).wait()
    before = online_values(client, list(range(1, 21)))

    again = client.start_offline_to_online_ingestion("driver_stats", start=recent[0], end=recent[1]).wait()
    older = client.start_offline_to_online_ingestion(
        "driver_stats", start=NOW - timedelta(hours=40), end=NOW - timedelta(hours=30)
    ).wait()

    assert online_values(client, list(range(1, 21))) == before
    assert again.rows_written <= 20 and older.rows_written == 0
    expected = expected_latest(rows, start=recent[0], end=recent[1])
    assert before == {i: (r["trips"], r["rate"], r["tag"]) for i, r in expected.items()}


def test_online_values_equal_historical_values_at_the_same_time(client: pv.Client, tmp_path: Path) -> None:
    """Training/serving consistency: ingest up to T, then online at T == historical rows stamped T."""
    write_driver_rows(tmp_path / "src", drivers=30, hours=24, end=NOW)
    table = driver_table(tmp_path / "src", max_age=timedelta(days=2))
    client.apply([DRIVER, table])
    t = datetime.now(UTC)
    client.start_offline_to_online_ingestion(
        table, start=t - timedelta(days=7), end=t + timedelta(microseconds=1)
    ).wait()

    ids = list(range(1, 35))  # 31..34 have no data: null in both
    entity_rows = pd.DataFrame({"driver_id": ids, "event_timestamp": [t] * len(ids)})
    historical = client.get_historical_features(["driver_stats"], entity_rows).to_arrow().to_pydict()
    online = client.get_online_features(["driver_stats"], [{"driver_id": i} for i in ids]).to_dict()

    for column in ("driver_stats__trips", "driver_stats__rate", "driver_stats__tag"):
        assert online[column] == historical[column], column
    statuses = client.get_online_features(["driver_stats"], [{"driver_id": i} for i in ids]).statuses()
    assert statuses["driver_stats__trips"] == ["PRESENT"] * 30 + ["NOT_FOUND"] * 4


def test_batches_stream_and_counts_add_up(client: pv.Client, tmp_path: Path) -> None:
    write_driver_rows(tmp_path / "src", drivers=2_000, hours=3, end=NOW)
    table = driver_table(tmp_path / "src")
    client.apply([DRIVER, table])
    job = client.start_offline_to_online_ingestion(table, start=NOW - timedelta(days=1), end=NOW, batch_rows=128).wait()
    assert job.rows_read == 2_000
    assert job.rows_written == 2_000
    # every row is in the window; batches of 128 keys add up
    assert job.source_rows == (2_000 * 3 * 2 if counts_source_rows(client) else None)
    assert online_values(client, [1, 2_000])[2_000][2] == "winner"


def test_a_failing_job_reports_its_error_on_wait(client: pv.Client, tmp_path: Path) -> None:
    write_driver_rows(tmp_path / "src", drivers=5, hours=3, end=NOW)
    table = driver_table(tmp_path / "src")
    client.apply([DRIVER, table])
    bad = pa.table(
        {
            "driver_id": pa.array([1], pa.int64()),
            "trips": pa.array(["x"]),
            "rate": [1.0],
            "tag": ["t"],
            "ts": pa.array([NOW], pa.timestamp("us", tz="UTC")),
            "created": pa.array([NOW], pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(bad, tmp_path / "src" / "part-1.parquet")

    job = client.start_offline_to_online_ingestion(table, start=NOW - timedelta(days=1), end=NOW)
    with pytest.raises(pv.DataError, match="trips"):
        job.wait(timeout_seconds=30)
    assert job.status is JobStatus.FAILED
    assert isinstance(job.error, pv.DataError)


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [(NOW, NOW, "before end"), (NOW, NOW - timedelta(hours=1), "before end")],
)
def test_bad_windows_are_refused(
    client: pv.Client, tmp_path: Path, start: datetime, end: datetime, message: str
) -> None:
    write_driver_rows(tmp_path / "src", drivers=2, hours=2, end=NOW)
    client.apply([DRIVER, driver_table(tmp_path / "src")])
    with pytest.raises(pv.DataError, match=message):
        client.start_offline_to_online_ingestion("driver_stats", start=start, end=end)


def test_unknown_table_is_refused_with_a_hint(client: pv.Client, tmp_path: Path) -> None:
    write_driver_rows(tmp_path / "src", drivers=2, hours=2, end=NOW)
    client.apply([DRIVER, driver_table(tmp_path / "src")])
    with pytest.raises(pv.FeatureTableNotFoundError, match="driver_stats"):
        client.start_offline_to_online_ingestion("driver_stat", start=NOW - timedelta(hours=3), end=NOW)


def test_naive_window_bounds_are_utc(client: pv.Client, tmp_path: Path) -> None:
    write_driver_rows(tmp_path / "src", drivers=3, hours=5, end=NOW)
    client.apply([DRIVER, driver_table(tmp_path / "src")])
    naive_end = (NOW - timedelta(hours=2)).replace(tzinfo=None) + timedelta(minutes=1)
    client.start_offline_to_online_ingestion("driver_stats", start=naive_end - timedelta(hours=1), end=naive_end).wait()
    statuses = client.get_online_features(["driver_stats:trips"], [{"driver_id": 1}]).statuses()
    assert statuses["driver_stats__trips"] == ["PRESENT"]
