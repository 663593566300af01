"""The registry through the core service: ``registry: http://core:6565`` (or ``Client(core_url=...)``).

Every :class:`~provender.registry.store.RegistryStore` method is one request to the core
service's ``/v1/`` API, and its errors come back as the same exceptions with the same fields
(:mod:`provender.wire.errors`), so everything built on the Protocol behaves as over a local registry.

:meth:`HttpRegistry.update` is optimistic: it reads the latest snapshot, runs ``decide`` on it
here, and sends the change with the version it was computed against; the service checks it again
under its lock. If the registry moved on meanwhile (409), it reads and decides again, unless the
caller named ``expected_version`` itself, who then gets the RegistryVersionConflictError. So
concurrent applies through the service serialize and none is lost, as with a local registry.

The bearer token (``core_token``, ``PROVENDER_CORE_TOKEN``) is sent with every request. A
service that cannot be reached is a retryable BackendError. One keep-alive connection per thread.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar, Self, Unpack
from urllib.parse import quote, urlencode, urlsplit

from provender.errors import BackendError, ConfigError, DataError, ProjectArchivedError, RegistryVersionConflictError
from provender.registry import wire
from provender.registry.jobs import JobFields, JobRecord, JobStatus
from provender.registry.store import (
    ANONYMOUS,
    DEFAULT_HISTORY_LIMIT,
    ProjectInfo,
    RegistryChange,
    RegistryChangeRecord,
    RegistrySnapshot,
)
from provender.wire.errors import rebuild_error

try:
    import orjson
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    from provender.errors import MissingExtraError

    raise MissingExtraError("http", extra="serving", missing=exc.name or "?") from exc

DEFAULT_TIMEOUT_SECONDS = 30.0
MAX_UPDATE_ATTEMPTS = 50
_RETRY_PAUSE_SECONDS = 0.01


class HttpRegistry:
    """A registry served by ``provender core`` at ``url``.

    Args:
        url: ``http(s)://host:port`` of the core service (a path prefix is kept).
        token: the bearer token, if the service requires one.
        timeout_seconds: how long one request may take.
    """

    is_remote: ClassVar[bool] = True

    def __init__(self, url: str, *, token: str | None = None, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ConfigError("registry", f"{url!r} is not a core service URL; expected http://host:6565")
        self.url = url
        self._secure = parts.scheme.lower() == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._secure else 80)
        self._prefix = parts.path.rstrip("/")
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._timeout = timeout_seconds
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._snapshots: dict[str, RegistrySnapshot] = {}

    @classmethod
    def from_url(cls, url: str, *, base_dir: Path, token: str | None = None) -> Self:  # noqa: ARG003 - the Protocol's
        """Connect to the core service at ``url`` (nothing is sent until the first call)."""
        return cls(url, token=token)

    # -- definitions

    def read(self, project: str, *, skip_malformed: bool = False) -> RegistrySnapshot:  # noqa: ARG002
        """Return the project's current snapshot.

        ``skip_malformed`` has no effect here: the core service decodes, and refuses a project
        holding an undecodable definition (its readers keep their last good snapshot).

        The last snapshot of each project is kept, decoded; the service is asked whether its
        version is still current (``If-None-Match``) and answers 304 without a body if so, so a
        read of an unchanged project costs one small round trip, whatever its size.
        """
        with self._lock:
            cached = self._snapshots.get(project)
        headers = None if cached is None else {"If-None-Match": f'"{cached.version}"'}
        status, answer = self._request("GET", f"/v1/projects/{_q(project)}/registry", headers=headers)
        if status == 304 and cached is not None:
            return cached
        snapshot = wire.snapshot_from_dict(answer)
        with self._lock:
            self._snapshots[project] = snapshot
        return snapshot

    def update(
        self,
        project: str,
        decide: Callable[[RegistrySnapshot], RegistryChange],
        *,
        actor: str = ANONYMOUS,
        expected_version: int | None = None,
    ) -> RegistrySnapshot:
        """Run ``decide`` on the latest snapshot and commit its change if the registry has not moved.

        Raises:
            RegistryVersionConflictError: ``expected_version`` is not the current version.
            ProjectArchivedError: the project is archived.
        """
        for _ in range(MAX_UPDATE_ATTEMPTS):
            snapshot = self.read(project)
            if snapshot.archived_at is not None:
                raise ProjectArchivedError(project=project)
            if expected_version is not None and expected_version != snapshot.version:
                raise RegistryVersionConflictError(
                    project=project, expected_version=expected_version, actual_version=snapshot.version
                )
            change = decide(snapshot)
            if change.is_empty:
                return snapshot
            body = {"expected_version": snapshot.version, "actor": actor, "change": wire.change_to_dict(change)}
            try:
                updated = wire.snapshot_from_dict(self._call("POST", f"/v1/projects/{_q(project)}/changes", body))
            except RegistryVersionConflictError:
                if expected_version is not None:
                    raise
                time.sleep(_RETRY_PAUSE_SECONDS)
                continue
            with self._lock:
                self._snapshots[project] = updated
            return updated
        raise BackendError(
            f"registry {self.url}: project {project!r} kept changing during {MAX_UPDATE_ATTEMPTS} attempts to "
            "update it; try again",
            retryable=True,
        )

    def list_projects(self, *, include_archived: bool = False) -> list[ProjectInfo]:
        """Return the projects (those the token may read), sorted by name."""
        query = "?include_archived=true" if include_archived else ""
        answer = self._call("GET", f"/v1/projects{query}")
        return [wire.project_from_dict(item) for item in _items(answer, "projects")]

    def archive_project(self, project: str, *, actor: str = ANONYMOUS) -> ProjectInfo:
        """Archive ``project`` (admin role)."""
        return wire.project_from_dict(self._call("POST", f"/v1/projects/{_q(project)}/archive", {"actor": actor}))

    def history(self, project: str | None = None, *, limit: int = DEFAULT_HISTORY_LIMIT) -> list[RegistryChangeRecord]:
        """Return the latest ``limit`` changes, newest first, of one project or of all."""
        path = "/v1/history" if project is None else f"/v1/projects/{_q(project)}/history"
        answer = self._call("GET", f"{path}?limit={max(limit, 0)}")
        return [wire.record_from_dict(item) for item in _items(answer, "changes")]

    # -- jobs

    def put_job(self, job: JobRecord) -> JobRecord:
        """Record a new job."""
        return wire.job_from_dict(self._call("POST", "/v1/jobs", wire.job_to_dict(job)))

    def update_job(
        self, job_id: str, *, if_status: Collection[JobStatus] | None = None, **changes: Unpack[JobFields]
    ) -> JobRecord:
        """Set some fields of a job, if its status is one of ``if_status``."""
        body = {
            "if_status": None if if_status is None else sorted(JobStatus(s).value for s in if_status),
            "changes": wire.job_changes_to_dict(changes),
        }
        return wire.job_from_dict(self._call("PATCH", f"/v1/jobs/{_q(job_id)}", body))

    def get_job(self, job_id: str) -> JobRecord:
        """Return a job record."""
        return wire.job_from_dict(self._call("GET", f"/v1/jobs/{_q(job_id)}"))

    def list_jobs(self, project: str, *, table: str | None = None, include_finished: bool = False) -> list[JobRecord]:
        """Return a project's jobs, newest first."""
        query = {"include_finished": "true" if include_finished else "false", **({"table": table} if table else {})}
        answer = self._call("GET", f"/v1/projects/{_q(project)}/jobs?{urlencode(query)}")
        return [wire.job_from_dict(item) for item in _items(answer, "jobs")]

    def fail_stale_jobs(self, older_than: timedelta) -> list[JobRecord]:
        """Fail RUNNING jobs without a heartbeat for ``older_than`` (the service also does it by itself)."""
        answer = self._call("POST", "/v1/jobs/fail-stale", {"older_than_seconds": older_than.total_seconds()})
        return [wire.job_from_dict(item) for item in _items(answer, "jobs")]

    def cancel_job(self, job_id: str) -> JobRecord:
        """Cancel a job (a PENDING one ends CANCELLED, a RUNNING one is asked to stop)."""
        return wire.job_from_dict(self._call("POST", f"/v1/jobs/{_q(job_id)}/cancel"))

    def submit_ingestion(
        self,
        project: str,
        table: str,
        *,
        start: datetime,
        end: datetime,
        batch_rows: int,
        validation_policy: str | None = None,
    ) -> JobRecord:
        """Start an offline-to-online ingestion job inside the core service; return its record."""
        body: dict[str, object] = {
            "table": table,
            "start": start.astimezone(UTC).isoformat(),
            "end": end.astimezone(UTC).isoformat(),
            "batch_rows": batch_rows,
        }
        if validation_policy is not None:
            body["validation_policy"] = validation_policy
        return wire.job_from_dict(self._call("POST", f"/v1/projects/{_q(project)}/ingestion-jobs", body))

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._local = threading.local()

    # -- transport

    def _call(self, method: str, path: str, body: Mapping[str, object] | None = None) -> dict[str, object]:
        return self._request(method, path, body)[1]

    def _request(
        self,
        method: str,
        path: str,
        body: Mapping[str, object] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, object]]:
        payload = None if body is None else orjson.dumps(body)
        status, raw = self._send(method, self._prefix + path, payload, headers)
        if status == 304:
            return status, {}
        try:
            answer = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            answer = {}
        if not isinstance(answer, dict):
            raise DataError(f"registry {self.url}: {method} {path} answered {type(answer).__name__}, not an object")
        if status != 200:
            detail = answer.get("error")
            detail = detail if isinstance(detail, dict) else {}
            fields = detail.get("fields")
            raise rebuild_error(
                str(detail.get("type", "")),
                code=str(detail.get("code", "UNAVAILABLE" if status >= 500 else "")),
                message=str(detail.get("message") or f"HTTP {status} from {self.url} for {method} {path}"),
                fields=fields if isinstance(fields, dict) else None,
            )
        return status, answer

    def _send(
        self, method: str, path: str, payload: bytes | None, headers: Mapping[str, str] | None
    ) -> tuple[int, bytes]:
        sent = self._headers if headers is None else {**self._headers, **headers}
        for _ in range(2):
            connection, reused = self._connection()
            try:
                connection.request(method, path, body=payload, headers=sent)
                response = connection.getresponse()
                answer = response.status, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                # A keep-alive connection that the service closed while idle: the request never
                # reached it, so it is sent again once, on a new connection.
                self._drop(connection)
                if not reused:
                    raise self._unreachable(exc) from exc
                continue
            except (OSError, http.client.HTTPException) as exc:
                self._drop(connection)
                raise self._unreachable(exc) from exc
            self._local.reused = True
            return answer
        raise AssertionError("unreachable")  # pragma: no cover

    def _drop(self, connection: http.client.HTTPConnection) -> None:
        connection.close()
        self._local.connection = None
        self._local.reused = False

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            cls = http.client.HTTPSConnection if self._secure else http.client.HTTPConnection
            connection = cls(self._host, self._port, timeout=self._timeout)
            self._local.connection, self._local.reused = connection, False
            with self._lock:
                self._connections.append(connection)
        return connection, bool(getattr(self._local, "reused", False))

    def _unreachable(self, exc: BaseException) -> BackendError:
        return BackendError(
            f"Core service {self.url}: {type(exc).__name__}: {exc}. Check that it runs and is reachable; "
            "reads are safe to retry.",
            retryable=True,
        )


def _q(name: str) -> str:
    return quote(name, safe="")


def _items(answer: Mapping[str, object], name: str) -> list[Mapping[str, object]]:
    items = answer.get(name)
    if not isinstance(items, list):
        raise DataError(f"the core service's answer lacks the list {name!r}")
    return [item for item in items if isinstance(item, dict)]
