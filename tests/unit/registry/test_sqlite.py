"""The embedded SQLite registry, through the Client: persistence, versions, atomicity, projects."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from provender import Client, ConfigError, Feature, RegistryConflictError, Settings, ValueType
from provender.registry.diff import Action
from provender.registry.sqlite import SQLiteRegistry, path_from_url
from provender.registry.store import RegistryChange, RegistrySnapshot
from tests.support.registries import is_sqlite
from tests.unit.registry.definitions import customer, customer_profile, driver, driver_statistics

MakeClient = Callable[..., Client]


def project_info(client: Client) -> tuple[int, datetime | None]:
    """The (version, updated_at) of the client's project, as list_projects reports it."""
    for info in client.describe_projects():
        if info.name == client.project:
            return info.version, info.updated_at
    return 0, None


def registry_state(client: Client) -> tuple[object, ...]:
    """Everything a client can see of its project."""
    return (
        client.registry_version(),
        client.list_entities(),
        client.list_feature_tables(),
        client.list_projects(),
    )


def test_empty_registry(client: Client) -> None:
    assert client.project == "default"
    assert client.list_entities() == []
    assert client.list_feature_tables() == []
    assert client.registry_version() == 0
    assert client.list_projects() == ["default"]
    assert project_info(client) == (0, None)


def test_apply_creates(client: Client, registry_url: str) -> None:
    plan = client.apply([driver(), driver_statistics()])
    assert [(item.kind, item.name, item.action) for item in plan.items] == [
        ("entity", "driver_id", Action.ADDED),
        ("feature table", "driver_statistics", Action.ADDED),
    ]
    assert client.get_entity("driver_id") == driver()
    assert client.get_feature_table("driver_statistics") == driver_statistics()
    assert client.list_entities() == [driver()]
    assert client.list_feature_tables() == [driver_statistics()]
    assert client.registry_version() == 1
    version, updated_at = project_info(client)
    assert version == 1
    assert updated_at is not None
    assert updated_at.tzinfo is not None
    assert abs(datetime.now(UTC) - updated_at) < timedelta(minutes=1)


def test_apply_accepts_a_single_definition(client: Client) -> None:
    client.apply(driver())
    assert client.list_entities() == [driver()]


def test_definitions_persist_across_clients(make_client: MakeClient, registry_url: str, tmp_path: Path) -> None:
    writer = make_client()
    writer.apply([driver(), customer(), driver_statistics(), customer_profile()])
    writer.close()
    assert (tmp_path / "registry.db").is_file() or not is_sqlite()
    reader = make_client()
    assert reader.list_entities() == [customer(), driver()]  # sorted by name
    assert reader.list_feature_tables() == [customer_profile(), driver_statistics()]
    assert reader.registry_version() == 1


def test_reapply_is_unchanged_and_keeps_the_version(client: Client) -> None:
    client.apply([driver(), driver_statistics()])
    before = project_info(client)
    plan = client.apply([driver(), driver_statistics()])
    assert [item.action for item in plan.items] == [Action.UNCHANGED, Action.UNCHANGED]
    assert plan.to_change().is_empty
    assert project_info(client) == before
    assert client.registry_version() == 1


def test_reapply_from_another_client_is_unchanged(make_client: MakeClient) -> None:
    make_client().apply([driver(), driver_statistics()])
    plan = make_client().apply([driver_statistics(), driver()])
    assert {item.action for item in plan.items} == {Action.UNCHANGED}
    assert make_client().registry_version() == 1


def test_changed_description_bumps_version_and_updated_at(client: Client) -> None:
    client.apply([driver(), driver_statistics()])
    version, updated_at = project_info(client)
    time.sleep(0.01)
    plan = client.apply([driver(description="The driver's id")])
    assert [(item.action, item.detail) for item in plan.items] == [(Action.CHANGED, "description")]
    new_version, new_updated_at = project_info(client)
    assert new_version == version + 1 == 2
    assert updated_at is not None
    assert new_updated_at is not None
    assert new_updated_at > updated_at
    assert client.get_entity("driver_id").description == "The driver's id"


def test_changed_feature_description_and_max_age_bump_the_version(client: Client) -> None:
    client.apply([driver(), driver_statistics()])
    changed = driver_statistics(
        features=[
            Feature("avg_daily_trips", ValueType.INT32, "trips per day"),
            Feature("conv_rate", ValueType.FLOAT),
            Feature("acc_rate", ValueType.FLOAT),
            Feature("new_feature", ValueType.DOUBLE),
        ],
        max_age=timedelta(hours=2),
    )
    plan = client.apply([changed])
    assert plan.items[0].action is Action.CHANGED
    assert plan.items[0].detail == "features, max_age"
    assert client.registry_version() == 2
    assert client.get_feature_table("driver_statistics") == changed


