"""The core service with the other services: PostgreSQL behind it (replicas, an outage), serving in front of it."""

from __future__ import annotations

import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

import provender as pv
from provender.config import load_settings
from provender.errors import BackendError
from tests.e2e.test_serving import Project, start_server
from tests.support.builders import DRIVER
from tests.support.core import StartCore
from tests.support.ingestion import driver_table, hour, write_driver_rows
from tests.support.services import PostgresServer
from tests.unit.registry.definitions import customer, driver, driver_statistics

pytestmark = pytest.mark.service


def remote(url: str, tmp_path: Path) -> pv.Client:
    return pv.Client(settings=pv.Settings(registry=url, base_dir=tmp_path))


def test_replicas_over_one_postgresql_registry_share_everything(
    start_core: StartCore, postgres_database: str, tmp_path: Path
) -> None:
    first = start_core(tmp_path / "one", registry=postgres_database)
    second = start_core(tmp_path / "two", registry=postgres_database)
    with closing(remote(first.url, tmp_path)) as one, closing(remote(second.url, tmp_path)) as two:
        one.apply([driver(), driver_statistics()])
        assert [t.name for t in two.list_feature_tables()] == ["driver_statistics"]
        two.apply([customer()])
        assert one.registry_version() == 2
        assert [r.version_after for r in one.registry_history(limit=5)] == [2, 1]


def test_a_postgresql_outage_is_503_and_the_service_recovers(
    start_core: StartCore, postgres_server: PostgresServer, postgres_database: str, tmp_path: Path
) -> None:
    core = start_core(tmp_path / "core", registry=postgres_database)
    with closing(remote(core.url, tmp_path)) as client:
        client.apply([driver()])
        postgres_server.stop()
        try:
            status, answer = core.request("GET", "/v1/ready")
            assert status == 503 and answer["status"] == "unavailable"
            status, answer = core.request("GET", "/v1/projects/default/registry")
            assert status == 503 and answer["error"]["code"] == "UNAVAILABLE"  # type: ignore[index]
            with pytest.raises(BackendError) as excinfo:
                client.list_entities()
            assert excinfo.value.retryable
        finally:
            postgres_server.start()
        deadline = time.monotonic() + 30
        while core.request("GET", "/v1/ready")[0] != 200:
            assert time.monotonic() < deadline, "the core service did not recover"
            time.sleep(0.2)
        client.apply([customer()])
        assert [e.name for e in client.list_entities()] == ["customer_id", "driver_id"]


def test_a_table_applied_through_core_is_served_within_the_refresh_interval(
    start_core: StartCore, tmp_path: Path
) -> None:
    tokens = {"tok-serving": {"subject": "serving", "grants": ["*:read"]}, "tok-team": ["default:write"]}
    auth = {"mode": "token", "tokens": tokens}
    core = start_core(tmp_path / "core", registry="sqlite:///registry.db", settings={"core": {"auth": auth}})
    end = hour(datetime.now(UTC))
    write_driver_rows(tmp_path / "src", drivers=5, hours=2, end=end)
    table = driver_table(tmp_path / "src", max_age=None)
    root = tmp_path / "serving"
    root.mkdir()
    config = {
        "registry": core.url,
        "core_token": "tok-serving",  # serving only reads the registry
        "online": {"store": "sqlite", "path": str(tmp_path / "online.db")},
        "serving": {"registry_refresh_seconds": 0.5},
    }
    (root / "provender.yaml").write_text(yaml.safe_dump(config))
    team = load_settings(root / "provender.yaml", environ={}, overrides={"core_token": "tok-team"})
    with closing(pv.Client(settings=team)) as client:
        client.apply([DRIVER])  # the served registry exists, without the table
        server = start_server(Project(root, None, ""), "--no-grpc")  # type: ignore[arg-type]
        try:
            payload = {"features": ["driver_stats:trips"], "entities": {"driver_id": [1]}}
            assert server.post(payload)[0] == 400  # unknown table
            client.apply([table])
            client.start_offline_to_online_ingestion(table, start=end - timedelta(days=1), end=end).wait(60)
            applied_at = time.monotonic()
            while (answer := server.post(payload))[0] != 200:
                assert time.monotonic() - applied_at < 5.0, answer
                time.sleep(0.05)
            served_after = time.monotonic() - applied_at
            assert answer[1]["columns"]["driver_stats__trips"][0] is not None  # type: ignore[index]
            assert served_after < 0.5 + 1.0
        finally:
            assert server.stop() == 0


def test_core_upgrades_an_older_postgresql_schema_on_start_and_refuses_a_newer_one(
    start_core: StartCore, postgres_database: str, tmp_path: Path
) -> None:
    import psycopg

    from provender.registry.postgres import SCHEMA_VERSION
    from tests.support.old_registries import DRIVER_STATS, POSTGRES_V1

    def stored_version() -> int:
        with psycopg.connect(postgres_database) as conn:
            row = conn.execute("SELECT version FROM provender_schema_version").fetchone()
        assert row is not None
        return int(row[0])

    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(POSTGRES_V1.read_text().encode())  # as the code before job lineage wrote it
    assert stored_version() == 1
    core = start_core(tmp_path / "core", registry=postgres_database)
    assert stored_version() == SCHEMA_VERSION  # upgraded when the service started
    with closing(remote(core.url, tmp_path)) as client:
        assert client.get_feature_table("driver_stats") == DRIVER_STATS
        job = client.get_job("job-0000000000000001")
        assert (job.status.value, job.record.rows) == ("SUCCEEDED", 20)
        assert [r.actor for r in client.registry_history(10, all_projects=True)] == ["admin", "alice", "bob", "alice"]
    assert core.stop() == 0

    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute("UPDATE provender_schema_version SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(RuntimeError) as excinfo:  # the process exits at start: it serves nothing
        start_core(tmp_path / "newer", registry=postgres_database)
    assert (
        f"has schema version {SCHEMA_VERSION + 1}, newer than this Provender supports ({SCHEMA_VERSION}): "
        "upgrade provender" in str(excinfo.value)
    )
    assert "exited with 1" in str(excinfo.value)
    assert stored_version() == SCHEMA_VERSION + 1  # refused without touching it
