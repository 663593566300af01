"""SQLite registry schema versions: files of Provender 0.1 and of schema 2 are upgraded, newer files refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from provender.errors import BackendError, RegistrySchemaError
from provender.registry import codec
from provender.registry.jobs import JobKind, JobRecord, new_job_id, utc_now
from provender.registry.sqlite import SCHEMA_VERSION, SQLiteRegistry, stored_schema_version
from provender.registry.store import RegistryChange
from tests.support.old_registries import SQLITE_V2, check_upgraded
from tests.unit.registry.definitions import driver, driver_statistics

# The schema and rows exactly as Provender 0.1 (before schema versioning) wrote them.
SCHEMA_0_1 = """
CREATE TABLE IF NOT EXISTS projects (
    name TEXT PRIMARY KEY, version INTEGER NOT NULL, updated_at TEXT);
CREATE TABLE IF NOT EXISTS definitions (
    project TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, spec TEXT NOT NULL,
    PRIMARY KEY (project, kind, name));
CREATE TABLE IF NOT EXISTS changes (
    project TEXT NOT NULL, version INTEGER NOT NULL, changed_at TEXT NOT NULL, description TEXT NOT NULL,
    PRIMARY KEY (project, version));
"""


def write_0_1_registry(path: Path) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.executescript(SCHEMA_0_1)
        conn.execute("INSERT INTO projects VALUES ('default', 2, '2026-11-01T10:00:00.000001+00:00')")
        for kind, definition in (("entity", driver()), ("feature_table", driver_statistics())):
            conn.execute(
                "INSERT INTO definitions VALUES ('default', ?, ?, ?)",
                (kind, definition.name, codec.to_json(definition)),
            )
        conn.execute("INSERT INTO changes VALUES ('default', 1, '2026-11-01T09:00:00+00:00', 'apply entity driver_id')")
        conn.execute("INSERT INTO changes VALUES ('default', 2, '2026-11-01T10:00:00.000001+00:00', 'apply table')")
    conn.close()


def test_a_0_1_registry_is_upgraded_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    write_0_1_registry(path)
    registry = SQLiteRegistry(path)
    try:
        snapshot = registry.read("default")
        assert snapshot.version == 2
        assert dict(snapshot.entities) == {"driver_id": driver()}
        assert dict(snapshot.feature_tables) == {"driver_statistics": driver_statistics()}
        assert snapshot.archived_at is None
        history = registry.history()
        assert [(r.version_after, r.actor, r.description, r.items) for r in history] == [
            (2, "anonymous", "apply table", ()),
            (1, "anonymous", "apply entity driver_id", ()),
        ]
        # the new features work on the upgraded file
        registry.update("default", lambda s: RegistryChange(delete_feature_tables=("driver_statistics",)), actor="al")
        assert registry.history(limit=1)[0].actor == "al"
        job = JobRecord(id=new_job_id(), kind=JobKind.HISTORICAL, project="default", created_at=utc_now())
        assert registry.put_job(job) == registry.get_job(job.id)
    finally:
        registry.close()
    assert stored_schema_version(path) == SCHEMA_VERSION
    reopened = SQLiteRegistry(path)  # opening an up-to-date file migrates nothing
    try:
        assert reopened.read("default").version == 3
    finally:
        reopened.close()


def test_a_new_registry_starts_at_the_current_schema(tmp_path: Path) -> None:
    SQLiteRegistry(tmp_path / "registry.db").close()
    assert stored_schema_version(tmp_path / "registry.db") == SCHEMA_VERSION


def test_a_newer_schema_is_refused_naming_both_versions(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    SQLiteRegistry(path).close()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 7,))
    conn.close()
    with pytest.raises(RegistrySchemaError) as excinfo:
        SQLiteRegistry(path)
    error = excinfo.value
    assert (error.found, error.supported) == (SCHEMA_VERSION + 7, SCHEMA_VERSION)
    assert f"schema version {SCHEMA_VERSION + 7}" in str(error)
    assert f"({SCHEMA_VERSION})" in str(error)
    assert str(path) in str(error)
    assert not error.retryable


def test_a_schema_2_registry_with_jobs_is_upgraded_and_keeps_every_row(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    conn = sqlite3.connect(path)
    conn.executescript(SQLITE_V2.read_text())  # as the code before job lineage wrote it
    conn.close()
    written = path.read_bytes()
    assert stored_schema_version(path) == 2 < SCHEMA_VERSION
    assert path.read_bytes() == written and sorted(p.name for p in tmp_path.iterdir()) == ["registry.db"]  # read only
    registry = SQLiteRegistry(path)
    try:
        check_upgraded(registry)
    finally:
        registry.close()
    assert stored_schema_version(path) == SCHEMA_VERSION
    reopened = SQLiteRegistry(path)  # the upgraded file opens as it is, its new rows kept
    try:
        assert reopened.read("default").version == 3
        assert len(reopened.list_jobs("default", include_finished=True)) == 3
    finally:
        reopened.close()


def test_the_schema_version_of_a_missing_empty_or_unreadable_file_is_refused_or_zero(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "new.db").close()  # a database with no table yet
    assert stored_schema_version(tmp_path / "new.db") == 0
    (tmp_path / "junk.db").write_bytes(b"not a database" * 100)
    with pytest.raises(BackendError, match=r"cannot read the SQLite registry at .*junk\.db"):
        stored_schema_version(tmp_path / "junk.db")
