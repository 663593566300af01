"""The registry's records as JSON-ready dicts: what the core service sends and its clients read.

Definitions use their versioned form (:mod:`provender.registry.codec`); times are ISO 8601 text
with the offset (``2026-12-02T20:15:00.123456+00:00``), so every value round-trips exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import cast

from provender.definitions import Definition, Entity, FeatureTable, OnDemandFeatures
from provender.errors import DataError
from provender.registry import codec
from provender.registry.diff import ApplyPlan, PlanItem
from provender.registry.jobs import JobKind, JobRecord, JobStatus
from provender.registry.store import (
    ChangedItem,
    ProjectInfo,
    RegistryChange,
    RegistryChangeRecord,
    RegistrySnapshot,
)

JsonDict = dict[str, object]
JOB_TIME_FIELDS = ("created_at", "started_at", "finished_at", "heartbeat_at")


def time_text(moment: datetime | None) -> str | None:
    """Return ``moment`` as ISO 8601 text (None stays None)."""
    return None if moment is None else moment.isoformat()


def parse_time(value: object, *, name: str) -> datetime | None:
    """Parse ISO 8601 text written by :func:`time_text` (None stays None).

    Raises:
        DataError: the value is not ISO 8601 text, naming the field.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise DataError(f"field {name!r} must be an ISO 8601 time string, got {value!r}")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise DataError(f"field {name!r} must be an ISO 8601 time string, got {value!r}") from None


def _get(data: Mapping[str, object], name: str) -> object:
    if name not in data:
        raise DataError(f"the request or answer lacks field {name!r}")
    return data[name]


