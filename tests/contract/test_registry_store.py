"""The registry store contract, run against every registry backend.

Each backend needs a provisioner below that gives it a fresh, empty registry URL (a file, a new
PostgreSQL database, a core service). Adding a backend is one entry in ``PROVISIONERS``; a test
checks that every ``provender.registries`` entry point has one.
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from provender import Client, Entity, Feature, FeatureTable, OnDemandFeatures, Settings, ValueType, backends
from provender.errors import (
    JobNotFoundError,
    JobStateError,
    ProjectArchivedError,
    ProjectNotFoundError,
    RegistryConflictError,
    RegistryVersionConflictError,
)
from provender.registry.diff import Action, plan_apply, plan_delete_feature_table, plan_delete_on_demand_features
from provender.registry.jobs import JobKind, JobRecord, JobStatus, is_finished, new_job_id
from provender.registry.store import (
    ChangedItem,
    ItemAction,
    RegistryChange,
    RegistrySnapshot,
    RegistryStore,
)
from tests.support.core import StartCore
from tests.unit.registry.definitions import customer, customer_profile, driver, driver_statistics

Provisioner = Callable[[pytest.FixtureRequest, Path], str]


def _postgres_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    url: str = request.getfixturevalue("postgres_database")
    return url


def _core_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A real ``provender core`` process over a fresh SQLite registry of its own."""
    start_core: StartCore = request.getfixturevalue("start_core")
    return start_core(tmp_path / "core", registry=f"sqlite:///{tmp_path}/core/registry.db").url


# How to give each registry backend a fresh, empty registry; the URL's scheme selects the backend.
PROVISIONERS: dict[str, Provisioner] = {
    "sqlite": lambda request, tmp_path: f"sqlite:///{tmp_path}/registry.db",
    "postgresql": _postgres_url,
    "http": _core_url,
}
NEEDS_SERVER = {"postgresql", "http"}


def _cases() -> list[Any]:
    return [
        pytest.param(name, id=name, marks=[pytest.mark.service] if name in NEEDS_SERVER else [])
        for name in PROVISIONERS
    ]


@pytest.fixture(params=_cases())
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty registry of the backend under test."""
    return PROVISIONERS[request.param](request, tmp_path)


@pytest.fixture
def open_store(registry_url: str, tmp_path: Path) -> Iterator[Callable[[], RegistryStore]]:
    """Open (more) stores on the test's registry; all are closed at teardown."""
    opened: list[RegistryStore] = []

    def open_one() -> RegistryStore:
        store = backends.load_registry(registry_url).from_url(registry_url, base_dir=tmp_path)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Callable[[], RegistryStore]) -> RegistryStore:
    """A store on the test's registry."""
    return open_store()


def test_every_registry_backend_is_provisioned() -> None:
    assert set(backends.available(backends.Role.REGISTRY)) <= set(PROVISIONERS)


# -- helpers


def apply(
    store: RegistryStore, project: str, *definitions: Entity | FeatureTable | OnDemandFeatures, **kwargs: Any
) -> RegistrySnapshot:
    """Apply ``definitions`` to ``project`` as the client does (refused plans raise)."""
    return store.update(project, lambda snapshot: plan_apply(snapshot, definitions).to_change(), **kwargs)


def state(store: RegistryStore, project: str = "default") -> tuple[object, ...]:
    """Everything the store says about a project, to compare before and after a refused change."""
    snapshot = store.read(project)
    return (
        snapshot.version,
        snapshot.updated_at,
        dict(snapshot.entities),
        dict(snapshot.feature_tables),
        store.list_projects(include_archived=True),
        store.history(None),
    )


def fail(snapshot: RegistrySnapshot) -> RegistryChange:
    raise RuntimeError("boom")


# -- definitions, versions, atomicity


def test_empty_registry(store: RegistryStore) -> None:
    snapshot = store.read("default")
    assert (snapshot.project, snapshot.version, snapshot.updated_at, snapshot.archived_at) == ("default", 0, None, None)
    assert dict(snapshot.entities) == {}
    assert dict(snapshot.feature_tables) == {}
    assert [p.name for p in store.list_projects()] == ["default"]
    assert store.history() == []


