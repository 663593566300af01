"""The embedded registry: one SQLite file (``registry: sqlite:///.provender/registry.db``).

``sqlite:///relative/path.db`` is relative to the project directory and
``sqlite:////absolute/path.db`` is absolute. Updates run in ``BEGIN IMMEDIATE`` transactions,
which take SQLite's write lock before reading, so applies from several processes serialize and
none is lost; readers never block (WAL).

The schema is versioned (table ``schema_version``): opening a file applies the migrations it
lacks, in one write transaction, and refuses a file written by a newer Provender.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar, Self, Unpack

from provender.errors import (
    BackendError,
    ConfigError,
    JobNotFoundError,
    JobStateError,
    ProjectArchivedError,
    ProjectNotFoundError,
    RegistryConflictError,
    RegistrySchemaError,
    RegistryVersionConflictError,
)
from provender.registry import codec, jobs
from provender.registry.jobs import JobFields, JobRecord, JobStatus
from provender.registry.store import (
    ANONYMOUS,
    DEFAULT_HISTORY_LIMIT,
    DEFAULT_PROJECT,
    ChangedItem,
    ItemAction,
    ProjectInfo,
    RegistryChange,
    RegistryChangeRecord,
    RegistrySnapshot,
    SnapshotCache,
    decode_stored,
    deleted_records,
    describe_change,
    record_kind,
    snapshot_of,
)

# Migration N (1-based) brings the schema from version N-1 to N. Version 1 is the schema of
# Provender 0.1, whose files have no schema_version table.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE IF NOT EXISTS projects (name TEXT PRIMARY KEY, version INTEGER NOT NULL, updated_at TEXT)",
        "CREATE TABLE IF NOT EXISTS definitions (project TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, "
        "spec TEXT NOT NULL, PRIMARY KEY (project, kind, name))",
        "CREATE TABLE IF NOT EXISTS changes (project TEXT NOT NULL, version INTEGER NOT NULL, "
        "changed_at TEXT NOT NULL, description TEXT NOT NULL, PRIMARY KEY (project, version))",
    ),
    (
        "ALTER TABLE projects ADD COLUMN archived_at TEXT",
        "ALTER TABLE changes ADD COLUMN actor TEXT NOT NULL DEFAULT 'anonymous'",
        "ALTER TABLE changes ADD COLUMN items TEXT NOT NULL DEFAULT '[]'",
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, project TEXT NOT NULL, "
        "table_name TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL, started_at TEXT, "
        "finished_at TEXT, heartbeat_at TEXT, rows INTEGER NOT NULL, error TEXT NOT NULL, runner TEXT NOT NULL, "
        "cancel_requested INTEGER NOT NULL, statistics TEXT, validation TEXT)",
        "CREATE INDEX jobs_by_project ON jobs (project, table_name, created_at)",
        "CREATE INDEX jobs_by_status ON jobs (status)",
    ),
    ("ALTER TABLE jobs ADD COLUMN lineage TEXT",),
)
SCHEMA_VERSION = len(_MIGRATIONS)
_LOCK_TIMEOUT_SECONDS = 60.0
_TIME_COLUMNS = frozenset({"created_at", "started_at", "finished_at", "heartbeat_at"})


def path_from_url(url: str, *, base_dir: Path) -> Path:
    """Return the file path of a ``sqlite:///...`` URL, resolved against ``base_dir``."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url == prefix:
        raise ConfigError("registry", f"{url!r} is not a SQLite URL; expected 'sqlite:///path/to/registry.db'")
    path = Path(url.removeprefix(prefix))
    return path if path.is_absolute() else base_dir / path


