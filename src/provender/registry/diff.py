"""What an apply or a delete would change, and whether the registry allows it.

These rules are the registry's contract, shared by every backend:

- a feature table's entities must be registered, before or in the same apply;
- an entity's value type cannot change while a feature table uses it;
- a feature's value type, and a table's entity key, cannot change (delete the table first);
- an entity cannot be deleted while a feature table uses it;
- on-demand features' inputs must be features of registered feature tables (before or in the same
  apply), a feature table cannot be deleted nor lose a feature while on-demand features read it,
  and an on-demand features' name cannot be a feature table's (refs would be ambiguous);
- registered objects missing from an apply's definitions are kept and not mentioned, or reported
  as ``not defined`` (``missing="report"``), or deleted (``missing="prune"``).

A plan with any refused item is refused whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Literal

from provender.definitions import Definition, Entity, FeatureTable, OnDemandFeatures
from provender.definitions.refs import FeatureRef
from provender.errors import (
    EntityNotFoundError,
    FeatureTableNotFoundError,
    OnDemandFeaturesNotFoundError,
    RegistryConflictError,
)
from provender.registry.store import RegistryChange, RegistrySnapshot

# What an apply does with registered objects its definitions do not include (see plan_apply).
MissingPolicy = Literal["ignore", "report", "prune"]


class Action(StrEnum):
    """What an apply does to one definition."""

    ADDED = "added"
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    REFUSED = "refused"
    NOT_DEFINED = "not defined"  # registered, but not among the applied definitions (kept)
    DELETED = "deleted"  # registered, not among the applied definitions, and pruned


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanItem:
    """One definition's fate in a plan; ``detail`` says what changed or why it is refused."""

    kind: str
    name: str
    action: Action
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplyPlan:
    """The outcome of applying definitions to a snapshot, item by item."""

    project: str
    items: tuple[PlanItem, ...]
    definitions: tuple[Definition, ...]

    @property
    def is_refused(self) -> bool:
        """Whether any item is refused (and so the whole apply is)."""
        return any(item.action is Action.REFUSED for item in self.items)

    def count(self, action: Action) -> int:
        """Return how many items have ``action``."""
        return sum(1 for item in self.items if item.action is action)

    def to_change(self) -> RegistryChange:
        """Return the change to write; raise RegistryConflictError if the plan is refused."""
        if self.is_refused:
            conflicts = [f"{i.kind} {i.name!r}: {i.detail}" for i in self.items if i.action is Action.REFUSED]
            raise RegistryConflictError(conflicts, project=self.project)
        put = tuple(
            d
            for d, item in zip(self.definitions, self.items, strict=False)
            if item.action in (Action.ADDED, Action.CHANGED)
        )
        names = ", ".join(
            f"{i.kind} {i.name}" for i in self.items if i.action not in (Action.UNCHANGED, Action.NOT_DEFINED)
        )
        return RegistryChange(
            put=put,
            delete_entities=self.deleted("entity"),
            delete_feature_tables=self.deleted("feature table"),
            delete_on_demand_features=self.deleted(ON_DEMAND),
            description=f"apply {names}" if names else "",
        )

    def deleted(self, kind: str) -> tuple[str, ...]:
        """The names of the ``kind`` (``"entity"``, ``"feature table"``) objects the plan deletes."""
        return tuple(i.name for i in self.items if i.action is Action.DELETED and i.kind == kind)

    def summary(self) -> str:
        """``"1 added, 0 changed, 1 unchanged, 0 refused"`` (and any not defined or deleted)."""
        counts = [(a, self.count(a)) for a in Action]
        return ", ".join(f"{n} {a}" for a, n in counts if n or a not in (Action.NOT_DEFINED, Action.DELETED))


ON_DEMAND = "on-demand features"
"""The kind of an :class:`OnDemandFeatures` in plan items."""


def _kind(definition: Definition) -> str:
    if isinstance(definition, Entity):
        return "entity"
    return "feature table" if isinstance(definition, FeatureTable) else ON_DEMAND


def _changed_fields(old: Definition, new: Definition) -> list[str]:
    return [f.name for f in fields(old) if getattr(old, f.name) != getattr(new, f.name)]


