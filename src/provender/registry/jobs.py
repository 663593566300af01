"""Job records: ingestion and retrieval jobs as the registry keeps them.

A job is recorded when it is submitted (PENDING), set RUNNING by its runner, which then beats a
heartbeat, and ends SUCCEEDED, FAILED or CANCELLED. A RUNNING job whose heartbeat stops is
failed by :meth:`RegistryStore.fail_stale_jobs`, so a dead runner never leaves a job running.
The store only persists records; starting, running and cancelling jobs is the job service's work.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import TypedDict, cast

from provender.definitions.jobs import JobStatus as JobStatus  # one status enum: engine jobs and job records
from provender.errors import JobStateError


class JobKind(StrEnum):
    """What a job does."""

    OFFLINE_TO_ONLINE = "offline_to_online"
    STREAM_TO_ONLINE = "stream_to_online"
    HISTORICAL = "historical"


FINISHED_STATUSES = frozenset(status for status in JobStatus if status.is_finished)


def is_finished(status: JobStatus) -> bool:
    """Whether a job in ``status`` has ended (it will not change status again)."""
    return status.is_finished


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRecord:
    """One job as recorded in the registry.

    Attributes:
        id: unique id (see :func:`new_job_id`).
        kind: what the job does.
        project: the project it works in.
        table: the feature table it writes or reads ("" if none, e.g. a multi-table retrieval).
        status: where the job is in its life.
        created_at / started_at / finished_at: when it was recorded, started and ended (UTC).
        heartbeat_at: the runner's last sign of life (UTC).
        rows: rows written (ingestion) or produced (retrieval) so far.
        error: why it failed, or "".
        runner: where it runs: ``"core"`` or ``"<host>:<pid>"``.
        cancel_requested: a cancel was asked for; the runner stops and sets CANCELLED.
        statistics / validation: JSON-ready reports, for the statistics and validation features.
        lineage: what the job read, JSON-ready: ``{"sources": [...]}``, per feature table its
            files (path, size, modified) and Delta version (:mod:`provender.offline.lineage`).
    """

    id: str
    kind: JobKind
    project: str
    table: str = ""
    status: JobStatus = JobStatus.PENDING
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None
    rows: int = 0
    error: str = ""
    runner: str = ""
    cancel_requested: bool = False
    statistics: Mapping[str, object] | None = None
    validation: Mapping[str, object] | None = None
    lineage: Mapping[str, object] | None = None


class JobFields(TypedDict, total=False):
    """The fields :meth:`RegistryStore.update_job` may set (id, kind, project, table are fixed)."""

    status: JobStatus
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    rows: int
    error: str
    runner: str
    cancel_requested: bool
    statistics: Mapping[str, object] | None
    validation: Mapping[str, object] | None
    lineage: Mapping[str, object] | None


UPDATABLE_FIELDS = frozenset(JobFields.__annotations__)

# The column order every backend stores a job in.
COLUMNS = (
    "id",
    "kind",
    "project",
    "table_name",
    "status",
    "created_at",
    "started_at",
    "finished_at",
    "heartbeat_at",
    "rows",
    "error",
    "runner",
    "cancel_requested",
    "statistics",
    "validation",
    "lineage",
)


def new_job_id() -> str:
    """Return a fresh job id (``job-`` and 16 hex digits)."""
    return f"job-{uuid.uuid4().hex[:16]}"


def utc_now() -> datetime:
    """Return the current time in UTC."""
    return datetime.now(UTC)


def with_changes(job: JobRecord, changes: Mapping[str, object]) -> JobRecord:
    """Return ``job`` with ``changes`` set; refuse fields that cannot change or are misspelt."""
    unknown = sorted(set(changes) - UPDATABLE_FIELDS)
    if unknown:
        raise JobStateError(
            job.id, f"cannot set {', '.join(unknown)}; settable fields: {', '.join(sorted(UPDATABLE_FIELDS))}"
        )
    updated = replace(job, **changes)  # type: ignore[arg-type]
    updated = replace(updated, status=JobStatus(updated.status))
    _check_times(updated)
    return updated


def check_new(job: JobRecord) -> None:
    """Refuse a job record that cannot be stored as given (naming the field)."""
    if not job.id:
        raise JobStateError(job.id, "field 'id' must not be empty")
    JobKind(job.kind)
    JobStatus(job.status)
    _check_times(job)


def _check_times(job: JobRecord) -> None:
    for name in ("created_at", "started_at", "finished_at", "heartbeat_at"):
        moment = getattr(job, name)
        if moment is not None and (not isinstance(moment, datetime) or moment.tzinfo is None):
            raise JobStateError(job.id, f"field {name!r} must be a timezone-aware datetime, got {moment!r}")


def json_text(value: Mapping[str, object] | None) -> str | None:
    """Serialize a statistics / validation / lineage report for storage."""
    return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def json_value(text: str | None) -> Mapping[str, object] | None:
    """Parse a stored statistics / validation / lineage report."""
    return None if text is None else cast(Mapping[str, object], json.loads(text))


def to_row(job: JobRecord) -> tuple[object, ...]:
    """Return the job's values in :data:`COLUMNS` order (reports as JSON text, times as datetimes)."""
    return (
        job.id,
        job.kind.value,
        job.project,
        job.table,
        job.status.value,
        job.created_at,
        job.started_at,
        job.finished_at,
        job.heartbeat_at,
        job.rows,
        job.error,
        job.runner,
        job.cancel_requested,
        json_text(job.statistics),
        json_text(job.validation),
        json_text(job.lineage),
    )


def from_row(row: tuple[object, ...]) -> JobRecord:
    """Rebuild a job from values in :data:`COLUMNS` order (times already parsed to datetimes)."""
    values = dict(zip(COLUMNS, row, strict=True))
    return JobRecord(
        id=cast(str, values["id"]),
        kind=JobKind(cast(str, values["kind"])),
        project=cast(str, values["project"]),
        table=cast(str, values["table_name"]),
        status=JobStatus(cast(str, values["status"])),
        created_at=cast(datetime, values["created_at"]),
        started_at=cast("datetime | None", values["started_at"]),
        finished_at=cast("datetime | None", values["finished_at"]),
        heartbeat_at=cast("datetime | None", values["heartbeat_at"]),
        rows=cast(int, values["rows"]),
        error=cast(str, values["error"]),
        runner=cast(str, values["runner"]),
        cancel_requested=bool(values["cancel_requested"]),
        statistics=json_value(cast("str | None", values["statistics"])),
        validation=json_value(cast("str | None", values["validation"])),
        lineage=json_value(cast("str | None", values["lineage"])),
    )


def stale_failure(job: JobRecord, now: datetime) -> JobRecord:
    """Return ``job`` FAILED because its runner stopped beating."""
    last = job.heartbeat_at or job.started_at or job.created_at
    return replace(
        job,
        status=JobStatus.FAILED,
        finished_at=now,
        error=f"runner died: no heartbeat from {job.runner or 'its runner'} since {last.isoformat()}",
    )