class SQLiteRegistry:
    """A registry kept in one SQLite file; safe across threads and processes."""

    is_remote: ClassVar[bool] = False

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._cache = SnapshotCache()
        _refuse_empty_file(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                path, timeout=_LOCK_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
            )
        except (sqlite3.Error, OSError) as exc:
            raise BackendError(f"cannot open the SQLite registry at {path}: {exc}{_hint(path, exc)}") from exc
        try:
            self._set_up()
        except sqlite3.Error as exc:
            self._conn.close()
            raise BackendError(f"cannot open the SQLite registry at {path}: {exc}{_hint(path, exc)}") from exc
        except BaseException:
            self._conn.close()
            raise

    def _set_up(self) -> None:
        # Processes opening a new file together race to switch it to WAL, and SQLite answers
        # SQLITE_BUSY at once, without waiting (that could deadlock): retry until the timeout.
        deadline = time.monotonic() + _LOCK_TIMEOUT_SECONDS
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
                self._migrate()
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _migrate(self) -> None:
        if self._schema_version() == SCHEMA_VERSION:
            return  # the common case: no write lock needed
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            found = self._schema_version()  # again, under the lock: another process may have migrated
            if found > SCHEMA_VERSION:
                raise RegistrySchemaError(str(self.path), found=found, supported=SCHEMA_VERSION)
            for statements in _MIGRATIONS[found:]:
                for statement in statements:
                    self._conn.execute(statement)
            self._conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            self._conn.execute("DELETE FROM schema_version")
            self._conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:  # SQLite may have rolled back already (e.g. disk full)
                self._conn.execute("ROLLBACK")
            raise

    def _schema_version(self) -> int:
        found = _schema_version(self._conn)
        if found > SCHEMA_VERSION:
            raise RegistrySchemaError(str(self.path), found=found, supported=SCHEMA_VERSION)
        return found

    @classmethod
    def from_url(cls, url: str, *, base_dir: Path, token: str | None = None) -> Self:  # noqa: ARG003
        """Open the registry file named by ``sqlite:///path`` (created if missing; no token needed)."""
        return cls(path_from_url(url, base_dir=base_dir))

    # -- transactions

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """One read transaction, so everything read comes from the same commit."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding SQLite's write lock from its first read; rolled back on error."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise BackendError(f"registry {self.path} is locked: {exc}", retryable=True) from exc
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:  # e.g. a full disk: the real cause, and that nothing was written
                if self._conn.in_transaction:  # SQLite may have rolled back already (e.g. disk full)
                    self._conn.execute("ROLLBACK")
                text = str(exc)
                raise BackendError(
                    f"registry {self.path}: nothing was written: {text}{_hint(self.path, exc)}",
                    retryable="locked" in text or "busy" in text,
                ) from exc
            except BaseException:
                if self._conn.in_transaction:  # SQLite may have rolled back already (e.g. disk full)
                    self._conn.execute("ROLLBACK")
                raise

    # -- definitions

    def read(self, project: str, *, skip_malformed: bool = False) -> RegistrySnapshot:
        """Return the project's current snapshot (undecodable definitions left out and named if asked)."""
        with self._reading():
            return self._read(project, skip_malformed=skip_malformed)

    def update(
        self,
        project: str,
        decide: Callable[[RegistrySnapshot], RegistryChange],
        *,
        actor: str = ANONYMOUS,
        expected_version: int | None = None,
    ) -> RegistrySnapshot:
        """Apply ``decide(latest)`` in one write transaction; nothing is written if it raises."""
        with self._writing():
            snapshot = self._read(project)
            _check_writable(snapshot, expected_version)
            change = decide(snapshot)
            if change.is_empty:
                return snapshot
            self._write(project, snapshot, change, actor)
            return self._read(project)

    def list_projects(self, *, include_archived: bool = False) -> list[ProjectInfo]:
        """Return ``default`` and every project written to (archived ones if asked), sorted by name."""
        with self._lock:
            rows = self._conn.execute("SELECT name, version, updated_at, archived_at FROM projects").fetchall()
        projects = {
            name: ProjectInfo(name=name, version=v, updated_at=_parse_time(at), archived_at=_parse_time(archived))
            for name, v, at, archived in rows
            if include_archived or archived is None
        }
        projects.setdefault(DEFAULT_PROJECT, ProjectInfo(name=DEFAULT_PROJECT, version=0, updated_at=None))
        return sorted(projects.values(), key=lambda p: p.name)

    def archive_project(self, project: str, *, actor: str = ANONYMOUS) -> ProjectInfo:
        """Make ``project`` read-only and hidden from listings; record it in the history."""
        if project == DEFAULT_PROJECT:
            raise RegistryConflictError(["the default project cannot be archived"], project=project)
        with self._writing() as conn:
            snapshot = self._read(project)
            if snapshot.version == 0:
                known = [row[0] for row in conn.execute("SELECT name FROM projects")]
                raise ProjectNotFoundError(project, known=known)
            _check_writable(snapshot, None)
            now = datetime.now(UTC)
            version = snapshot.version + 1
            conn.execute(
                "UPDATE projects SET version = ?, updated_at = ?, archived_at = ? WHERE name = ?",
                (version, _time_text(now), _time_text(now), project),
            )
            item = ChangedItem(kind="project", name=project, action=ItemAction.CHANGED, fields=("archived",))
            self._record(project, version, now, actor, f"archive project {project}", (item,))
        return ProjectInfo(name=project, version=version, updated_at=now, archived_at=now)

    def history(self, project: str | None = None, *, limit: int = DEFAULT_HISTORY_LIMIT) -> list[RegistryChangeRecord]:
        """Return the latest ``limit`` changes, newest first (of ``project``, or of all)."""
        query = "SELECT project, version, changed_at, actor, description, items FROM changes"
        params: tuple[object, ...] = ()
        if project is not None:
            query, params = query + " WHERE project = ?", (project,)
        with self._lock:
            rows = self._conn.execute(query + " ORDER BY rowid DESC LIMIT ?", (*params, max(limit, 0))).fetchall()
        return [
            RegistryChangeRecord(
                project=name,
                version_before=version - 1,
                version_after=version,
                changed_at=datetime.fromisoformat(at),
                actor=actor,
                description=description,
                items=tuple(ChangedItem.from_dict(item) for item in json.loads(items)),
            )
            for name, version, at, actor, description, items in rows
        ]

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    def _read(self, project: str, *, skip_malformed: bool = False) -> RegistrySnapshot:
        row = self._conn.execute(
            "SELECT version, updated_at, archived_at FROM projects WHERE name = ?", (project,)
        ).fetchone()
        if row is None:
            return RegistrySnapshot(project=project)
        cached = self._cache.get(project, row[0], _parse_time(row[1]), _parse_time(row[2]))
        if cached is not None:
            return cached
        rows = self._conn.execute(
            "SELECT kind, name, spec FROM definitions WHERE project = ? ORDER BY kind, name", (project,)
        )
        definitions, skipped = decode_stored(rows, codec.from_json, skip_malformed=skip_malformed)
        snapshot = snapshot_of(
            project,
            definitions,
            version=row[0],
            updated_at=_parse_time(row[1]),
            archived_at=_parse_time(row[2]),
            skipped=skipped,
        )
        if skipped:  # never cached: a strict read of this version must still fail
            return snapshot
        return self._cache.put(snapshot)

    def _write(self, project: str, snapshot: RegistrySnapshot, change: RegistryChange, actor: str) -> None:
        now = datetime.now(UTC)
        version = snapshot.version + 1
        self._conn.execute(
            "INSERT INTO projects (name, version, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at",
            (project, version, _time_text(now)),
        )
        for definition in change.put:
            self._conn.execute(
                "INSERT OR REPLACE INTO definitions (project, kind, name, spec) VALUES (?, ?, ?, ?)",
                (project, record_kind(definition), definition.name, codec.to_json(definition)),
            )
        for kind, name in deleted_records(change):
            self._conn.execute(
                "DELETE FROM definitions WHERE project = ? AND kind = ? AND name = ?", (project, kind, name)
            )
        self._record(project, version, now, actor, change.description, describe_change(snapshot, change))

    def _record(
        self, project: str, version: int, now: datetime, actor: str, description: str, items: tuple[ChangedItem, ...]
    ) -> None:
        self._conn.execute(
            "INSERT INTO changes (project, version, changed_at, description, actor, items) VALUES (?, ?, ?, ?, ?, ?)",
            (project, version, _time_text(now), description, actor, json.dumps([i.to_dict() for i in items])),
        )

    # -- jobs

    def put_job(self, job: JobRecord) -> JobRecord:
        """Record a new job; refuse an id already recorded or an archived project."""
        jobs.check_new(job)
        with self._writing() as conn:
            if self._read_archived(job.project) is not None:
                raise ProjectArchivedError(project=job.project)
            existing = self._job_or_none(job.id)
            if existing is not None:
                raise JobStateError(job.id, "a job with this id is already recorded", status=existing.status)
            conn.execute(
                f"INSERT INTO jobs ({', '.join(jobs.COLUMNS)}) VALUES ({', '.join('?' * len(jobs.COLUMNS))})",
                _job_row(job),
            )
        return job

    def update_job(
        self, job_id: str, *, if_status: Collection[JobStatus] | None = None, **changes: Unpack[JobFields]
    ) -> JobRecord:
        """Set some fields of a job in one write transaction (only if its status is in ``if_status``)."""
        with self._writing():
            job = self._job_or_none(job_id)
            if job is None:
                raise JobNotFoundError(job_id)
            if if_status is not None and job.status not in if_status:
                expected = ", ".join(sorted(if_status))
                raise JobStateError(job_id, f"is {job.status}, not {expected}", status=job.status)
            updated = jobs.with_changes(job, changes)
            self._store_job(updated)
        return updated

    def get_job(self, job_id: str) -> JobRecord:
        """Return the job with id ``job_id``."""
        with self._reading():
            job = self._job_or_none(job_id)
        if job is None:
            raise JobNotFoundError(job_id)
        return job

    def list_jobs(self, project: str, *, table: str | None = None, include_finished: bool = False) -> list[JobRecord]:
        """Return the project's jobs, newest first."""
        query = f"SELECT {', '.join(jobs.COLUMNS)} FROM jobs WHERE project = ?"
        params: list[object] = [project]
        if table is not None:
            query += " AND table_name = ?"
            params.append(table)
        if not include_finished:
            query += f" AND status NOT IN ({', '.join('?' * len(jobs.FINISHED_STATUSES))})"
            params += sorted(jobs.FINISHED_STATUSES)
        with self._lock:
            rows = self._conn.execute(query + " ORDER BY created_at DESC, id", params).fetchall()
        return [_job_from_row(row) for row in rows]

    def fail_stale_jobs(self, older_than: timedelta) -> list[JobRecord]:
        """Mark FAILED the RUNNING jobs whose heartbeat is older than ``older_than``."""
        now = datetime.now(UTC)
        failed = []
        with self._writing() as conn:
            rows = conn.execute(
                f"SELECT {', '.join(jobs.COLUMNS)} FROM jobs WHERE status = ?", (JobStatus.RUNNING.value,)
            ).fetchall()
            for job in map(_job_from_row, rows):
                last = job.heartbeat_at or job.started_at or job.created_at
                if now - last > older_than:
                    failed.append(jobs.stale_failure(job, now))
                    self._store_job(failed[-1])
        return failed

    def _read_archived(self, project: str) -> str | None:
        row = self._conn.execute("SELECT archived_at FROM projects WHERE name = ?", (project,)).fetchone()
        return None if row is None else row[0]

    def _job_or_none(self, job_id: str) -> JobRecord | None:
        row = self._conn.execute(f"SELECT {', '.join(jobs.COLUMNS)} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _job_from_row(row)

    def _store_job(self, job: JobRecord) -> None:
        assignments = ", ".join(f"{column} = ?" for column in jobs.COLUMNS[1:])
        self._conn.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*_job_row(job)[1:], job.id))