def test_apply_is_atomic_and_bumps_the_version_once(store: RegistryStore) -> None:
    before = datetime.now(UTC)
    snapshot = apply(store, "default", driver(), driver_statistics())
    assert snapshot.version == 1
    assert dict(snapshot.entities) == {"driver_id": driver()}
    assert dict(snapshot.feature_tables) == {"driver_statistics": driver_statistics()}
    assert snapshot.updated_at is not None
    assert before - timedelta(seconds=5) <= snapshot.updated_at <= datetime.now(UTC) + timedelta(seconds=5)
    assert store.read("default") == snapshot


def test_definitions_persist_across_stores(open_store: Callable[[], RegistryStore]) -> None:
    writer = open_store()
    apply(writer, "default", driver(), customer(), driver_statistics(), customer_profile())
    writer.close()
    reader = open_store()
    snapshot = reader.read("default")
    assert snapshot.version == 1
    assert dict(snapshot.entities) == {"driver_id": driver(), "customer_id": customer()}
    assert dict(snapshot.feature_tables) == {
        "driver_statistics": driver_statistics(),
        "customer_profile": customer_profile(),
    }


def test_every_read_sees_the_latest_change_of_another_store(open_store: Callable[[], RegistryStore]) -> None:
    reader, writer = open_store(), open_store()
    assert reader.read("fraud").version == 0
    for n in range(3):
        apply(writer, "fraud", customer(description=f"v{n}"))
        assert reader.read("fraud") == writer.read("fraud")
        assert reader.read("fraud").entities["customer_id"].description == f"v{n}"
    writer.archive_project("fraud")
    assert reader.read("fraud").archived_at is not None
    with pytest.raises(ProjectArchivedError):
        apply(reader, "fraud", customer(description="late"))


def test_refused_change_leaves_everything_unchanged(store: RegistryStore) -> None:
    apply(store, "default", driver(), driver_statistics())
    before = state(store)
    with pytest.raises(RegistryConflictError):
        # the feature type change is refused, so the new entity must not be written either
        changed = driver_statistics(features=[*driver_statistics().features[:2]])
        apply(store, "default", customer(), replace(changed, entities=("customer_id",)))
    with pytest.raises(RuntimeError, match="boom"):
        store.update("default", fail)
    assert state(store) == before
    apply(store, "default", customer())  # the store is usable after the rollbacks
    assert store.read("default").version == 2


def test_refused_first_change_creates_no_project(store: RegistryStore) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        store.update("fraud", fail)
    assert store.update("fraud", lambda snapshot: RegistryChange()).version == 0  # an empty change neither
    assert [p.name for p in store.list_projects(include_archived=True)] == ["default"]
    assert store.read("fraud").version == 0
    assert store.history() == []


def test_empty_change_writes_nothing(store: RegistryStore) -> None:
    apply(store, "default", driver())
    returned = store.update("default", lambda snapshot: RegistryChange())
    assert returned.version == 1
    assert store.read("default").version == 1
    assert len(store.history()) == 1


def test_every_change_bumps_the_version_by_one(store: RegistryStore) -> None:
    versions = [apply(store, "default", driver()).version]
    versions.append(apply(store, "default", driver(description="new")).version)
    versions.append(apply(store, "default", driver(description="new")).version)  # unchanged
    versions.append(apply(store, "default", driver_statistics()).version)
    versions.append(
        store.update("default", lambda s: RegistryChange(delete_feature_tables=("driver_statistics",))).version
    )
    assert versions == [1, 2, 2, 3, 4]
    assert dict(store.read("default").feature_tables) == {}


def test_projects_are_namespaces(store: RegistryStore) -> None:
    apply(store, "default", driver())
    apply(store, "fraud", customer(), customer_profile())
    apply(store, "fraud", customer(description="c"))
    assert dict(store.read("default").entities) == {"driver_id": driver()}
    assert set(store.read("fraud").entities) == {"customer_id"}
    infos = store.list_projects()
    assert [(p.name, p.version) for p in infos] == [("default", 1), ("fraud", 2)]
    assert all(p.updated_at is not None and p.archived_at is None for p in infos)


# -- expected version


