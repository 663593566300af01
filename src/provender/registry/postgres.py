"""The shared registry on PostgreSQL (``registry: postgresql://user:pass@host:5432/db``).

Concurrency: **row locking**, not serializable transactions. Every write runs in one READ
COMMITTED transaction that first makes sure the project's row exists (``INSERT ... ON CONFLICT
DO NOTHING``) and then locks it (``SELECT ... FOR UPDATE``); it reads the definitions, runs
``decide`` and writes while holding that lock. Writers of one project, from any process on any
machine, therefore serialize and none is lost; writers of different projects never wait on each
other, and no transaction is ever retried. Readers take no lock: a read is one ``REPEATABLE READ
READ ONLY`` transaction, so the version and the definitions it returns come from one commit. A
job update locks the job's row the same way. A change that is refused or empty rolls back, the
project row it may have inserted included.

Tables are prefixed ``provender_`` so the registry can share a database. The schema is versioned
(``provender_schema_version``); opening applies missing migrations under a transaction-level
advisory lock (processes starting together migrate once) and refuses a newer schema.

Connections come from a ``psycopg_pool`` pool, checked before use, so the registry recovers by
itself once the server is back after an outage; meanwhile every call raises a retryable
:class:`~provender.errors.BackendError` (the core service answers 503). Pool options go in the
URL's query string and are not passed to libpq: ``pool_min_size`` (1), ``pool_max_size`` (8),
``pool_timeout`` (seconds to wait for a connection, 5). Errors never show the password.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Self, Unpack
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg  # a missing extra is reported by backends.load_backend (MissingExtraError)
from psycopg_pool import ConnectionPool, PoolTimeout

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
    did_you_mean,
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

# Migration N (1-based) brings the schema from version N-1 to N.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE provender_projects (name text PRIMARY KEY, version bigint NOT NULL, "
        "updated_at timestamptz, archived_at timestamptz)",
        "CREATE TABLE provender_definitions (project text NOT NULL, kind text NOT NULL, name text NOT NULL, "
        "spec text NOT NULL, PRIMARY KEY (project, kind, name))",
        "CREATE TABLE provender_changes (id bigserial PRIMARY KEY, project text NOT NULL, version bigint NOT NULL, "
        "changed_at timestamptz NOT NULL, actor text NOT NULL, description text NOT NULL, items text NOT NULL, "
        "UNIQUE (project, version))",
        "CREATE TABLE provender_jobs (id text PRIMARY KEY, kind text NOT NULL, project text NOT NULL, "
        "table_name text NOT NULL, status text NOT NULL, created_at timestamptz NOT NULL, started_at timestamptz, "
        "finished_at timestamptz, heartbeat_at timestamptz, rows bigint NOT NULL, error text NOT NULL, "
        "runner text NOT NULL, cancel_requested boolean NOT NULL, statistics text, validation text)",
        "CREATE INDEX provender_jobs_by_project ON provender_jobs (project, table_name, created_at)",
        "CREATE INDEX provender_jobs_by_status ON provender_jobs (status)",
    ),
    ("ALTER TABLE provender_jobs ADD COLUMN lineage text",),
)
SCHEMA_VERSION = len(_MIGRATIONS)
_MIGRATION_LOCK = 0x70726F76  # pg_advisory_xact_lock key ("prov")
_POOL_OPTIONS = {"pool_min_size": 1, "pool_max_size": 8, "pool_timeout": 5.0}
_CONNECT_TIMEOUT_SECONDS = 5
_JOB_COLUMNS = ", ".join(jobs.COLUMNS)
_PROJECT_ROW = "SELECT version, updated_at, archived_at FROM provender_projects WHERE name = %s"


def split_url(url: str) -> tuple[str, dict[str, float]]:
    """Return the libpq URL and the pool options (``pool_*`` query parameters) of a registry URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        raise ConfigError("registry", "expected 'postgresql://user:password@host:5432/database'")
    query, pool = [], dict(_POOL_OPTIONS)
    libpq_keys = [option.keyword.decode() for option in psycopg.pq.Conninfo.get_defaults()]
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _POOL_OPTIONS and key not in libpq_keys:
            hint = did_you_mean(key, [*_POOL_OPTIONS, *libpq_keys]) or f" Pool options: {', '.join(_POOL_OPTIONS)}."
            raise ConfigError("registry", f"unknown URL parameter {key!r}.{hint}")
        if key in _POOL_OPTIONS:
            try:
                pool[key] = float(value)
            except ValueError:
                raise ConfigError("registry", f"{key} must be a number, got {value!r}") from None
        else:
            query.append((key, value))
    if not 1 <= pool["pool_min_size"] <= pool["pool_max_size"]:
        raise ConfigError("registry", "need 1 <= pool_min_size <= pool_max_size")
    if pool["pool_timeout"] <= 0:
        raise ConfigError("registry", "pool_timeout must be > 0 seconds")
    return urlunsplit(parts._replace(query=urlencode(query))), pool