def _check_writable(snapshot: RegistrySnapshot, expected_version: int | None) -> None:
    if snapshot.archived_at is not None:
        raise ProjectArchivedError(project=snapshot.project)
    if expected_version is not None and expected_version != snapshot.version:
        raise RegistryVersionConflictError(
            project=snapshot.project, expected_version=expected_version, actual_version=snapshot.version
        )


def _job_row(job: JobRecord) -> tuple[object, ...]:
    return tuple(_time_text(value) if isinstance(value, datetime) else value for value in jobs.to_row(job))


def _time_text(moment: datetime) -> str:
    """UTC, always with microseconds, so that the text sorts like the time."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _job_from_row(row: tuple[object, ...]) -> JobRecord:
    return jobs.from_row(
        tuple(
            _parse_time(value) if column in _TIME_COLUMNS and isinstance(value, str) else value
            for column, value in zip(jobs.COLUMNS, row, strict=True)
        )
    )


def _parse_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


_EMPTY_FILE_GRACE_SECONDS = 10.0


def stored_schema_version(path: Path) -> int:
    """The schema version of the registry file ``path``, read without writing anything (0: no tables yet).

    For readers that must not upgrade a file (``provender ui``); opening a :class:`SQLiteRegistry`
    applies the migrations it lacks.

    Raises:
        BackendError: the file cannot be read as a SQLite database.
    """
    _refuse_empty_file(path)
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return _schema_version(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise BackendError(f"cannot read the SQLite registry at {path}: {exc}{_hint(path, exc)}") from exc


def _schema_version(conn: sqlite3.Connection) -> int:
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "schema_version" in tables:
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        if row is not None and row[0] is not None:
            return int(row[0])
    return 1 if "projects" in tables else 0


def _refuse_empty_file(path: Path) -> None:
    """Refuse a 0-byte registry file (usually a broken copy), unless another process just created it."""
    try:
        stat = path.stat()
    except OSError:
        return
    if stat.st_size == 0 and time.time() - stat.st_mtime > _EMPTY_FILE_GRACE_SECONDS:
        raise BackendError(
            f"the SQLite registry at {path} is an empty (0-byte) file, usually a broken copy; restore it from "
            "a backup, or delete it to start an empty registry."
        )


def _hint(path: Path, error: BaseException) -> str:
    text = str(error).lower()
    if "unable to open" in text or "readonly" in text or "read-only" in text or isinstance(error, PermissionError):
        return f" (check that the folder {path.parent} exists and that this user may write to it)"
    return ""