def plan_apply(
    snapshot: RegistrySnapshot, definitions: Sequence[Definition], *, missing: MissingPolicy = "ignore"
) -> ApplyPlan:
    """Return what applying ``definitions`` to ``snapshot`` would do, refusals included.

    Registered objects missing from ``definitions`` are left out (``missing="ignore"``), or are
    ``NOT_DEFINED`` items (``"report"``), or ``DELETED`` ones (``"prune"``; refused for an entity
    that a kept feature table still uses). They come after the items of ``definitions``, which
    keep their order.
    """
    definitions = tuple(definitions)
    for definition in definitions:
        if not isinstance(definition, Entity | FeatureTable | OnDemandFeatures):
            raise TypeError(
                f"apply() takes Entity, FeatureTable and OnDemandFeatures objects, got {type(definition).__name__}"
            )
    entities = {**snapshot.entities, **{d.name: d for d in definitions if isinstance(d, Entity)}}
    tables = {**snapshot.feature_tables, **{d.name: d for d in definitions if isinstance(d, FeatureTable)}}
    on_demand = {**snapshot.on_demand_features, **{d.name: d for d in definitions if isinstance(d, OnDemandFeatures)}}
    items: list[PlanItem] = []
    seen: dict[tuple[str, str], Definition] = {}
    for definition in definitions:
        kind = _kind(definition)
        previous = seen.setdefault((kind, definition.name), definition)
        if previous != definition:
            items.append(
                PlanItem(
                    kind=kind,
                    name=definition.name,
                    action=Action.REFUSED,
                    detail="defined twice, differently, in the same apply",
                )
            )
            continue
        if isinstance(definition, Entity):
            items.append(_plan_entity(snapshot, definition))
        elif isinstance(definition, FeatureTable):
            items.append(_plan_table(snapshot, definition, entities, on_demand))
        else:
            items.append(_plan_on_demand(snapshot, definition, tables))
    if missing != "ignore":
        items.extend(_plan_missing(snapshot, definitions, prune=missing == "prune"))
    return ApplyPlan(project=snapshot.project, items=tuple(items), definitions=definitions)


def _plan_missing(snapshot: RegistrySnapshot, definitions: Sequence[Definition], *, prune: bool) -> list[PlanItem]:
    defined = {(_kind(d), d.name) for d in definitions}
    kept_tables = [t for t in snapshot.feature_tables.values() if ("feature table", t.name) in defined]
    kept_on_demand = [o for o in snapshot.on_demand_features.values() if (ON_DEMAND, o.name) in defined]
    items = []
    for name in sorted(snapshot.on_demand_features):
        if (ON_DEMAND, name) not in defined:
            items.append(_missing_item(ON_DEMAND, name, prune=prune, users=[]))
    for name in sorted(snapshot.feature_tables):
        if ("feature table", name) not in defined:
            users = sorted(o.name for o in kept_on_demand if name in _input_tables(o))
            items.append(_missing_item("feature table", name, prune=prune, users=users))
    for name in sorted(snapshot.entities):
        if ("entity", name) not in defined:
            users = sorted(t.name for t in kept_tables if name in t.entities)
            items.append(_missing_item("entity", name, prune=prune, users=users))
    return items


def _missing_item(kind: str, name: str, *, prune: bool, users: list[str]) -> PlanItem:
    if not prune:
        return PlanItem(
            kind=kind, name=name, action=Action.NOT_DEFINED, detail="registered, but no definition (--prune deletes it)"
        )
    if users:
        return PlanItem(
            kind=kind,
            name=name,
            action=Action.REFUSED,
            detail=f"cannot be pruned: used by {'feature tables' if kind == 'entity' else ON_DEMAND} "
            f"{', '.join(users)} (define it too)",
        )
    detail = "its online rows are deleted too" if kind == "feature table" else ""
    return PlanItem(kind=kind, name=name, action=Action.DELETED, detail=detail)


def _plan_entity(snapshot: RegistrySnapshot, entity: Entity) -> PlanItem:
    old = snapshot.entities.get(entity.name)
    if old is None:
        return PlanItem(kind="entity", name=entity.name, action=Action.ADDED)
    if old == entity:
        return PlanItem(kind="entity", name=entity.name, action=Action.UNCHANGED)
    if old.value_type != entity.value_type:
        users = sorted(t.name for t in snapshot.feature_tables.values() if entity.name in t.entities)
        if users:
            return PlanItem(
                kind="entity",
                name=entity.name,
                action=Action.REFUSED,
                detail=f"value_type {old.value_type} -> {entity.value_type} while feature tables use it: "
                f"{', '.join(users)} (delete them first)",
            )
    return PlanItem(
        kind="entity", name=entity.name, action=Action.CHANGED, detail=", ".join(_changed_fields(old, entity))
    )