def test_every_effective_change_bumps_the_version_once(client: Client) -> None:
    client.apply([driver()])
    client.apply([driver(), driver_statistics()])  # entity unchanged, table added
    client.apply([driver(labels={"v": "2"}), driver_statistics(labels={"v": "2"})])  # both changed: one version
    client.apply([driver(labels={"v": "2"}), driver_statistics(labels={"v": "2"})])  # unchanged
    client.delete_feature_table("driver_statistics")
    client.delete_entity("driver_id")
    assert client.registry_version() == 5
    assert client.list_entities() == []


def test_apply_is_atomic(client: Client) -> None:
    client.apply([driver(), driver_statistics()])
    before = registry_state(client)
    before_info = project_info(client)
    new_entity = customer()
    broken_table = driver_statistics(name="trip_stats", entities=["driver_id", "vehicle_id"])
    with pytest.raises(RegistryConflictError) as excinfo:
        client.apply([new_entity, broken_table])
    message = str(excinfo.value)
    assert "trip_stats" in message
    assert "vehicle_id" in message
    assert "nothing was changed" in message
    assert excinfo.value.project == "default"
    assert excinfo.value.conflicts == (
        "feature table 'trip_stats': uses unregistered entities: vehicle_id (apply them too)",
    )
    assert registry_state(client) == before
    assert project_info(client) == before_info
    with pytest.raises(LookupError):
        client.get_entity("customer_id")


def test_refused_first_apply_leaves_the_project_unwritten(client: Client) -> None:
    with pytest.raises(RegistryConflictError, match="missing_id"):
        client.apply([driver(), driver_statistics(entities=["missing_id"])])
    assert registry_state(client) == (0, [], [], ["default"])
    assert project_info(client) == (0, None)


def test_plan_changes_nothing(client: Client) -> None:
    plan = client.plan([driver(), driver_statistics()])
    assert plan.count(Action.ADDED) == 2
    assert registry_state(client) == (0, [], [], ["default"])


# -- projects -----------------------------------------------------------------------------------


def test_projects_are_namespaces(make_client: MakeClient) -> None:
    default = make_client()
    default.apply([driver(), driver_statistics()])
    fraud = make_client(project="fraud")
    assert fraud.project == "fraud"
    assert fraud.list_entities() == []
    assert fraud.list_feature_tables() == []
    assert fraud.registry_version() == 0
    with pytest.raises(LookupError):
        fraud.get_feature_table("driver_statistics")
    # the same names may hold different definitions in another project
    fraud.apply([driver(value_type=ValueType.STRING), driver_statistics(max_age=None)])
    assert fraud.get_entity("driver_id").value_type is ValueType.STRING
    assert default.get_entity("driver_id").value_type is ValueType.INT64
    assert default.get_feature_table("driver_statistics").max_age == timedelta(days=1)
    assert fraud.registry_version() == 1
    assert default.registry_version() == 1
    fraud.delete_feature_table("driver_statistics")
    assert default.list_feature_tables() == [driver_statistics()]


def test_list_projects(make_client: MakeClient) -> None:
    fraud = make_client(project="fraud")
    assert fraud.list_projects() == ["default"]  # default is listed even though empty
    fraud.apply([driver()])
    assert make_client().list_projects() == ["default", "fraud"]
    infos = {info.name: info for info in fraud.describe_projects()}
    assert infos["default"].version == 0
    assert infos["default"].updated_at is None
    assert infos["fraud"].version == 1
    assert infos["fraud"].updated_at is not None
    make_client(project="ads").apply([customer()])
    assert make_client().list_projects() == ["ads", "default", "fraud"]


def test_refused_apply_does_not_create_a_project(make_client: MakeClient) -> None:
    with pytest.raises(RegistryConflictError):
        make_client(project="fraud").apply([driver_statistics()])
    assert make_client().list_projects() == ["default"]


# -- the SQLite backend itself ------------------------------------------------------------------


def test_relative_registry_path_is_resolved_against_base_dir(tmp_path: Path) -> None:
    settings = Settings(registry="sqlite:///state/registry.db", base_dir=tmp_path / "project")
    with Client(settings=settings) as client:
        client.apply([driver()])
    assert (tmp_path / "project" / "state" / "registry.db").is_file()


