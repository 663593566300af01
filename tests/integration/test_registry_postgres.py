"""The PostgreSQL registry beyond the store contract: outages, schema versions, URLs, crashes."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from provender import BackendError, ConfigError
from provender.errors import RegistrySchemaError
from provender.registry.diff import plan_apply
from provender.registry.postgres import SCHEMA_VERSION, PostgresRegistry, redacted, split_url
from provender.registry.store import RegistryChange, RegistrySnapshot
from tests.support.old_registries import POSTGRES_V1, check_upgraded
from tests.support.services import PostgresServer, Services
from tests.unit.registry.definitions import customer, driver, driver_statistics

pytestmark = pytest.mark.service


@pytest.fixture
def open_registry(postgres_database: str) -> Iterator[Callable[..., PostgresRegistry]]:
    opened: list[PostgresRegistry] = []

    def open_one(query: str = "") -> PostgresRegistry:
        opened.append(PostgresRegistry(postgres_database + query))
        return opened[-1]

    yield open_one
    for registry in opened:
        registry.close()


@pytest.fixture(scope="module")
def outage_server(services: Services) -> PostgresServer:
    """A PostgreSQL server of this module's own, so stopping it disturbs no other test."""
    return services.start_postgres()


def test_an_outage_raises_a_retryable_backend_error_and_recovers(outage_server: PostgresServer) -> None:
    name = "outage"
    url = outage_server.create_database(name).replace("postgres@", "postgres:s3cret@") + "?pool_timeout=1"
    registry = PostgresRegistry(url)
    try:
        registry.update("default", lambda s: plan_apply(s, [driver()]).to_change())
        outage_server.stop()
        try:
            for call in (
                lambda: registry.read("default"),
                lambda: registry.update("default", lambda s: plan_apply(s, [customer()]).to_change()),
                lambda: registry.list_projects(),
                lambda: registry.history(),
            ):
                with pytest.raises(BackendError) as excinfo:
                    call()
                assert excinfo.value.retryable
                assert "s3cret" not in str(excinfo.value)
                assert f"127.0.0.1:{outage_server.port}/{name}" in str(excinfo.value)
        finally:
            outage_server.start()
        deadline = time.monotonic() + 30
        while True:  # the pool reconnects in the background, with a backoff
            try:
                snapshot = registry.read("default")
                break
            except BackendError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert (snapshot.version, set(snapshot.entities)) == (1, {"driver_id"})  # the failed update wrote nothing
        assert registry.update("default", lambda s: plan_apply(s, [customer()]).to_change()).version == 2
    finally:
        registry.close()
        outage_server.start()
        outage_server.drop_database(name)


def test_opening_an_unreachable_server_fails_fast_without_the_password() -> None:
    started = time.monotonic()
    with pytest.raises(BackendError) as excinfo:
        PostgresRegistry("postgresql://me:s3cret@127.0.0.1:1/db?pool_timeout=1")
    assert time.monotonic() - started < 10
    assert excinfo.value.retryable
    assert "s3cret" not in str(excinfo.value)


def test_a_newer_schema_is_refused_naming_both_versions(open_registry: Callable[..., PostgresRegistry]) -> None:
    registry = open_registry()
    assert registry.schema_version() == SCHEMA_VERSION
    with registry._connection() as conn:
        conn.execute("UPDATE provender_schema_version SET version = %s", (SCHEMA_VERSION + 3,))
    with pytest.raises(RegistrySchemaError) as excinfo:
        open_registry()
    assert (excinfo.value.found, excinfo.value.supported) == (SCHEMA_VERSION + 3, SCHEMA_VERSION)
    assert f"schema version {SCHEMA_VERSION + 3}" in str(excinfo.value)
    assert f"({SCHEMA_VERSION})" in str(excinfo.value)


def test_a_schema_1_registry_is_upgraded_on_open_and_keeps_every_row(postgres_database: str) -> None:
    import psycopg

    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(POSTGRES_V1.read_text().encode())  # as the code before job lineage wrote it (pg_dump)
        assert conn.execute("SELECT version FROM provender_schema_version").fetchall() == [(1,)]
    registry = PostgresRegistry(postgres_database)
    try:
        assert registry.schema_version() == SCHEMA_VERSION > 1
        check_upgraded(registry)
    finally:
        registry.close()
    reopened = PostgresRegistry(postgres_database)  # the upgraded database opens as it is, its new rows kept
    try:
        assert reopened.schema_version() == SCHEMA_VERSION
        assert reopened.read("default").version == 3
        assert len(reopened.list_jobs("default", include_finished=True)) == 3
    finally:
        reopened.close()