def _input_tables(odf: OnDemandFeatures) -> set[str]:
    return {FeatureRef.parse(ref).table for ref in odf.inputs}


def _unresolved_inputs(odf: OnDemandFeatures, tables: Mapping[str, FeatureTable]) -> list[tuple[str, str]]:
    """The inputs of ``odf`` that ``tables`` do not hold, each with the reason (empty when all resolve)."""
    problems = []
    for ref in odf.inputs:
        parsed = FeatureRef.parse(ref)
        table = tables.get(parsed.table)
        if table is None:
            problems.append((ref, f"there is no feature table {parsed.table!r} (apply it too)"))
        elif parsed.feature is not None and table.get_feature(parsed.feature) is None:
            known = ", ".join(table.feature_names)
            problems.append(
                (ref, f"feature table {parsed.table!r} has no feature {parsed.feature!r} (its features: {known})")
            )
    return problems


def _input_problems(odf: OnDemandFeatures, tables: Mapping[str, FeatureTable]) -> list[str]:
    return [f"input {ref!r}: {reason}" for ref, reason in _unresolved_inputs(odf, tables)]


def _plan_on_demand(snapshot: RegistrySnapshot, odf: OnDemandFeatures, tables: Mapping[str, FeatureTable]) -> PlanItem:
    problems = _input_problems(odf, tables)
    if odf.name in tables:
        problems.append(f"a feature table is called {odf.name!r} too; refs '{odf.name}:...' would be ambiguous")
    if problems:
        return PlanItem(kind=ON_DEMAND, name=odf.name, action=Action.REFUSED, detail="; ".join(problems))
    old = snapshot.on_demand_features.get(odf.name)
    if old is None:
        return PlanItem(kind=ON_DEMAND, name=odf.name, action=Action.ADDED)
    if old == odf:
        return PlanItem(kind=ON_DEMAND, name=odf.name, action=Action.UNCHANGED)
    return PlanItem(kind=ON_DEMAND, name=odf.name, action=Action.CHANGED, detail=", ".join(_changed_fields(old, odf)))


def _on_demand_conflict(table: FeatureTable, on_demand: Mapping[str, OnDemandFeatures]) -> str | None:
    """Why ``table`` cannot be applied beside ``on_demand`` (a shared name, a feature they read dropped)."""
    if table.name in on_demand:
        return f"on-demand features are called {table.name!r} too; refs '{table.name}:...' would be ambiguous"
    readers = [
        f"{odf.name} reads {ref!r}"
        for odf in on_demand.values()
        if table.name in _input_tables(odf)
        for ref, _ in _unresolved_inputs(odf, {table.name: table})
    ]
    if readers:
        return f"drops features that on-demand features read: {'; '.join(readers)} (change them first)"
    return None


def _plan_table(
    snapshot: RegistrySnapshot,
    table: FeatureTable,
    entities: dict[str, Entity],
    on_demand: Mapping[str, OnDemandFeatures],
) -> PlanItem:
    conflict = _on_demand_conflict(table, on_demand)
    if conflict is not None:
        return PlanItem(kind="feature table", name=table.name, action=Action.REFUSED, detail=conflict)
    missing = [name for name in table.entities if name not in entities]
    if missing:
        return PlanItem(
            kind="feature table",
            name=table.name,
            action=Action.REFUSED,
            detail=f"uses unregistered entities: {', '.join(missing)} (apply them too)",
        )
    old = snapshot.feature_tables.get(table.name)
    if old is None:
        return PlanItem(kind="feature table", name=table.name, action=Action.ADDED)
    if old == table:
        return PlanItem(kind="feature table", name=table.name, action=Action.UNCHANGED)
    conflicts = []
    if old.entities != table.entities:
        conflicts.append(f"entities {list(old.entities)} -> {list(table.entities)}")
    for feature in table.features:
        before = old.get_feature(feature.name)
        if before is not None and before.value_type != feature.value_type:
            conflicts.append(f"feature {feature.name!r} value_type {before.value_type} -> {feature.value_type}")
    if conflicts:
        return PlanItem(
            kind="feature table",
            name=table.name,
            action=Action.REFUSED,
            detail="; ".join(conflicts) + " (delete the feature table first)",
        )
    return PlanItem(
        kind="feature table",
        name=table.name,
        action=Action.CHANGED,
        detail=", ".join(_changed_fields(old, table)),
    )