def test_expected_version_must_be_current(open_store: Callable[[], RegistryStore]) -> None:
    mine, theirs = open_store(), open_store()
    planned = apply(mine, "default", driver(), expected_version=0).version
    assert planned == 1
    apply(theirs, "default", customer(), expected_version=1)
    before = state(mine)
    called: list[int] = []

    def decide(snapshot: RegistrySnapshot) -> RegistryChange:
        called.append(snapshot.version)
        return RegistryChange(put=(driver(description="mine"),))

    with pytest.raises(RegistryVersionConflictError) as excinfo:
        mine.update("default", decide, expected_version=planned)
    error = excinfo.value
    assert (error.project, error.expected_version, error.actual_version) == ("default", 1, 2)
    assert "version 1" in str(error) and "version 2" in str(error)
    assert isinstance(error, RegistryConflictError)
    assert called == []
    assert state(mine) == before
    assert mine.update("default", decide, expected_version=2).version == 3


def test_expected_version_of_a_new_project_is_zero(store: RegistryStore) -> None:
    with pytest.raises(RegistryVersionConflictError):
        apply(store, "fresh", driver(), expected_version=1)
    assert apply(store, "fresh", driver(), expected_version=0).version == 1


# -- history


def test_history_records_who_when_versions_and_what(store: RegistryStore) -> None:
    apply(store, "default", driver(), driver_statistics(), actor="alice")
    apply(store, "default", driver(), driver_statistics(labels={"owner": "x"}), actor="bob")
    store.update(
        "default",
        lambda s: RegistryChange(delete_feature_tables=("driver_statistics",), description="delete it"),
    )
    newest, middle, oldest = store.history("default")
    assert (oldest.version_before, oldest.version_after, oldest.actor) == (0, 1, "alice")
    assert oldest.items == (
        ChangedItem(kind="entity", name="driver_id", action=ItemAction.ADDED),
        ChangedItem(kind="feature_table", name="driver_statistics", action=ItemAction.ADDED),
    )
    assert oldest.description == "apply entity driver_id, feature table driver_statistics"
    assert (middle.version_before, middle.version_after, middle.actor) == (1, 2, "bob")
    assert middle.items == (
        ChangedItem(
            kind="feature_table",
            name="driver_statistics",
            action=ItemAction.CHANGED,
            fields=("labels",),
            diff=("labels: {owner='ride-team'} -> {owner='x'}",),  # a readable diff, values included
        ),
    )
    assert middle.names(ItemAction.CHANGED) == ["feature_table:driver_statistics"]
    assert (newest.version_before, newest.version_after, newest.actor) == (2, 3, "anonymous")
    assert newest.names(ItemAction.DELETED) == ["feature_table:driver_statistics"]
    assert newest.description == "delete it"
    assert oldest.changed_at <= middle.changed_at <= newest.changed_at
    assert newest.changed_at == store.read("default").updated_at


def test_history_of_all_projects_newest_first_with_a_limit(store: RegistryStore) -> None:
    apply(store, "default", driver())
    apply(store, "fraud", customer())
    apply(store, "default", driver(description="d2"))
    every = store.history()
    assert [(r.project, r.version_after) for r in every] == [("default", 2), ("fraud", 1), ("default", 1)]
    assert store.history(limit=2) == every[:2]
    assert [(r.project, r.version_after) for r in store.history("fraud")] == [("fraud", 1)]
    assert store.history("nothing") == []
    assert store.history(limit=0) == []


# -- archive


def test_archive_hides_a_project_and_refuses_writes(store: RegistryStore) -> None:
    apply(store, "fraud", customer(), customer_profile())
    info = store.archive_project("fraud", actor="admin")
    assert (info.name, info.version) == ("fraud", 2)
    assert info.archived_at is not None
    assert [p.name for p in store.list_projects()] == ["default"]
    archived = [p for p in store.list_projects(include_archived=True) if p.name == "fraud"]
    assert [(p.version, p.archived_at) for p in archived] == [(2, info.archived_at)]
    # data kept and readable
    snapshot = store.read("fraud")
    assert (snapshot.version, set(snapshot.entities), set(snapshot.feature_tables)) == (
        2,
        {"customer_id"},
        {"customer_profile"},
    )
    assert snapshot.archived_at == info.archived_at
    record = store.history("fraud")[0]
    assert (record.actor, record.version_before, record.version_after) == ("admin", 1, 2)
    assert record.description == "archive project fraud"
    before = state(store, "fraud")
    with pytest.raises(ProjectArchivedError) as excinfo:
        apply(store, "fraud", customer(description="late"))
    assert excinfo.value.project == "fraud"
    with pytest.raises(ProjectArchivedError):
        store.update("fraud", lambda s: RegistryChange())
    with pytest.raises(ProjectArchivedError):
        store.archive_project("fraud")
    assert state(store, "fraud") == before