def test_opening_a_new_database_from_many_threads_migrates_once(postgres_database: str) -> None:
    opened: list[PostgresRegistry] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def open_one() -> None:
        try:
            barrier.wait(10)
            opened.append(PostgresRegistry(postgres_database))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    try:
        assert errors == []
        assert [registry.schema_version() for registry in opened] == [SCHEMA_VERSION] * 6
    finally:
        for registry in opened:
            registry.close()


def test_tables_are_prefixed_and_other_tables_are_left_alone(
    postgres_database: str, open_registry: Callable[..., PostgresRegistry]
) -> None:
    registry = open_registry()
    with registry._connection() as conn:
        conn.execute("CREATE TABLE projects (something int)")
        tables = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert tables == {
        "projects",
        "provender_projects",
        "provender_definitions",
        "provender_changes",
        "provender_jobs",
        "provender_schema_version",
    }
    assert open_registry().read("default").version == 0


def hold_the_lock_and_die(url: str, locked: Any) -> None:
    """Run in a child process: start an apply, signal while holding the project lock, then hang."""
    registry = PostgresRegistry(url)

    def decide(snapshot: RegistrySnapshot) -> RegistryChange:
        change = plan_apply(snapshot, [driver(description="half-done"), driver_statistics()]).to_change()
        locked.set()
        time.sleep(60)  # killed here, mid-apply
        return change

    registry.update("default", decide)


@pytest.mark.timeout(60)
def test_a_writer_killed_mid_apply_leaves_the_old_version(
    postgres_database: str, open_registry: Callable[..., PostgresRegistry]
) -> None:
    registry = open_registry()
    registry.update("default", lambda s: plan_apply(s, [driver()]).to_change())
    context = multiprocessing.get_context("spawn")
    locked = context.Event()
    child = context.Process(target=hold_the_lock_and_die, args=(postgres_database, locked), daemon=True)
    child.start()
    try:
        assert locked.wait(30), "the child never reached decide()"
        child.kill()
    finally:
        child.join(10)
    # the dead writer's transaction is rolled back and its lock released: the next apply goes through
    snapshot = registry.update("default", lambda s: plan_apply(s, [customer()]).to_change())
    assert snapshot.version == 2
    assert dict(snapshot.entities) == {"driver_id": driver(), "customer_id": customer()}
    assert dict(snapshot.feature_tables) == {}


def test_split_url_takes_out_the_pool_options() -> None:
    conninfo, pool = split_url("postgresql://u:p@db:5433/reg?sslmode=disable&pool_max_size=3&pool_timeout=2.5")
    assert conninfo == "postgresql://u:p@db:5433/reg?sslmode=disable"
    assert pool == {"pool_min_size": 1, "pool_max_size": 3, "pool_timeout": 2.5}
    assert redacted("postgresql://u:p@db:5433/reg?sslmode=disable") == "postgresql://db:5433/reg"
    assert split_url("postgres://db/reg")[0] == "postgres://db/reg"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql:///reg", "expected 'postgresql://"),
        ("postgresql://db/reg?pool_timeout=soon", "pool_timeout must be a number"),
        ("postgresql://db/reg?pool_min_size=4&pool_max_size=2", "pool_min_size <= pool_max_size"),
        ("postgresql://db/reg?pool_timeout=0", "pool_timeout must be > 0"),
    ],
)
def test_split_url_refuses_bad_urls(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as excinfo:
        split_url(url)
    assert excinfo.value.key == "registry"


def test_from_url_via_the_backend_registry(postgres_database: str, tmp_path: Path) -> None:
    from provender import backends

    cls = backends.load_registry(postgres_database.replace("postgresql://", "postgres://"))
    assert cls is PostgresRegistry
    registry = cls.from_url(postgres_database, base_dir=tmp_path)
    try:
        assert registry.read("default").version == 0
    finally:
        registry.close()