def plan_delete_feature_table(snapshot: RegistrySnapshot, name: str) -> RegistryChange:
    """Return the change deleting feature table ``name``; raise if it does not exist."""
    if name not in snapshot.feature_tables:
        raise FeatureTableNotFoundError(name, project=snapshot.project, known=list(snapshot.feature_tables))
    users = sorted(o.name for o in snapshot.on_demand_features.values() if name in _input_tables(o))
    if users:
        raise RegistryConflictError(
            [f"feature table {name!r} is read by on-demand features: {', '.join(users)} (delete them first)"],
            project=snapshot.project,
        )
    return RegistryChange(delete_feature_tables=(name,), description=f"delete feature table {name}")


def plan_delete_on_demand_features(snapshot: RegistrySnapshot, name: str) -> RegistryChange:
    """Return the change deleting the on-demand features ``name``; raise if they do not exist."""
    if name not in snapshot.on_demand_features:
        raise OnDemandFeaturesNotFoundError(name, project=snapshot.project, known=list(snapshot.on_demand_features))
    return RegistryChange(delete_on_demand_features=(name,), description=f"delete on-demand features {name}")


def plan_delete_entity(snapshot: RegistrySnapshot, name: str) -> RegistryChange:
    """Return the change deleting entity ``name``; refuse while a feature table uses it."""
    if name not in snapshot.entities:
        raise EntityNotFoundError(name, project=snapshot.project, known=list(snapshot.entities))
    users = sorted(t.name for t in snapshot.feature_tables.values() if name in t.entities)
    if users:
        raise RegistryConflictError(
            [f"entity {name!r} is used by feature tables: {', '.join(users)} (delete them first)"],
            project=snapshot.project,
        )
    return RegistryChange(delete_entities=(name,), description=f"delete entity {name}")


def check_change(snapshot: RegistrySnapshot, change: RegistryChange) -> RegistryChange:
    """Return ``change`` if the registry allows it on ``snapshot``; raise otherwise.

    The rules of :func:`plan_apply` for what it puts, of the ``plan_delete_*`` functions for what
    it deletes, and every feature table left must still find its entities. Used where a change
    arrives already computed (the core service), so it is checked again under the lock.

    Raises:
        RegistryConflictError: a refused put, or a deleted entity still in use.
        EntityNotFoundError, FeatureTableNotFoundError: a deleted name that does not exist.
    """
    plan_apply(snapshot, change.put).to_change()
    for name in change.delete_on_demand_features:
        plan_delete_on_demand_features(snapshot, name)
    on_demand = {**snapshot.on_demand_features, **{d.name: d for d in change.put if isinstance(d, OnDemandFeatures)}}
    for name in change.delete_on_demand_features:
        on_demand.pop(name, None)
    for name in change.delete_feature_tables:
        if name not in snapshot.feature_tables:
            raise FeatureTableNotFoundError(name, project=snapshot.project, known=list(snapshot.feature_tables))
    tables = {**snapshot.feature_tables, **{d.name: d for d in change.put if isinstance(d, FeatureTable)}}
    for name in change.delete_feature_tables:
        tables.pop(name, None)
    conflicts = [
        f"on-demand features {odf.name!r}: {p}" for odf in on_demand.values() for p in _input_problems(odf, tables)
    ]
    for name in change.delete_entities:
        if name not in snapshot.entities:
            raise EntityNotFoundError(name, project=snapshot.project, known=list(snapshot.entities))
        users = sorted(t.name for t in tables.values() if name in t.entities)
        if users:
            conflicts.append(f"entity {name!r} is used by feature tables: {', '.join(users)} (delete them first)")
    if conflicts:
        raise RegistryConflictError(conflicts, project=snapshot.project)
    return change


__all__ = [
    "Action",
    "ApplyPlan",
    "MissingPolicy",
    "PlanItem",
    "check_change",
    "plan_apply",
    "plan_delete_entity",
    "plan_delete_feature_table",
    "plan_delete_on_demand_features",
]