def redacted(url: str) -> str:
    """Return ``host:port/database`` of a URL: what errors show instead of the credentials."""
    parts = urlsplit(url)
    return f"postgresql://{parts.hostname}:{parts.port or 5432}{parts.path}"


class PostgresRegistry:
    """A registry in a PostgreSQL database, shared by every process and machine that opens it."""

    is_remote: ClassVar[bool] = False

    def __init__(self, url: str) -> None:
        conninfo, pool = split_url(url)
        self.location = redacted(url)
        self._cache = SnapshotCache()
        kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in conninfo:
            kwargs["connect_timeout"] = _CONNECT_TIMEOUT_SECONDS
        self._pool = ConnectionPool(
            conninfo,
            min_size=int(pool["pool_min_size"]),
            max_size=int(pool["pool_max_size"]),
            timeout=pool["pool_timeout"],
            kwargs=kwargs,
            configure=_configure,
            check=ConnectionPool.check_connection,
            name="provender-registry",
            open=False,
        )
        try:
            try:
                self._pool.open(wait=True, timeout=pool["pool_timeout"])
            except PoolTimeout as exc:
                raise BackendError(
                    f"PostgreSQL registry {self.location} is unreachable: no connection within "
                    f"{pool['pool_timeout']:g}s (pool_timeout)",
                    retryable=True,
                ) from exc
            self._migrate()
        except BaseException:
            self._pool.close()
            raise

    @classmethod
    def from_url(cls, url: str, *, base_dir: Path, token: str | None = None) -> Self:  # noqa: ARG003 - the Protocol's
        """Open the registry in the database named by ``url`` (tables are created if missing)."""
        return cls(url)

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.close()

    # -- connections and transactions

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; database failures become BackendError, Provender errors pass."""
        try:
            with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise BackendError(f"PostgreSQL registry {self.location} is unreachable: {exc}", retryable=True) from exc
        except psycopg.OperationalError as exc:
            raise BackendError(f"PostgreSQL registry {self.location} failed: {exc}", retryable=True) from exc
        except psycopg.Error as exc:
            raise BackendError(f"PostgreSQL registry {self.location} failed: {exc}") from exc

    @contextmanager
    def _writing(self) -> Iterator[psycopg.Connection[Any]]:
        with self._connection() as conn, conn.transaction():
            yield conn

    def _migrate(self) -> None:
        with self._connection() as conn:
            if _schema_version(conn) == SCHEMA_VERSION:
                return
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                found = _schema_version(conn)
                if found > SCHEMA_VERSION:
                    raise RegistrySchemaError(self.location, found=found, supported=SCHEMA_VERSION)
                for statements in _MIGRATIONS[found:]:
                    for statement in statements:
                        conn.execute(statement.encode())
                conn.execute("CREATE TABLE IF NOT EXISTS provender_schema_version (version integer NOT NULL)")
                conn.execute("DELETE FROM provender_schema_version")
                conn.execute("INSERT INTO provender_schema_version (version) VALUES (%s)", (SCHEMA_VERSION,))

    def schema_version(self) -> int:
        """Return the schema version stored in the database."""
        with self._connection() as conn:
            return _schema_version(conn)

    # -- definitions

    def read(self, project: str, *, skip_malformed: bool = False) -> RegistrySnapshot:
        """Return the project's current snapshot (one consistent read, or the cached one if current).

        With ``skip_malformed``, undecodable definitions are left out and named (``skipped``).
        """
        with self._connection() as conn:
            row = conn.execute(_PROJECT_ROW, (project,)).fetchone()
            cached = self._cached(project, row)
            return cached if cached is not None else self._read_on(conn, project, skip_malformed=skip_malformed)

    def update(
        self,
        project: str,
        decide: Callable[[RegistrySnapshot], RegistryChange],
        *,
        actor: str = ANONYMOUS,
        expected_version: int | None = None,
    ) -> RegistrySnapshot:
        """Apply ``decide(latest)`` holding the project's row lock; nothing is written if it raises."""
        with self._connection() as conn:
            with conn.transaction() as transaction:
                conn.execute(
                    "INSERT INTO provender_projects (name, version) VALUES (%s, 0) ON CONFLICT (name) DO NOTHING",
                    (project,),
                )
                row = conn.execute(_PROJECT_ROW + " FOR UPDATE", (project,)).fetchone()
                snapshot = self._snapshot(conn, project, row)
                _check_writable(snapshot, expected_version)
                change = decide(snapshot)
                if change.is_empty:
                    raise psycopg.Rollback(transaction)  # the project row it may have inserted too
                self._write(conn, snapshot, change, actor)
            if change.is_empty:
                return snapshot
            return self._read_on(conn, project)

    def _read_on(
        self, conn: psycopg.Connection[Any], project: str, *, skip_malformed: bool = False
    ) -> RegistrySnapshot:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            row = conn.execute(_PROJECT_ROW, (project,)).fetchone()
            return self._snapshot(conn, project, row, skip_malformed=skip_malformed)

    def _cached(self, project: str, row: tuple[Any, ...] | None) -> RegistrySnapshot | None:
        if row is None:
            return RegistrySnapshot(project=project)  # never written: no definitions
        return self._cache.get(project, row[0], row[1], row[2])

    def _snapshot(
        self,
        conn: psycopg.Connection[Any],
        project: str,
        row: tuple[Any, ...] | None,
        *,
        skip_malformed: bool = False,
    ) -> RegistrySnapshot:
        """The snapshot ``row`` describes: cached, or read on ``conn`` (in the caller's transaction)."""
        if row is None:
            return RegistrySnapshot(project=project)  # never written: no definitions
        cached = self._cache.get(project, row[0], row[1], row[2])
        if cached is not None:
            return cached
        rows = conn.execute(
            "SELECT kind, name, spec FROM provender_definitions WHERE project = %s ORDER BY kind, name", (project,)
        ).fetchall()
        definitions, skipped = decode_stored(rows, codec.from_json, skip_malformed=skip_malformed)
        snapshot = snapshot_of(
            project, definitions, version=row[0], updated_at=row[1], archived_at=row[2], skipped=skipped
        )
        if skipped:  # never cached: a strict read of this version must still fail
            return snapshot
        return self._cache.put(snapshot)

    def list_projects(self, *, include_archived: bool = False) -> list[ProjectInfo]:
        """Return ``default`` and every project written to (archived ones if asked), sorted by name."""
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT name, version, updated_at, archived_at FROM provender_projects WHERE version > 0"
            ).fetchall()
        projects = {
            name: ProjectInfo(name=name, version=version, updated_at=at, archived_at=archived)
            for name, version, at, archived in rows
            if include_archived or archived is None
        }
        projects.setdefault(DEFAULT_PROJECT, ProjectInfo(name=DEFAULT_PROJECT, version=0, updated_at=None))
        return sorted(projects.values(), key=lambda p: p.name)

    def archive_project(self, project: str, *, actor: str = ANONYMOUS) -> ProjectInfo:
        """Make ``project`` read-only and hidden from listings; record it in the history."""
        if project == DEFAULT_PROJECT:
            raise RegistryConflictError(["the default project cannot be archived"], project=project)
        with self._writing() as conn:
            row = conn.execute(
                "SELECT version, archived_at FROM provender_projects WHERE name = %s AND version > 0 FOR UPDATE",
                (project,),
            ).fetchone()
            if row is None:
                known = [name for (name,) in conn.execute("SELECT name FROM provender_projects WHERE version > 0")]
                raise ProjectNotFoundError(project, known=known)
            if row[1] is not None:
                raise ProjectArchivedError(project=project)
            now, version = datetime.now(UTC), row[0] + 1
            conn.execute(
                "UPDATE provender_projects SET version = %s, updated_at = %s, archived_at = %s WHERE name = %s",
                (version, now, now, project),
            )
            item = ChangedItem(kind="project", name=project, action=ItemAction.CHANGED, fields=("archived",))
            _record(conn, project, version, now, actor, f"archive project {project}", (item,))
        return ProjectInfo(name=project, version=version, updated_at=now, archived_at=now)

    def history(self, project: str | None = None, *, limit: int = DEFAULT_HISTORY_LIMIT) -> list[RegistryChangeRecord]:
        """Return the latest ``limit`` changes, newest first (of ``project``, or of all)."""
        query = "SELECT project, version, changed_at, actor, description, items FROM provender_changes"
        params: tuple[object, ...] = ()
        if project is not None:
            query, params = query + " WHERE project = %s", (project,)
        with self._connection() as conn:
            rows = conn.execute(query + " ORDER BY id DESC LIMIT %s", (*params, max(limit, 0))).fetchall()
        return [
            RegistryChangeRecord(
                project=name,
                version_before=version - 1,
                version_after=version,
                changed_at=at,
                actor=actor,
                description=description,
                items=tuple(ChangedItem.from_dict(item) for item in json.loads(items)),
            )
            for name, version, at, actor, description, items in rows
        ]

    def _write(
        self, conn: psycopg.Connection[Any], snapshot: RegistrySnapshot, change: RegistryChange, actor: str
    ) -> None:
        project, now, version = snapshot.project, datetime.now(UTC), snapshot.version + 1
        conn.execute(
            "UPDATE provender_projects SET version = %s, updated_at = %s WHERE name = %s", (version, now, project)
        )
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO provender_definitions (project, kind, name, spec) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (project, kind, name) DO UPDATE SET spec = excluded.spec",
                [(project, record_kind(d), d.name, codec.to_json(d)) for d in change.put],
            )
            deletes = [(project, kind, name) for kind, name in deleted_records(change)]
            cursor.executemany(
                "DELETE FROM provender_definitions WHERE project = %s AND kind = %s AND name = %s", deletes
            )
        _record(conn, project, version, now, actor, change.description, describe_change(snapshot, change))

    # -- jobs

    def put_job(self, job: JobRecord) -> JobRecord:
        """Record a new job; refuse an id already recorded or an archived project."""
        jobs.check_new(job)
        with self._writing() as conn:
            row = conn.execute(
                "SELECT archived_at FROM provender_projects WHERE name = %s FOR SHARE", (job.project,)
            ).fetchone()
            if row is not None and row[0] is not None:
                raise ProjectArchivedError(project=job.project)
            inserted = conn.execute(
                f"INSERT INTO provender_jobs ({_JOB_COLUMNS}) VALUES ({', '.join(['%s'] * len(jobs.COLUMNS))}) "
                "ON CONFLICT (id) DO NOTHING",
                jobs.to_row(job),
            ).rowcount
            if inserted == 0:
                existing = _job_or_none(conn, job.id, lock=False)
                status = existing.status if existing is not None else None
                raise JobStateError(job.id, "a job with this id is already recorded", status=status)
        return job

    def update_job(
        self, job_id: str, *, if_status: Collection[JobStatus] | None = None, **changes: Unpack[JobFields]
    ) -> JobRecord:
        """Set some fields of a job holding its row lock (only if its status is in ``if_status``)."""
        with self._writing() as conn:
            job = _job_or_none(conn, job_id, lock=True)
            if job is None:
                raise JobNotFoundError(job_id)
            if if_status is not None and job.status not in if_status:
                expected = ", ".join(sorted(if_status))
                raise JobStateError(job_id, f"is {job.status}, not {expected}", status=job.status)
            updated = jobs.with_changes(job, changes)
            _store_job(conn, updated)
        return updated

    def get_job(self, job_id: str) -> JobRecord:
        """Return the job with id ``job_id``."""
        with self._connection() as conn:
            job = _job_or_none(conn, job_id, lock=False)
        if job is None:
            raise JobNotFoundError(job_id)
        return job

    def list_jobs(self, project: str, *, table: str | None = None, include_finished: bool = False) -> list[JobRecord]:
        """Return the project's jobs, newest first."""
        query = f"SELECT {_JOB_COLUMNS} FROM provender_jobs WHERE project = %s"
        params: list[object] = [project]
        if table is not None:
            query += " AND table_name = %s"
            params.append(table)
        if not include_finished:
            query += " AND NOT (status = ANY(%s))"
            params.append(sorted(jobs.FINISHED_STATUSES))
        with self._connection() as conn:
            rows = conn.execute(query + " ORDER BY created_at DESC, id", params).fetchall()
        return [jobs.from_row(row) for row in rows]

    def fail_stale_jobs(self, older_than: timedelta) -> list[JobRecord]:
        """Mark FAILED the RUNNING jobs whose heartbeat is older than ``older_than``."""
        with self._writing() as conn:
            now = datetime.now(UTC)
            rows = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM provender_jobs WHERE status = %s "
                "AND coalesce(heartbeat_at, started_at, created_at) < %s FOR UPDATE SKIP LOCKED",
                (JobStatus.RUNNING.value, now - older_than),
            ).fetchall()
            failed = [jobs.stale_failure(jobs.from_row(row), now) for row in rows]
            for job in failed:
                _store_job(conn, job)
        return failed


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SET TIME ZONE 'UTC'")