def _int(data: Mapping[str, object], name: str) -> int:
    value = _get(data, name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise DataError(f"field {name!r} must be an integer, got {value!r}")
    return value


def _list(data: Mapping[str, object], name: str) -> list[object]:
    value = data.get(name, [])
    if not isinstance(value, list):
        raise DataError(f"field {name!r} must be a list, got {type(value).__name__}")
    return value


def _names(data: Mapping[str, object], name: str) -> tuple[str, ...]:
    values = _list(data, name)
    if not all(isinstance(value, str) for value in values):
        raise DataError(f"field {name!r} must be a list of names")
    return tuple(cast(list[str], values))


# -- definitions and snapshots


def definitions_to_list(definitions: Sequence[Definition]) -> list[JsonDict]:
    """Return the versioned dicts of ``definitions``."""
    return [codec.to_dict(definition) for definition in definitions]


def definitions_from_list(values: object, *, name: str = "definitions") -> tuple[Definition, ...]:
    """Rebuild definitions from :func:`definitions_to_list` (raises DefinitionError naming the field)."""
    if not isinstance(values, list):
        raise DataError(f"field {name!r} must be a list of definitions, got {type(values).__name__}")
    return tuple(codec.from_dict(value) for value in values)


def snapshot_to_dict(snapshot: RegistrySnapshot) -> JsonDict:
    """Return a project's snapshot as a dict."""
    return {
        "project": snapshot.project,
        "version": snapshot.version,
        "updated_at": time_text(snapshot.updated_at),
        "archived_at": time_text(snapshot.archived_at),
        "entities": definitions_to_list(list(snapshot.entities.values())),
        "feature_tables": definitions_to_list(list(snapshot.feature_tables.values())),
        "on_demand_features": definitions_to_list(list(snapshot.on_demand_features.values())),
    }


def snapshot_from_dict(data: Mapping[str, object]) -> RegistrySnapshot:
    """Rebuild a snapshot from :func:`snapshot_to_dict`."""
    entities = [d for d in definitions_from_list(_get(data, "entities"), name="entities") if isinstance(d, Entity)]
    tables = [
        d
        for d in definitions_from_list(_get(data, "feature_tables"), name="feature_tables")
        if isinstance(d, FeatureTable)
    ]
    # Absent from an older core service's answer: it stores no on-demand features.
    on_demand = [
        d
        for d in definitions_from_list(data.get("on_demand_features", []), name="on_demand_features")
        if isinstance(d, OnDemandFeatures)
    ]
    return RegistrySnapshot(
        project=str(_get(data, "project")),
        version=_int(data, "version"),
        updated_at=parse_time(data.get("updated_at"), name="updated_at"),
        archived_at=parse_time(data.get("archived_at"), name="archived_at"),
        entities=MappingProxyType({entity.name: entity for entity in entities}),
        feature_tables=MappingProxyType({table.name: table for table in tables}),
        on_demand_features=MappingProxyType({odf.name: odf for odf in on_demand}),
    )


def change_to_dict(change: RegistryChange) -> JsonDict:
    """Return a registry change as a dict."""
    return {
        "put": definitions_to_list(change.put),
        "delete_entities": list(change.delete_entities),
        "delete_feature_tables": list(change.delete_feature_tables),
        "delete_on_demand_features": list(change.delete_on_demand_features),
        "description": change.description,
    }


def change_from_dict(data: Mapping[str, object]) -> RegistryChange:
    """Rebuild a registry change from :func:`change_to_dict`."""
    description = data.get("description", "")
    return RegistryChange(
        put=definitions_from_list(data.get("put", []), name="put"),
        delete_entities=_names(data, "delete_entities"),
        delete_feature_tables=_names(data, "delete_feature_tables"),
        delete_on_demand_features=_names(data, "delete_on_demand_features"),
        description=description if isinstance(description, str) else "",
    )


# -- projects, history, plans


def project_to_dict(info: ProjectInfo) -> JsonDict:
    """Return a project's info as a dict."""
    return {
        "name": info.name,
        "version": info.version,
        "updated_at": time_text(info.updated_at),
        "archived_at": time_text(info.archived_at),
    }


def project_from_dict(data: Mapping[str, object]) -> ProjectInfo:
    """Rebuild a project's info from :func:`project_to_dict`."""
    return ProjectInfo(
        name=str(_get(data, "name")),
        version=_int(data, "version"),
        updated_at=parse_time(data.get("updated_at"), name="updated_at"),
        archived_at=parse_time(data.get("archived_at"), name="archived_at"),
    )


def record_to_dict(record: RegistryChangeRecord) -> JsonDict:
    """Return an audited change as a dict."""
    return {
        "project": record.project,
        "version_before": record.version_before,
        "version_after": record.version_after,
        "changed_at": time_text(record.changed_at),
        "actor": record.actor,
        "description": record.description,
        "items": [item.to_dict() for item in record.items],
    }


def record_from_dict(data: Mapping[str, object]) -> RegistryChangeRecord:
    """Rebuild an audited change from :func:`record_to_dict`."""
    changed_at = parse_time(_get(data, "changed_at"), name="changed_at")
    assert changed_at is not None
    return RegistryChangeRecord(
        project=str(_get(data, "project")),
        version_before=_int(data, "version_before"),
        version_after=_int(data, "version_after"),
        changed_at=changed_at,
        actor=str(_get(data, "actor")),
        description=str(data.get("description", "")),
        items=tuple(ChangedItem.from_dict(cast(Mapping[str, object], item)) for item in _list(data, "items")),
    )


def plan_to_dict(plan: ApplyPlan) -> JsonDict:
    """Return an apply plan's items as a dict (its definitions are the request's)."""
    return {
        "project": plan.project,
        "items": [
            {"kind": item.kind, "name": item.name, "action": item.action.value, "detail": item.detail}
            for item in plan.items
        ],
    }


def plan_items_from_list(values: object) -> tuple[PlanItem, ...]:
    """Rebuild plan items from :func:`plan_to_dict`'s ``items``."""
    from provender.registry.diff import Action

    if not isinstance(values, list):
        raise DataError("field 'items' must be a list")
    return tuple(
        PlanItem(
            kind=str(item["kind"]),
            name=str(item["name"]),
            action=Action(str(item["action"])),
            detail=str(item.get("detail", "")),
        )
        for item in cast(list[Mapping[str, object]], values)
    )


# -- jobs


def job_to_dict(job: JobRecord) -> JsonDict:
    """Return a job record as a dict."""
    return {
        "id": job.id,
        "kind": job.kind.value,
        "project": job.project,
        "table": job.table,
        "status": job.status.value,
        "created_at": time_text(job.created_at),
        "started_at": time_text(job.started_at),
        "finished_at": time_text(job.finished_at),
        "heartbeat_at": time_text(job.heartbeat_at),
        "rows": job.rows,
        "error": job.error,
        "runner": job.runner,
        "cancel_requested": job.cancel_requested,
        "statistics": None if job.statistics is None else dict(job.statistics),
        "validation": None if job.validation is None else dict(job.validation),
        "lineage": None if job.lineage is None else dict(job.lineage),
    }


def job_from_dict(data: Mapping[str, object]) -> JobRecord:
    """Rebuild a job record from :func:`job_to_dict`.

    Raises:
        DataError: a field is missing or of the wrong type, naming it.
    """
    created_at = parse_time(_get(data, "created_at"), name="created_at")
    if created_at is None:
        raise DataError("field 'created_at' must be set")
    try:
        kind, status = JobKind(str(_get(data, "kind"))), JobStatus(str(data.get("status", "PENDING")))
    except ValueError as exc:
        raise DataError(f"job {data.get('id')!r}: {exc}") from None
    return JobRecord(
        id=str(_get(data, "id")),
        kind=kind,
        project=str(_get(data, "project")),
        table=str(data.get("table", "")),
        status=status,
        created_at=created_at,
        started_at=parse_time(data.get("started_at"), name="started_at"),
        finished_at=parse_time(data.get("finished_at"), name="finished_at"),
        heartbeat_at=parse_time(data.get("heartbeat_at"), name="heartbeat_at"),
        rows=_int(data, "rows") if "rows" in data else 0,
        error=str(data.get("error", "")),
        runner=str(data.get("runner", "")),
        cancel_requested=bool(data.get("cancel_requested", False)),
        statistics=cast("Mapping[str, object] | None", data.get("statistics")),
        validation=cast("Mapping[str, object] | None", data.get("validation")),
        lineage=cast("Mapping[str, object] | None", data.get("lineage")),
    )


def job_changes_to_dict(changes: Mapping[str, object]) -> JsonDict:
    """Return :meth:`RegistryStore.update_job` keyword changes as a dict (times as text)."""
    return {
        name: time_text(value)
        if isinstance(value, datetime)
        else value.value
        if isinstance(value, JobStatus)
        else value
        for name, value in changes.items()
    }


def job_changes_from_dict(data: Mapping[str, object]) -> dict[str, object]:
    """Rebuild update_job changes from :func:`job_changes_to_dict` (unknown names pass, for the store to refuse)."""
    changes: dict[str, object] = {}
    for name, value in data.items():
        if name in JOB_TIME_FIELDS:
            changes[name] = parse_time(value, name=name)
        elif name == "status":
            try:
                changes[name] = JobStatus(str(value))
            except ValueError:
                raise DataError(f"field 'status': {value!r} is not a job status") from None
        else:
            changes[name] = value
    return changes