def test_path_from_url(tmp_path: Path) -> None:
    assert path_from_url("sqlite:///a/b.db", base_dir=tmp_path) == tmp_path / "a" / "b.db"
    assert path_from_url("sqlite:////abs/b.db", base_dir=tmp_path) == Path("/abs/b.db")


@pytest.mark.parametrize("url", ["sqlite:///", "sqlite://x.db", "postgresql://host/db"])
def test_path_from_url_refuses_other_urls(url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        path_from_url(url, base_dir=tmp_path)
    assert excinfo.value.key == "registry"


def test_update_that_raises_writes_nothing(tmp_path: Path) -> None:
    registry = SQLiteRegistry(tmp_path / "registry.db")
    try:
        registry.update("default", lambda snapshot: RegistryChange(put=(driver(),), description="add"))

        def fail(snapshot: RegistrySnapshot) -> RegistryChange:
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            registry.update("default", fail)
        snapshot = registry.read("default")
        assert snapshot.version == 1
        assert dict(snapshot.entities) == {"driver_id": driver()}
        # the connection is usable again after the rollback
        registry.update("default", lambda snapshot: RegistryChange(delete_entities=("driver_id",), description="d"))
        assert registry.read("default").version == 2
    finally:
        registry.close()


def test_empty_change_does_not_bump_the_version(tmp_path: Path) -> None:
    registry = SQLiteRegistry(tmp_path / "registry.db")
    try:
        registry.update("default", lambda snapshot: RegistryChange(put=(driver(),), description="add"))
        returned = registry.update("default", lambda snapshot: RegistryChange())
        assert returned.version == 1
        assert registry.read("default").version == 1
    finally:
        registry.close()


def test_every_change_is_recorded_with_its_version(tmp_path: Path) -> None:
    with Client(core_url=f"sqlite:///{tmp_path}/registry.db") as client:
        client.apply([driver(), driver_statistics()])
        client.apply([driver(), driver_statistics()])
        client.delete_feature_table("driver_statistics")
    with sqlite3.connect(tmp_path / "registry.db") as conn:
        rows = conn.execute(
            "SELECT version, description FROM changes WHERE project = 'default' ORDER BY version"
        ).fetchall()
    conn.close()
    assert rows == [
        (1, "apply entity driver_id, feature table driver_statistics"),
        (2, "delete feature table driver_statistics"),
    ]


def test_read_is_one_consistent_snapshot(tmp_path: Path) -> None:
    """A commit landing between the reads of a snapshot must not tear it (version vs contents)."""
    reader = SQLiteRegistry(tmp_path / "registry.db")
    writer = SQLiteRegistry(tmp_path / "registry.db")
    try:
        writer.update("default", lambda snapshot: RegistryChange(put=(driver(),), description="1"))
        interleaved: list[str] = []

        def commit_in_between(statement: str) -> None:
            if "FROM definitions" in statement and not interleaved:
                interleaved.append(statement)
                writer.update("default", lambda snapshot: RegistryChange(put=(customer(),), description="2"))

        reader._conn.set_trace_callback(commit_in_between)
        snapshot = reader.read("default")
        reader._conn.set_trace_callback(None)
        assert interleaved, "the reader's definitions query was not traced"
        assert (snapshot.version, sorted(snapshot.entities)) == (1, ["driver_id"])
        latest = reader.read("default")
        assert (latest.version, sorted(latest.entities)) == (2, ["customer_id", "driver_id"])
    finally:
        reader.close()
        writer.close()


def test_project_given_with_settings_is_validated(registry_url: str) -> None:
    settings = Settings(registry=registry_url)
    with pytest.raises(ConfigError) as excinfo:
        Client(settings=settings, project="not a project")
    assert excinfo.value.key == "project"
    with Client(settings=settings, project="fraud") as client:
        assert client.project == "fraud"
        assert client.settings.registry == registry_url


def test_opening_waits_for_another_writer_of_a_new_file(tmp_path: Path) -> None:
    """Switching a new file to WAL while another process writes it must wait, not fail."""
    path = tmp_path / "registry.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE unrelated (a)")  # a rollback-journal file, as a racing process sees it
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO unrelated VALUES (1)")
    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    release.start()
    started = time.monotonic()
    try:
        registry = SQLiteRegistry(path)
    finally:
        release.join()
        other.close()
    try:
        assert time.monotonic() - started >= 0.25
        assert registry._conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        registry.update("default", lambda snapshot: RegistryChange(put=(driver(),), description="add"))
        assert registry.read("default").version == 1
    finally:
        registry.close()