def test_archive_refuses_unknown_and_default_projects(store: RegistryStore) -> None:
    apply(store, "fraud", customer())
    with pytest.raises(ProjectNotFoundError) as excinfo:
        store.archive_project("frau")
    assert excinfo.value.name == "frau"
    assert "fraud" in str(excinfo.value)
    with pytest.raises(RegistryConflictError, match="default"):
        store.archive_project("default")
    assert [p.name for p in store.list_projects()] == ["default", "fraud"]


# -- jobs


def job(**overrides: Any) -> JobRecord:
    fields: dict[str, Any] = {
        "id": new_job_id(),
        "kind": JobKind.OFFLINE_TO_ONLINE,
        "project": "default",
        "table": "driver_statistics",
        "created_at": datetime.now(UTC),
        "runner": "host-1:123",
    }
    fields.update(overrides)
    return JobRecord(**fields)


def test_job_round_trip(open_store: Callable[[], RegistryStore]) -> None:
    store = open_store()
    lineage = {"sources": [{"table": "t", "path": "s3://b/t", "delta_version": 3, "files": [{"path": "s3://b/t/x"}]}]}
    recorded = job(statistics={"conv_rate": {"mean": 0.5, "count": 3}}, validation={"passed": True}, lineage=lineage)
    assert store.put_job(recorded) == recorded
    assert store.get_job(recorded.id) == recorded
    assert open_store().get_job(recorded.id) == recorded  # seen by another store (process)
    with pytest.raises(JobStateError) as excinfo:
        store.put_job(job(id=recorded.id))
    assert excinfo.value.job_id == recorded.id
    with pytest.raises(JobNotFoundError) as not_found:
        store.get_job("job-missing")
    assert not_found.value.name == "job-missing"


def test_update_job_sets_fields_atomically(store: RegistryStore) -> None:
    recorded = store.put_job(job())
    started = datetime.now(UTC)
    running = store.update_job(
        recorded.id, if_status={JobStatus.PENDING}, status=JobStatus.RUNNING, started_at=started, heartbeat_at=started
    )
    assert (running.status, running.started_at, running.heartbeat_at) == (JobStatus.RUNNING, started, started)
    assert store.get_job(recorded.id) == running
    with pytest.raises(JobStateError) as excinfo:
        store.update_job(recorded.id, if_status={JobStatus.PENDING}, status=JobStatus.CANCELLED)
    assert excinfo.value.status == JobStatus.RUNNING
    assert store.get_job(recorded.id) == running
    cancelling = store.update_job(recorded.id, cancel_requested=True)
    assert cancelling.cancel_requested
    done = store.update_job(
        recorded.id,
        if_status={JobStatus.RUNNING},
        status=JobStatus.SUCCEEDED,
        finished_at=datetime.now(UTC),
        rows=1234,
        statistics={"rows": 1234},
        lineage={"sources": []},
    )
    assert store.get_job(recorded.id) == done
    assert done.lineage == {"sources": []}
    assert (done.rows, done.statistics, is_finished(done.status)) == (1234, {"rows": 1234}, True)
    with pytest.raises(JobNotFoundError):
        store.update_job("job-missing", rows=1)
    with pytest.raises(JobStateError, match="project"):
        store.update_job(recorded.id, project="other")  # type: ignore[call-arg]
    with pytest.raises(JobStateError, match="started_at"):
        store.update_job(recorded.id, started_at=datetime(2026, 1, 1))  # naive on purpose
    assert store.get_job(recorded.id) == done