def _schema_version(conn: psycopg.Connection[Any]) -> int:
    # A plain MVCC query, not to_regclass(): a catalog cache lookup may miss a table that the
    # process holding the migration lock has just committed.
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM information_schema.tables "
        "WHERE table_schema = current_schema() AND table_name = 'provender_schema_version')"
    ).fetchone()
    if row is None or not row[0]:
        return 0
    found = conn.execute("SELECT max(version) FROM provender_schema_version").fetchone()
    return 0 if found is None or found[0] is None else int(found[0])


def _check_writable(snapshot: RegistrySnapshot, expected_version: int | None) -> None:
    if snapshot.archived_at is not None:
        raise ProjectArchivedError(project=snapshot.project)
    if expected_version is not None and expected_version != snapshot.version:
        raise RegistryVersionConflictError(
            project=snapshot.project, expected_version=expected_version, actual_version=snapshot.version
        )


def _record(  # noqa: PLR0913, PLR0917 - the columns of one audit row
    conn: psycopg.Connection[Any],
    project: str,
    version: int,
    now: datetime,
    actor: str,
    description: str,
    items: tuple[ChangedItem, ...],
) -> None:
    conn.execute(
        "INSERT INTO provender_changes (project, version, changed_at, actor, description, items) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        (project, version, now, actor, description, json.dumps([i.to_dict() for i in items])),
    )


def _job_or_none(conn: psycopg.Connection[Any], job_id: str, *, lock: bool) -> JobRecord | None:
    query = f"SELECT {_JOB_COLUMNS} FROM provender_jobs WHERE id = %s" + (" FOR UPDATE" if lock else "")
    row = conn.execute(query.encode(), (job_id,)).fetchone()
    return None if row is None else jobs.from_row(row)


def _store_job(conn: psycopg.Connection[Any], job: JobRecord) -> None:
    assignments = ", ".join(f"{column} = %s" for column in jobs.COLUMNS[1:])
    conn.execute(f"UPDATE provender_jobs SET {assignments} WHERE id = %s".encode(), (*jobs.to_row(job)[1:], job.id))
