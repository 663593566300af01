"""The registry's storage seam: a snapshot per project and one atomic read-modify-write.

Backends (``sqlite.py``, ``postgres.py``, the core service) only persist; the rules of what may
change live in ``diff.py`` and run inside :meth:`RegistryStore.update`, against the latest state,
under the backend's exclusive lock. So concurrent applies serialize and none is lost.

Every change is audited (:class:`RegistryChangeRecord`: who, when, the version before and after,
what changed); archived projects are read-only; job records (``jobs.py``) live beside the
definitions so that every process sharing a registry sees the same jobs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar, Protocol, Self, Unpack

from provender.definitions import Definition, Entity, FeatureTable, OnDemandFeatures
from provender.registry.changes import field_diff
from provender.registry.jobs import JobFields, JobRecord, JobStatus

DEFAULT_PROJECT = "default"
ANONYMOUS = "anonymous"
DEFAULT_HISTORY_LIMIT = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrySnapshot:
    """Everything registered in one project, at one registry version.

    Attributes:
        version: bumped by every change; 0 for a project never written to.
        updated_at: when the last change happened (UTC), or None.
        archived_at: when the project was archived (read-only since), or None.
        skipped: only from ``read(project, skip_malformed=True)``: the stored definitions that
            could not be decoded and were left out (``"feature_table 'trips'"`` -> the error).
    """

    project: str
    version: int = 0
    updated_at: datetime | None = None
    archived_at: datetime | None = None
    entities: Mapping[str, Entity] = field(default_factory=lambda: MappingProxyType({}))
    feature_tables: Mapping[str, FeatureTable] = field(default_factory=lambda: MappingProxyType({}))
    on_demand_features: Mapping[str, OnDemandFeatures] = field(default_factory=lambda: MappingProxyType({}))
    skipped: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryChange:
    """What one update writes: definitions to create or replace, names to delete."""

    put: tuple[Definition, ...] = ()
    delete_entities: tuple[str, ...] = ()
    delete_feature_tables: tuple[str, ...] = ()
    delete_on_demand_features: tuple[str, ...] = ()
    description: str = ""

    @property
    def is_empty(self) -> bool:
        """Whether the change writes nothing (and so must not bump the version)."""
        return not (self.put or self.delete_entities or self.delete_feature_tables or self.delete_on_demand_features)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectInfo:
    """A project's name, registry version, time of its last change and of its archiving."""

    name: str
    version: int
    updated_at: datetime | None
    archived_at: datetime | None = None