def test_list_jobs_filters_and_orders(store: RegistryStore) -> None:
    base = datetime.now(UTC) - timedelta(hours=1)
    first = store.put_job(job(created_at=base))
    second = store.put_job(job(created_at=base + timedelta(minutes=1), table="customer_profile"))
    third = store.put_job(job(created_at=base + timedelta(minutes=2), kind=JobKind.HISTORICAL, table=""))
    store.put_job(job(project="fraud"))
    store.update_job(second.id, status=JobStatus.FAILED, error="boom", finished_at=datetime.now(UTC))
    assert [j.id for j in store.list_jobs("default")] == [third.id, first.id]
    every = store.list_jobs("default", include_finished=True)
    assert [j.id for j in every] == [third.id, second.id, first.id]
    assert every[1].error == "boom"
    assert [j.id for j in store.list_jobs("default", table="customer_profile", include_finished=True)] == [second.id]
    assert store.list_jobs("default", table="customer_profile") == []
    assert store.list_jobs("nothing") == []


def test_fail_stale_jobs_fails_running_jobs_without_a_heartbeat(store: RegistryStore) -> None:
    now = datetime.now(UTC)
    old = now - timedelta(minutes=10)
    dead = store.put_job(job(status=JobStatus.RUNNING, started_at=old, heartbeat_at=old, created_at=old))
    silent = store.put_job(job(status=JobStatus.RUNNING, started_at=old, created_at=old))  # never beat
    alive = store.put_job(job(status=JobStatus.RUNNING, started_at=old, heartbeat_at=now, created_at=old))
    pending = store.put_job(job(created_at=old))
    finished = store.put_job(job(status=JobStatus.SUCCEEDED, started_at=old, heartbeat_at=old, created_at=old))
    failed = store.fail_stale_jobs(timedelta(minutes=1))
    assert sorted(j.id for j in failed) == sorted([dead.id, silent.id])
    for record in failed:
        assert store.get_job(record.id) == record
        assert record.status is JobStatus.FAILED
        assert "runner died" in record.error and "host-1:123" in record.error
        assert record.finished_at is not None and record.finished_at >= now
    assert store.get_job(alive.id) == alive
    assert store.get_job(pending.id) == pending
    assert store.get_job(finished.id) == finished
    assert store.fail_stale_jobs(timedelta(minutes=1)) == []


def test_jobs_of_an_archived_project_are_refused(store: RegistryStore) -> None:
    apply(store, "fraud", customer())
    running = store.put_job(job(project="fraud", status=JobStatus.RUNNING))
    store.archive_project("fraud")
    with pytest.raises(ProjectArchivedError):
        store.put_job(job(project="fraud"))
    # a job already running may still finish
    assert store.update_job(running.id, status=JobStatus.SUCCEEDED).status is JobStatus.SUCCEEDED


# -- concurrency across processes

PROCESSES = 4
ROUNDS = 25


def apply_rounds(worker: int, registry_url: str, base_dir: str, barrier: Any, errors: Any) -> None:
    """Run in a child process: ROUNDS effective applies, each followed by an unchanged re-apply."""
    try:
        barrier.wait(timeout=60)
        with Client(settings=Settings(registry=registry_url, base_dir=Path(base_dir))) as client:
            for round_number in range(ROUNDS):
                definitions: list[Entity | FeatureTable] = [
                    driver(),
                    driver_statistics(name=f"table_{worker}", labels={"round": str(round_number)}),
                ]
                plan = client.apply(definitions)
                assert plan.items[1].action is (Action.ADDED if round_number == 0 else Action.CHANGED), plan.items
                again = client.apply(definitions)
                assert [item.action for item in again.items] == [Action.UNCHANGED, Action.UNCHANGED], again.items
    except BaseException:
        errors.put(f"worker {worker}:\n{traceback.format_exc()}")
        raise


