"""Offline-to-online ingestion into a real Redis: values, a store outage mid-job, and a re-run."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import provender as pv
from provender.ingestion.batch import JobStatus
from tests.support.builders import DRIVER, make_client
from tests.support.ingestion import driver_table, hour, write_driver_rows
from tests.support.services import RedisServer

pytestmark = pytest.mark.service
NOW = hour(datetime.now(UTC))


def redis_online(server: RedisServer) -> dict[str, object]:
    return {
        "store": "redis",
        "url": server.url,
        "retries": 0,
        "socket_timeout_seconds": 2.0,
        "connect_timeout_seconds": 1.0,
    }


def test_ingestion_into_redis_matches_the_rule(redis_server: RedisServer, tmp_path: Path) -> None:
    rows = write_driver_rows(tmp_path / "src", drivers=300, hours=10, end=NOW)
    table = driver_table(tmp_path / "src")
    with make_client(tmp_path / "p", online=redis_online(redis_server)) as client:
        client.apply([DRIVER, table])
        job = client.start_offline_to_online_ingestion(table, start=NOW - timedelta(days=1), end=NOW).wait()
        assert job.rows_written == 300
        latest = {
            r["driver_id"]: r for r in rows.to_pylist() if r["ts"] == NOW - timedelta(hours=1) and r["tag"] == "winner"
        }
        got = client.get_online_features(["driver_stats"], [{"driver_id": i} for i in range(1, 301)]).to_dict()
        assert got["driver_stats__trips"] == [latest[i]["trips"] for i in range(1, 301)]
        assert got["driver_stats__tag"] == ["winner"] * 300


def test_store_outage_fails_the_job_cleanly_and_a_rerun_completes_it(redis_server: RedisServer, tmp_path: Path) -> None:
    drivers = 60_000
    rows = write_driver_rows(tmp_path / "src", drivers=drivers, hours=2, end=NOW)
    table = driver_table(tmp_path / "src")
    winners = {
        r["driver_id"]: r for r in rows.to_pylist() if r["ts"] == NOW - timedelta(hours=1) and r["tag"] == "winner"
    }
    try:
        with make_client(tmp_path / "p", online=redis_online(redis_server)) as client:
            client.apply([DRIVER, table])
            job = client.start_offline_to_online_ingestion(
                table, start=NOW - timedelta(days=1), end=NOW, batch_rows=500
            )

            def stop_after_progress() -> None:
                _wait_for_progress(job)
                redis_server.stop()

            stopper = threading.Thread(target=stop_after_progress)
            stopper.start()
            with pytest.raises(pv.BackendError) as failure:
                job.wait(timeout_seconds=120)
            stopper.join()
            assert job.status is JobStatus.FAILED
            assert failure.value.retryable
            assert 0 < job.rows_written < drivers, "the outage should hit the job part-way"
            assert "redis" in str(failure.value).lower() or "connect" in str(failure.value).lower()

        redis_server.start()  # comes back empty (no persistence): the re-run must write everything
        with make_client(tmp_path / "p", online=redis_online(redis_server)) as client:
            rerun = client.start_offline_to_online_ingestion(table, start=NOW - timedelta(days=1), end=NOW).wait()
            assert rerun.status is JobStatus.SUCCEEDED
            ids = list(range(1, drivers + 1))
            response = client.get_online_features(["driver_stats"], [{"driver_id": i} for i in ids])
            got = response.to_dict()
            assert set(response.statuses()["driver_stats__trips"]) == {"PRESENT"}
            assert got["driver_stats__trips"] == [winners[i]["trips"] for i in ids]
            assert got["driver_stats__rate"] == [winners[i]["rate"] for i in ids]
    finally:
        redis_server.start()


def _wait_for_progress(job: object) -> None:
    deadline = time.monotonic() + 60
    while getattr(job, "rows_written", 0) < 2_000 and time.monotonic() < deadline:
        time.sleep(0.005)