class ItemAction(StrEnum):
    """What a change did to one definition."""

    ADDED = "added"
    CHANGED = "changed"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangedItem:
    """One definition a change touched.

    ``fields`` names the changed fields of a changed one, and ``diff`` says how, a readable line
    per difference with the values (:func:`provender.registry.changes.field_diff`; empty in
    records written before it was kept).
    """

    kind: str  # "entity" | "feature_table" | "on_demand_features" | "project"
    name: str
    action: ItemAction
    fields: tuple[str, ...] = ()
    diff: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """Return the JSON-ready form stored by the backends."""
        data: dict[str, object] = {
            "kind": self.kind, "name": self.name, "action": self.action.value, "fields": list(self.fields)
        }  # fmt: skip
        if self.diff:
            data["diff"] = list(self.diff)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ChangedItem:
        """Rebuild an item from :meth:`to_dict`'s output."""
        names = data.get("fields", [])
        diff = data.get("diff", [])
        return cls(
            kind=str(data["kind"]),
            name=str(data["name"]),
            action=ItemAction(str(data["action"])),
            fields=tuple(str(n) for n in names) if isinstance(names, list) else (),
            diff=tuple(str(line) for line in diff) if isinstance(diff, list) else (),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryChangeRecord:
    """One audited registry change: who made it, when, between which versions, and what it did."""

    project: str
    version_before: int
    version_after: int
    changed_at: datetime
    actor: str
    description: str
    items: tuple[ChangedItem, ...] = ()

    def names(self, action: ItemAction) -> list[str]:
        """Return ``kind:name`` of the items with ``action`` (e.g. ``["feature_table:trips"]``)."""
        return [f"{item.kind}:{item.name}" for item in self.items if item.action is action]


class SnapshotCache:
    """The last snapshot read of each project, reused while the project's row is unchanged.

    Every change bumps the version and sets ``updated_at`` (archiving sets ``archived_at`` too), so a
    snapshot whose three match the project row just read is the current one: a backend then reads
    one row instead of every definition. Snapshots are immutable, so sharing them is safe.
    """

    def __init__(self) -> None:
        self._snapshots: dict[str, RegistrySnapshot] = {}

    def get(
        self, project: str, version: int, updated_at: datetime | None, archived_at: datetime | None
    ) -> RegistrySnapshot | None:
        """Return the cached snapshot of ``project`` if it is the one this row describes."""
        cached = self._snapshots.get(project)
        if cached is not None and (cached.version, cached.updated_at, cached.archived_at) == (
            version,
            updated_at,
            archived_at,
        ):
            return cached
        return None

    def put(self, snapshot: RegistrySnapshot) -> RegistrySnapshot:
        """Remember ``snapshot`` as its project's latest and return it."""
        self._snapshots[snapshot.project] = snapshot
        return snapshot


def describe_change(snapshot: RegistrySnapshot, change: RegistryChange) -> tuple[ChangedItem, ...]:
    """Return what ``change`` does to ``snapshot``, item by item (for the audit trail)."""
    items: list[ChangedItem] = []
    for definition in change.put:
        kind = record_kind(definition)
        old: Definition | None = definitions_of(snapshot, kind).get(definition.name)
        if old is None:
            items.append(ChangedItem(kind=kind, name=definition.name, action=ItemAction.ADDED))
        else:
            changed = tuple(f.name for f in fields(old) if getattr(old, f.name) != getattr(definition, f.name))
            items.append(ChangedItem(kind=kind, name=definition.name, action=ItemAction.CHANGED, fields=changed,
                                     diff=field_diff(old, definition)))  # fmt: skip
    items += [ChangedItem(kind="entity", name=n, action=ItemAction.DELETED) for n in change.delete_entities]
    items += [
        ChangedItem(kind="feature_table", name=n, action=ItemAction.DELETED) for n in change.delete_feature_tables
    ]
    items += [
        ChangedItem(kind="on_demand_features", name=n, action=ItemAction.DELETED)
        for n in change.delete_on_demand_features
    ]
    return tuple(items)


def record_kind(definition: Definition) -> str:
    """The ``kind`` a definition is stored under: ``entity``, ``feature_table`` or ``on_demand_features``."""
    if isinstance(definition, Entity):
        return "entity"
    if isinstance(definition, FeatureTable):
        return "feature_table"
    return "on_demand_features"


def definitions_of(snapshot: RegistrySnapshot, kind: str) -> Mapping[str, Definition]:
    """The snapshot's definitions of one stored ``kind`` (see :func:`record_kind`), by name."""
    if kind == "entity":
        return snapshot.entities
    if kind == "feature_table":
        return snapshot.feature_tables
    return snapshot.on_demand_features


def deleted_records(change: RegistryChange) -> list[tuple[str, str]]:
    """``(kind, name)`` of every definition ``change`` deletes."""
    return [
        *(("entity", n) for n in change.delete_entities),
        *(("feature_table", n) for n in change.delete_feature_tables),
        *(("on_demand_features", n) for n in change.delete_on_demand_features),
    ]


def snapshot_of(
    project: str,
    definitions: Iterable[Definition],
    *,
    version: int,
    updated_at: datetime | None,
    archived_at: datetime | None,
    skipped: Mapping[str, str] | None = None,
) -> RegistrySnapshot:
    """Build a snapshot from its stored definitions, sorted into their kinds."""
    entities: dict[str, Entity] = {}
    tables: dict[str, FeatureTable] = {}
    on_demand: dict[str, OnDemandFeatures] = {}
    for definition in definitions:
        if isinstance(definition, Entity):
            entities[definition.name] = definition
        elif isinstance(definition, FeatureTable):
            tables[definition.name] = definition
        else:
            on_demand[definition.name] = definition
    return RegistrySnapshot(
        project=project,
        version=version,
        updated_at=updated_at,
        archived_at=archived_at,
        entities=MappingProxyType(entities),
        feature_tables=MappingProxyType(tables),
        on_demand_features=MappingProxyType(on_demand),
        skipped=MappingProxyType(dict(skipped or {})),
    )


def decode_stored(
    records: Iterable[tuple[str, str, str]], decode: Callable[[str], Definition], *, skip_malformed: bool
) -> tuple[list[Definition], dict[str, str]]:
    """Decode stored ``(kind, name, spec)`` records; with ``skip_malformed``, leave out those that fail.

    Returns:
        The definitions, and ``{"<kind> '<name>'": error}`` of the records left out.

    Raises:
        Exception: without ``skip_malformed``, the first record's error, as raised.
    """
    definitions: list[Definition] = []
    skipped: dict[str, str] = {}
    for kind, name, spec in records:
        try:
            definitions.append(decode(spec))
        except Exception as exc:
            if not skip_malformed:
                raise
            skipped[f"{kind} {name!r}"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    return definitions, skipped


class RegistryStore(Protocol):
    """Where definitions are persisted. Selected by the scheme of the ``registry`` URL."""

    is_remote: ClassVar[bool]
    """True when another service owns the storage (the core service); False when this process
    reads and writes the storage itself (a file, a database)."""

    @classmethod
    def from_url(cls, url: str, *, base_dir: Path, token: str | None = None) -> Self:
        """Open the registry at ``url``; relative paths are resolved against ``base_dir``.

        ``token`` is the bearer token of a registry behind a service (``http://``, the
        ``core_token`` setting); registries opened directly ignore it.
        """
        ...

    def read(self, project: str, *, skip_malformed: bool = False) -> RegistrySnapshot:
        """Return the project's current snapshot (empty if it was never written).

        With ``skip_malformed``, a stored definition that cannot be decoded is left out and named
        in ``skipped`` (the serving's watcher reads so, to serve the rest); without it, it raises.
        """
        ...

    def update(
        self,
        project: str,
        decide: Callable[[RegistrySnapshot], RegistryChange],
        *,
        actor: str = ANONYMOUS,
        expected_version: int | None = None,
    ) -> RegistrySnapshot:
        """Atomically apply ``decide(latest snapshot)`` and return the new snapshot.

        ``decide`` runs under an exclusive lock on the latest state. If it raises, nothing is
        written. A non-empty change bumps the project's version by one and is recorded in the
        history with ``actor``.

        Raises:
            RegistryVersionConflictError: ``expected_version`` is given and is not the current
                version (checked before ``decide`` runs; nothing is written).
            ProjectArchivedError: the project is archived.
        """
        ...

    def list_projects(self, *, include_archived: bool = False) -> list[ProjectInfo]:
        """Return every project that has been written to, plus ``default``, sorted by name.

        Archived projects are left out unless ``include_archived``.
        """
        ...

    def archive_project(self, project: str, *, actor: str = ANONYMOUS) -> ProjectInfo:
        """Make a project read-only and hide it from :meth:`list_projects`; its data is kept.

        Archiving bumps the version and is recorded in the history.

        Raises:
            ProjectNotFoundError: the project was never written to.
            ProjectArchivedError: it is archived already.
            RegistryConflictError: it is the ``default`` project.
        """
        ...

    def history(self, project: str | None = None, *, limit: int = DEFAULT_HISTORY_LIMIT) -> list[RegistryChangeRecord]:
        """Return the latest ``limit`` changes, newest first, of one project or of all (``None``)."""
        ...

    def put_job(self, job: JobRecord) -> JobRecord:
        """Record a new job.

        Raises:
            JobStateError: a job with that id is already recorded.
            ProjectArchivedError: the job's project is archived.
        """
        ...

    def update_job(
        self, job_id: str, *, if_status: Collection[JobStatus] | None = None, **changes: Unpack[JobFields]
    ) -> JobRecord:
        """Atomically set some fields of a job and return the new record.

        Args:
            job_id: the job.
            if_status: write only if the job's current status is one of these.
            **changes: the fields to set.

        Raises:
            JobNotFoundError: no job has that id.
            JobStateError: the job's status is not in ``if_status`` (nothing is written).
        """
        ...

    def get_job(self, job_id: str) -> JobRecord:
        """Return a job; raise JobNotFoundError if there is none with that id."""
        ...

    def list_jobs(self, project: str, *, table: str | None = None, include_finished: bool = False) -> list[JobRecord]:
        """Return a project's jobs (of one table if given), newest first; unfinished only by default."""
        ...

    def fail_stale_jobs(self, older_than: timedelta) -> list[JobRecord]:
        """Mark FAILED every RUNNING job whose last heartbeat is older than ``older_than``.

        Returns:
            The jobs it failed (their runner died or lost its connection).
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...