@pytest.mark.timeout(180)
def test_concurrent_applies_from_processes_lose_nothing(
    registry_url: str, tmp_path: Path, open_store: Callable[[], RegistryStore]
) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    errors = context.Queue()
    workers = [
        context.Process(target=apply_rounds, args=(n, registry_url, str(tmp_path), barrier, errors), daemon=True)
        for n in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=150)
    alive = [worker for worker in workers if worker.is_alive()]
    for worker in alive:
        worker.kill()
        worker.join()
    reported = []
    while not errors.empty():
        reported.append(errors.get())
    errors.close()
    errors.join_thread()
    assert not alive, f"{len(alive)} workers did not finish"
    assert not reported, "\n".join(reported)
    assert [worker.exitcode for worker in workers] == [0] * PROCESSES

    store = open_store()
    snapshot = store.read("default")
    assert snapshot.version == PROCESSES * ROUNDS
    for n in range(PROCESSES):
        expected = driver_statistics(name=f"table_{n}", labels={"round": str(ROUNDS - 1)})
        assert snapshot.feature_tables[f"table_{n}"] == expected
    history = store.history("default", limit=1000)
    assert sorted(r.version_after for r in history) == list(range(1, PROCESSES * ROUNDS + 1))
    assert all(r.version_before == r.version_after - 1 for r in history)


# -- on-demand features


def test_on_demand_features_round_trip_and_protect_their_inputs(open_store: Callable[[], RegistryStore]) -> None:
    writer = open_store()
    ratio = OnDemandFeatures(
        name="ratio",
        inputs=[f"driver_statistics:{driver_statistics().features[0].name}"],
        request_schema={"amount": ValueType.DOUBLE},
        features=[Feature("per_trip", ValueType.DOUBLE)],
        function="tests.support.on_demand_functions:ratios",
        function_digest="0123456789abcdef",
    )
    apply(writer, "default", driver(), driver_statistics(), ratio)
    reader = open_store()
    assert dict(reader.read("default").on_demand_features) == {"ratio": ratio}
    with pytest.raises(RegistryConflictError, match="read by on-demand features: ratio"):
        writer.update("default", lambda s: plan_delete_feature_table(s, "driver_statistics"))
    snapshot = writer.update("default", lambda s: plan_delete_on_demand_features(s, "ratio"))
    assert dict(snapshot.on_demand_features) == {}
    assert dict(reader.read("default").on_demand_features) == {}
    assert [item.kind for item in reader.history("default", limit=1)[0].items] == ["on_demand_features"]


def _corrupt(registry_url: str, spec: str) -> None:
    """Overwrite the stored definition of feature table 'driver_statistics' of 'default', as SQL can."""
    if registry_url.startswith("sqlite:///"):
        import sqlite3

        db = sqlite3.connect(registry_url.removeprefix("sqlite:///"))
        with db:
            db.execute("UPDATE definitions SET spec = ? WHERE name = 'driver_statistics'", (spec,))
            db.execute("UPDATE projects SET version = version + 1 WHERE name = 'default'")
        db.close()
        return
    import psycopg

    with psycopg.connect(registry_url, autocommit=True) as conn:
        conn.execute("UPDATE provender_definitions SET spec = %s WHERE name = 'driver_statistics'", (spec,))
        conn.execute("UPDATE provender_projects SET version = version + 1 WHERE name = 'default'")


@pytest.mark.parametrize("spec", ["{not json", '{"format_version": 1, "kind": "gadget", "spec": {}}'])
@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.service)]
)  # the core service decodes its own registry: its readers get its answer (or its refusal)
def test_reads_can_skip_an_undecodable_definition_and_name_it(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, spec: str
) -> None:
    registry_url = PROVISIONERS[backend](request, tmp_path)
    store = backends.load_registry(registry_url).from_url(registry_url, base_dir=tmp_path)
    try:
        apply(store, "default", driver(), driver_statistics(), customer())
        _corrupt(registry_url, spec)
        with pytest.raises(Exception, match=r"JSON|gadget|kind"):  # a strict read fails, as before
            store.read("default")
        lenient = store.read("default", skip_malformed=True)
        assert set(lenient.feature_tables) == set() and set(lenient.entities) == {"driver_id", "customer_id"}
        assert list(lenient.skipped) == ["feature_table 'driver_statistics'"]
        with pytest.raises(Exception, match=r"JSON|gadget|kind"):  # the lenient snapshot is not cached
            store.read("default")
    finally:
        store.close()
