"""What the core service does, transport aside: registry operations checked against the caller's roles.

Every method takes the caller's :class:`~provender.auth.Grant` and the request's values and
returns JSON-ready dicts (:mod:`provender.registry.wire`). Roles: ``read`` lists and gets,
``write`` applies, deletes and starts or changes jobs, ``admin`` archives projects. The changes
are decided under the registry's lock (``RegistryStore.update``), so the service holds no state
of its own and any number of replicas may share one registry.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, cast

from provender.auth import ALL_PROJECTS, Authenticator, Grant, Role, require
from provender.client.jobs import cancel_job
from provender.config import Settings
from provender.definitions import Entity, FeatureTable
from provender.definitions.expect import VALIDATION_POLICIES
from provender.errors import ConfigError, DataError, EntityNotFoundError, FeatureTableNotFoundError
from provender.ingestion.batch import DEFAULT_BATCH_ROWS
from provender.registry import wire
from provender.registry.diff import ApplyPlan, check_change, plan_apply, plan_delete_entity, plan_delete_feature_table
from provender.registry.jobs import JobStatus
from provender.registry.store import ANONYMOUS, RegistryChange, RegistrySnapshot, RegistryStore
from provender.runtime import Runtime
from provender.source_roots import SourceRoots

if TYPE_CHECKING:
    from provender.core.jobs import CoreJobs

log = logging.getLogger(__name__)

JsonDict = dict[str, object]
MAX_HISTORY_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Versioned:
    """An answer with an ETag; ``body`` None means "not modified" (304)."""

    etag: str
    body: JsonDict | None


def open_registry(settings: Settings) -> RegistryStore:
    """Open the registry the core service serves (SQLite or PostgreSQL, never another core service).

    Raises:
        ConfigError: ``registry`` points at a core service.
    """
    runtime = Runtime(settings)
    if runtime.registry_class.is_remote:
        raise ConfigError(
            "registry",
            f"the core service must own its registry (sqlite:/// or postgresql://), not {settings.registry!r}",
        )
    return runtime.open_registry()


class CoreService:
    """The registry, served: one method per endpoint, each checking the caller's role first.

    Args:
        store: the registry.
        auth: who may do what (``core.auth``).
        jobs: runs jobs inside the service (None: ``run_on="core"`` is refused).
        roots: the sources an apply may name (the core's ``sources.allowed_roots``; default: any).
    """

    def __init__(
        self,
        store: RegistryStore,
        auth: Authenticator,
        *,
        jobs: CoreJobs | None = None,
        roots: SourceRoots | None = None,
    ) -> None:
        self.store = store
        self.auth = auth
        self.jobs = jobs
        self.roots = roots

    def actor(self, grant: Grant, requested: object) -> str:
        """Who a change is recorded as: the token's subject, or (auth off) the name the client sent."""
        if self.auth.is_enabled:
            return grant.subject
        return requested if isinstance(requested, str) and requested else ANONYMOUS

    # -- projects

    def list_projects(self, grant: Grant, *, include_archived: bool) -> JsonDict:
        """``GET /v1/projects``: the projects the caller may read."""
        infos = self.store.list_projects(include_archived=include_archived)
        return {"projects": [wire.project_to_dict(p) for p in infos if grant.allows(p.name)]}

    def archive_project(self, grant: Grant, project: str, *, actor: object) -> JsonDict:
        """``POST /v1/projects/{project}/archive`` (admin)."""
        require(grant, project, Role.ADMIN)
        info = self.store.archive_project(project, actor=self.actor(grant, actor))
        log.info("archived project=%s version=%d", project, info.version)
        return wire.project_to_dict(info)

    # -- definitions

    def snapshot(self, grant: Grant, project: str, *, if_none_match: str | None = None) -> Versioned:
        """``GET /v1/projects/{project}/registry``: everything in the project, at one version.

        The answer's ETag is the version; with ``If-None-Match`` naming the current one, the
        answer is 304 and no body (a client's cached snapshot is still the registry's).
        """
        require(grant, project)
        snapshot = self.store.read(project)
        etag = f'"{snapshot.version}"'
        if if_none_match == etag:
            return Versioned(etag=etag, body=None)
        return Versioned(etag=etag, body=wire.snapshot_to_dict(snapshot))

    def list_definitions(self, grant: Grant, project: str, *, kind: str) -> JsonDict:
        """``GET /v1/projects/{project}/entities`` or ``.../feature-tables``, sorted by name."""
        require(grant, project)
        snapshot = self.store.read(project)
        found = snapshot.entities if kind == "entities" else snapshot.feature_tables
        items = [found[name] for name in sorted(found)]
        return {"version": snapshot.version, kind: wire.definitions_to_list(items)}

    def get_definition(self, grant: Grant, project: str, *, kind: str, name: str) -> JsonDict:
        """``GET /v1/projects/{project}/entities/{name}`` or ``.../feature-tables/{name}``."""
        require(grant, project)
        snapshot = self.store.read(project)
        definition: Entity | FeatureTable | None
        if kind == "entities":
            definition = snapshot.entities.get(name)
            if definition is None:
                raise EntityNotFoundError(name, project=project, known=list(snapshot.entities))
        else:
            definition = snapshot.feature_tables.get(name)
            if definition is None:
                raise FeatureTableNotFoundError(name, project=project, known=list(snapshot.feature_tables))
        return {"version": snapshot.version, "definition": wire.definitions_to_list([definition])[0]}

    def plan(self, grant: Grant, project: str, body: Mapping[str, object]) -> JsonDict:
        """``POST /v1/projects/{project}/plan``: what an apply would do, changing nothing."""
        require(grant, project)
        snapshot = self.store.read(project)
        plan = plan_apply(snapshot, wire.definitions_from_list(body.get("definitions")))
        return {**wire.plan_to_dict(plan), "version": snapshot.version}

    def apply(self, grant: Grant, project: str, body: Mapping[str, object]) -> JsonDict:
        """``POST /v1/projects/{project}/apply`` (write): plan and commit at once, all or none.

        With ``expected_version`` (the version the caller planned against), a registry changed
        meanwhile refuses the apply with RegistryVersionConflictError (409).
        """
        require(grant, project, Role.WRITE)
        definitions = wire.definitions_from_list(body.get("definitions"))
        if self.roots is not None:
            self.roots.check_definitions(definitions)
        planned: list[ApplyPlan] = []

        def decide(snapshot: RegistrySnapshot) -> RegistryChange:
            planned.append(plan_apply(snapshot, definitions))
            return planned[-1].to_change()

        snapshot = self.store.update(
            project, decide, actor=self.actor(grant, body.get("actor")), expected_version=_expected(body)
        )
        return {**wire.plan_to_dict(planned[-1]), "version": snapshot.version}

    def change(self, grant: Grant, project: str, body: Mapping[str, object]) -> JsonDict:
        """``POST /v1/projects/{project}/changes`` (write): commit a change computed by a remote client.

        The change must name the version it was computed against; it is checked again against
        the registry's rules under the lock, so no client can break a reference.
        """
        require(grant, project, Role.WRITE)
        expected = _expected(body)
        if expected is None:
            raise DataError("field 'expected_version' is required: the version the change was computed against")
        change = wire.change_from_dict(_mapping(body, "change"))
        if self.roots is not None:
            self.roots.check_definitions(change.put)
        snapshot = self.store.update(
            project,
            lambda latest: check_change(latest, change),
            actor=self.actor(grant, body.get("actor")),
            expected_version=expected,
        )
        return wire.snapshot_to_dict(snapshot)

    def delete(self, grant: Grant, project: str, *, kind: str, name: str, query: Mapping[str, str]) -> JsonDict:
        """``DELETE /v1/projects/{project}/entities/{name}`` or ``.../feature-tables/{name}`` (write)."""
        require(grant, project, Role.WRITE)
        plan = plan_delete_entity if kind == "entities" else plan_delete_feature_table
        snapshot = self.store.update(
            project,
            lambda latest: plan(latest, name),
            actor=self.actor(grant, query.get("actor")),
            expected_version=_expected(query),
        )
        return {"version": snapshot.version}

    def history(self, grant: Grant, project: str | None, *, limit: int) -> JsonDict:
        """``GET /v1/history`` (the projects the caller may read) or ``/v1/projects/{project}/history``."""
        if project is not None:
            require(grant, project)
        limit = min(max(limit, 0), MAX_HISTORY_LIMIT)
        records = self.store.history(project, limit=limit)
        if project is None and not grant.allows(ALL_PROJECTS):
            records = [r for r in records if grant.allows(r.project)]
        return {"changes": [wire.record_to_dict(r) for r in records]}

    # -- job records

    def put_job(self, grant: Grant, body: Mapping[str, object]) -> JsonDict:
        """``POST /v1/jobs`` (write in the job's project): record a new job."""
        job = wire.job_from_dict(body)
        require(grant, job.project, Role.WRITE)
        return wire.job_to_dict(self.store.put_job(job))

    def get_job(self, grant: Grant, job_id: str) -> JsonDict:
        """``GET /v1/jobs/{id}`` (read in the job's project)."""
        job = self.store.get_job(job_id)
        require(grant, job.project)
        return wire.job_to_dict(job)

    def update_job(self, grant: Grant, job_id: str, body: Mapping[str, object]) -> JsonDict:
        """``PATCH /v1/jobs/{id}`` (write): set some fields, if the job's status is one of ``if_status``."""
        require(grant, self.store.get_job(job_id).project, Role.WRITE)
        if_status = body.get("if_status")
        statuses = None if if_status is None else {JobStatus(str(s)) for s in cast(Sequence[object], if_status)}
        changes = wire.job_changes_from_dict(_mapping(body, "changes"))
        job = self.store.update_job(job_id, if_status=statuses, **changes)  # type: ignore[arg-type]
        return wire.job_to_dict(job)

    def cancel_job(self, grant: Grant, job_id: str) -> JsonDict:
        """``POST /v1/jobs/{id}/cancel`` (write): a pending job ends CANCELLED, a running one is asked to stop."""
        job = self.store.get_job(job_id)
        require(grant, job.project, Role.WRITE)
        return wire.job_to_dict(cancel_job(self.store, job_id))

    def list_jobs(self, grant: Grant, project: str, query: Mapping[str, str]) -> JsonDict:
        """``GET /v1/projects/{project}/jobs?table=&include_finished=``."""
        require(grant, project)
        jobs = self.store.list_jobs(
            project, table=query.get("table") or None, include_finished=_flag(query, "include_finished")
        )
        return {"jobs": [wire.job_to_dict(job) for job in jobs]}

    def start_ingestion(self, grant: Grant, project: str, body: Mapping[str, object]) -> JsonDict:
        """``POST /v1/projects/{project}/ingestion-jobs`` (write): run offline-to-online ingestion here."""
        require(grant, project, Role.WRITE)
        if self.jobs is None:
            raise ConfigError("run_on", "this core service runs no jobs")
        table = body.get("table")
        if not isinstance(table, str) or not table:
            raise DataError("field 'table' must name a feature table")
        start = wire.parse_time(body.get("start"), name="start")
        end = wire.parse_time(body.get("end"), name="end")
        if start is None or end is None:
            raise DataError("fields 'start' and 'end' are required (ISO 8601 times)")
        batch_rows = body.get("batch_rows", DEFAULT_BATCH_ROWS)
        if not isinstance(batch_rows, int) or isinstance(batch_rows, bool) or batch_rows <= 0:
            raise DataError(f"field 'batch_rows' must be a positive integer, got {batch_rows!r}")
        policy = body.get("validation_policy")
        if policy is not None and policy not in VALIDATION_POLICIES:
            raise DataError(
                f"field 'validation_policy' must be one of {list(VALIDATION_POLICIES)} (or absent), got {policy!r}"
            )
        record = self.jobs.start_ingestion(
            project, table, start=start, end=end, batch_rows=batch_rows, validation_policy=policy
        )
        return wire.job_to_dict(record)

    def fail_stale_jobs(self, grant: Grant, body: Mapping[str, object]) -> JsonDict:
        """``POST /v1/jobs/fail-stale`` (admin of every project): fail RUNNING jobs without a heartbeat."""
        require(grant, ALL_PROJECTS, Role.ADMIN)
        seconds = body.get("older_than_seconds")
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0:
            raise DataError(f"field 'older_than_seconds' must be a positive number, got {seconds!r}")
        failed = self.store.fail_stale_jobs(timedelta(seconds=seconds))
        return {"jobs": [wire.job_to_dict(job) for job in failed]}

    def check_ready(self) -> None:
        """Raise unless the registry answers (a listing of projects)."""
        self.store.list_projects()

    def close(self) -> None:
        """Close the registry."""
        self.store.close()


def _mapping(body: Mapping[str, object], name: str) -> Mapping[str, object]:
    value = body.get(name)
    if not isinstance(value, Mapping):
        raise DataError(f"field {name!r} must be an object")
    return value


def _expected(values: Mapping[str, object]) -> int | None:
    value = values.get("expected_version")
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise DataError(f"field 'expected_version' must be a version number (0 or more), got {value!r}")
    return value


def _flag(query: Mapping[str, str], name: str) -> bool:
    return query.get(name, "").lower() in ("1", "true", "yes")
