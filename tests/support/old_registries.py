"""Registries written by an older Provender, kept as SQL dumps, and what the current code must find in them.

``tests/fixtures/registry/*.sql`` were written by the code before job lineage (its SQLite schema
version 2, its PostgreSQL schema version 1) through the registry itself, then dumped; the header of
each file says how. :func:`check_upgraded` opens such a registry with the current code: everything
the older code wrote reads back the same, and what the newer schema added works on it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import provender as pv
from provender.errors import ProjectArchivedError
from provender.registry.jobs import JobKind, JobRecord, JobStatus, new_job_id, utc_now
from provender.registry.store import ChangedItem, ItemAction, RegistryChange, RegistryStore

FIXTURES = Path(__file__).parent.parent / "fixtures" / "registry"
SQLITE_V2 = FIXTURES / "sqlite_schema_v2.sql"
POSTGRES_V1 = FIXTURES / "postgres_schema_v1.sql"

DRIVER = pv.Entity(name="driver_id", value_type=pv.ValueType.INT64, description="A driver")
DRIVER_STATS = pv.FeatureTable(
    name="driver_stats",
    entities=["driver_id"],
    features=[
        pv.Feature("trips", pv.ValueType.INT64, description="Trips today"),
        pv.Feature("rate", pv.ValueType.DOUBLE),
    ],
    batch_source=pv.FileSource(path="/data/driver_stats", event_timestamp_column="ts"),
    max_age=timedelta(days=1),
    labels={"team": "pricing"},
)
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def check_upgraded(registry: RegistryStore) -> None:
    """Assert that ``registry`` (opened from a fixture, so upgraded) holds the fixture's data and works."""
    snapshot = registry.read("default")
    assert snapshot.version == 2
    assert dict(snapshot.entities) == {"driver_id": DRIVER}
    assert dict(snapshot.feature_tables) == {"driver_stats": DRIVER_STATS}
    projects = {p.name: p for p in registry.list_projects(include_archived=True)}
    assert set(projects) == {"default", "attic"}
    assert projects["attic"].archived_at is not None and projects["default"].archived_at is None
    assert [p.name for p in registry.list_projects()] == ["default"]

    history = registry.history(limit=10)
    assert [(r.project, r.version_after, r.actor, r.description) for r in history] == [
        ("attic", 2, "admin", "archive project attic"),
        ("attic", 1, "alice", ""),
        ("default", 2, "bob", ""),
        ("default", 1, "alice", ""),
    ]
    assert history[2].items == (
        ChangedItem(kind="feature_table", name="driver_stats", action=ItemAction.CHANGED, fields=("labels",),
                    diff=("labels: {team='growth'} -> {team='pricing'}",)),
    )  # fmt: skip
    assert [item.name for item in history[3].items] == ["driver_id", "driver_stats"]

    done = registry.get_job("job-0000000000000001")
    assert (done.kind, done.project, done.table, done.status, done.rows, done.runner) == (
        JobKind.OFFLINE_TO_ONLINE, "default", "driver_stats", JobStatus.SUCCEEDED, 20, "core"
    )  # fmt: skip
    assert (done.created_at, done.started_at, done.heartbeat_at, done.finished_at) == (
        T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=2), T0 + timedelta(seconds=5)
    )  # fmt: skip
    assert done.statistics == {"rows": 20, "features": [{"name": "rate", "count": 20, "nulls": 0}]}
    assert done.validation == {"policy": "warn", "rows": 20, "violations": []}
    assert done.lineage is None  # the column the upgrade added: empty for older jobs
    failed = registry.get_job("job-0000000000000002")
    assert (failed.kind, failed.status, failed.error, failed.cancel_requested, failed.table, failed.started_at) == (
        JobKind.HISTORICAL, JobStatus.FAILED, "DataError: no rows", True, "", None
    )  # fmt: skip
    listed = registry.list_jobs("default", include_finished=True)
    assert sorted(j.id for j in listed) == ["job-0000000000000001", "job-0000000000000002"]

    # What the newer schema added works on the upgraded registry; the older rules still hold.
    job = JobRecord(id=new_job_id(), kind=JobKind.HISTORICAL, project="default", created_at=utc_now(),
                    lineage={"sources": [{"table": "driver_stats", "files": []}]})  # fmt: skip
    assert registry.put_job(job) == registry.get_job(job.id)
    after = registry.update(
        "default",
        lambda _s: RegistryChange(put=(pv.Entity(name="rider", value_type=pv.ValueType.INT64),)),
        actor="carol",
    )
    assert after.version == 3 and registry.history("default", limit=1)[0].actor == "carol"
    with pytest.raises(ProjectArchivedError):
        registry.update("attic", lambda _s: RegistryChange(put=(DRIVER,)))
