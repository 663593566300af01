"""The request model: feature refs resolved once, the same way on every path.

Historical retrieval, online reads (in-process, HTTP and gRPC) and ingestion all resolve refs
with :meth:`FeatureRequest.resolve`, and name result columns with :func:`result_column`, so a
list of refs means the same thing everywhere (DESIGN.md, "Feature refs"):

* ``"<table>:<feature>"`` names one feature; a bare ``"<table>"`` all of the table's features,
  in their declared order;
* a list that names the same feature twice (directly, or once directly and once through its
  bare table) is refused with a :class:`~provender.errors.FeatureRefError` naming that feature,
  so result columns are unique;
* result columns are named ``<table>__<feature>``, in ref order;
* an empty list, a malformed ref, an unknown table or an unknown feature is refused, naming it;
* a ref may name on-demand features (``"<name>:<feature>"`` or ``"<name>"``): their inputs are
  fetched too (``fetched_columns``) but returned only if requested themselves.

:func:`row_schema` is the normalized row of one feature table that ingestion writes to the
online store: its entity keys, its features, ``event_timestamp`` and ``created_timestamp``.

Examples:
    >>> from provender.definitions import Entity, Feature, FeatureTable, FileSource, ValueType
    >>> driver = Entity(name="driver_id", value_type=ValueType.INT64)
    >>> stats = FeatureTable(
    ...     name="driver_statistics",
    ...     entities=["driver_id"],
    ...     features=[Feature("conv_rate", ValueType.FLOAT), Feature("acc_rate", ValueType.FLOAT)],
    ...     batch_source=FileSource(path="data/driver_stats", event_timestamp_column="event_timestamp"),
    ... )
    >>> request = FeatureRequest.resolve(
    ...     ["driver_statistics:acc_rate"], feature_tables={stats.name: stats}, entities={driver.name: driver}
    ... )
    >>> request.columns
    ('driver_statistics__acc_rate',)
    >>> FeatureRequest.resolve(
    ...     ["driver_statistics", "driver_statistics:conv_rate"],
    ...     feature_tables={stats.name: stats},
    ...     entities={driver.name: driver},
    ... )  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    provender.errors.FeatureRefError: Feature ref 'driver_statistics:conv_rate': requested twice ...
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa

from provender.definitions.entity import Entity
from provender.definitions.feature_table import Feature, FeatureTable
from provender.definitions.on_demand import OnDemandFeatures
from provender.definitions.refs import FeatureRef, result_column
from provender.definitions.types import ValueType
from provender.errors import DataError, EntityNotFoundError, FeatureRefError, FeatureTableNotFoundError, did_you_mean

EVENT_TIMESTAMP = "event_timestamp"
"""The event time of a normalized row, and the time column of entity rows (*T* of the PIT rule)."""
CREATED_TIMESTAMP = "created_timestamp"
"""The created time of a normalized row (ties between equal event times)."""
TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")
"""The Arrow type of both times in normalized rows."""
SOURCE_ROWS = "__provender_source_rows"
"""An optional INT64 column of latest rows (``LatestPlan.count_source_rows``): how many source rows
in the window each key's row was chosen from. Not a feature: whoever writes the rows drops it."""


__all__ = [
    "CREATED_TIMESTAMP",
    "EVENT_TIMESTAMP",
    "SOURCE_ROWS",
    "TIMESTAMP_TYPE",
    "FeatureRequest",
    "RequestedOnDemand",
    "RequestedTable",
    "ref_list",
    "result_column",
    "row_schema",
]


def ref_list(refs: object) -> tuple[str, ...]:
    """Return ``refs`` as a tuple, refusing what is not a non-empty list of refs.

    Raises:
        FeatureRefError: ``refs`` is a single string, not a sequence, or empty.
    """
    if isinstance(refs, str | bytes) or not isinstance(refs, Sequence) or not refs:
        raise FeatureRefError(repr(refs), "feature_refs must be a non-empty list like ['table:feature']")
    return tuple(refs)


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestedTable:
    """One feature table of a request and the features asked of it.

    Attributes:
        table: the feature table.
        entities: its entities, in key order.
        features: the requested features, in ref order.
        columns: their result columns, aligned with ``features``.
        indexes: each requested feature's position in ``table.features``.
    """

    table: FeatureTable
    entities: tuple[Entity, ...]
    features: tuple[Feature, ...]
    columns: tuple[str, ...]
    indexes: tuple[int, ...]

    @property
    def name(self) -> str:
        """The feature table's name."""
        return self.table.name


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestedOnDemand:
    """On-demand features of a request and the features asked of them.

    Attributes:
        definition: the on-demand features.
        features: the requested features, in ref order.
        columns: their result columns, aligned with ``features``.
    """

    definition: OnDemandFeatures
    features: tuple[Feature, ...]
    columns: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureRequest:
    """A resolved list of feature refs.

    Attributes:
        refs: the refs as given.
        tables: one per requested table, in order of first appearance in the refs.
        columns: the result columns, ``<table>__<feature>`` in ref order (bare refs expanded).
        entities: every entity the tables are keyed by, in order of first appearance.
        types: the value type of each entity column, each result column and each fetched column.
        on_demand: the requested on-demand features, in order of first appearance in the refs.
        fetched_columns: the feature tables' result columns to read: the requested ones in ref
            order, then the on-demand inputs not requested (``hidden_columns``).
        hidden_columns: on-demand inputs read but not returned.
    """

    refs: tuple[str, ...]
    tables: tuple[RequestedTable, ...]
    columns: tuple[str, ...]
    entities: tuple[Entity, ...]
    types: Mapping[str, ValueType]
    on_demand: tuple[RequestedOnDemand, ...] = ()
    fetched_columns: tuple[str, ...] = ()
    hidden_columns: tuple[str, ...] = ()

    @property
    def all_columns(self) -> tuple[str, ...]:
        """Every column a result is computed with: fetched ones and on-demand ones."""
        return (*self.fetched_columns, *(c for requested in self.on_demand for c in requested.columns))

    @classmethod
    def resolve(
        cls,
        refs: Sequence[str],
        *,
        feature_tables: Mapping[str, FeatureTable],
        entities: Mapping[str, Entity],
        project: str = "default",
        on_demand_features: Mapping[str, OnDemandFeatures] | None = None,
    ) -> FeatureRequest:
        """Resolve ``refs`` against a project's definitions (see the module docstring for the rules).

        Raises:
            FeatureRefError: an empty list, a malformed ref, an unknown feature, or a feature
                requested twice (the error's ``ref`` is that feature, ``"<table>:<feature>"``).
            FeatureTableNotFoundError: an unknown table (with a "did you mean").
            EntityNotFoundError: a requested table's entity is not registered.
        """
        texts = ref_list(refs)
        on_demand = on_demand_features or {}
        picked: dict[str, dict[str, str]] = {}  # table -> {feature: the ref that asked for it}
        picked_on_demand: dict[str, dict[str, str]] = {}
        columns: list[str] = []
        for text in texts:
            ref = FeatureRef.parse(text)
            if ref.table in on_demand:
                columns += _pick(on_demand[ref.table], ref, text, picked_on_demand)
                continue
            table = feature_tables.get(ref.table)
            if table is None:
                known = [*feature_tables, *on_demand]
                raise FeatureTableNotFoundError(ref.table, project=project, known=known)
            names = table.feature_names
            if ref.feature is None:
                wanted: tuple[str, ...] = names
            elif ref.feature in names:
                wanted = (ref.feature,)
            else:
                hint = did_you_mean(ref.feature, names) or f" Its features: {', '.join(names)}."
                raise FeatureRefError(text, f"feature table {table.name!r} has no feature {ref.feature!r}.{hint}")
            table_picks = picked.setdefault(table.name, {})
            for feature in wanted:
                first = table_picks.get(feature)
                if first is not None:
                    raise FeatureRefError(
                        f"{table.name}:{feature}",
                        f"requested twice (by {first!r} and {text!r}); result columns must be unique",
                    )
                table_picks[feature] = text
                columns.append(result_column(table.name, feature))
        hidden = _add_inputs([on_demand[name] for name in picked_on_demand], picked, feature_tables)
        tables: list[RequestedTable] = []
        key_entities: dict[str, Entity] = {}
        types: dict[str, ValueType] = {}
        for name, table_picks in picked.items():
            table = feature_tables[name]
            keys = tuple(_entity(entities, entity, project) for entity in table.entities)
            for entity in keys:
                key_entities.setdefault(entity.name, entity)
                types.setdefault(entity.name, entity.value_type)
            indexes = tuple(table.feature_names.index(feature) for feature in table_picks)
            features = tuple(table.features[index] for index in indexes)
            table_columns = tuple(result_column(name, feature.name) for feature in features)
            types.update({column: f.value_type for column, f in zip(table_columns, features, strict=True)})
            tables.append(
                RequestedTable(table=table, entities=keys, features=features, columns=table_columns, indexes=indexes)
            )
        requested_on_demand = []
        for name, odf_picks in picked_on_demand.items():
            odf = on_demand[name]
            features = tuple(f for wanted in odf_picks for f in odf.features if f.name == wanted)
            odf_columns = tuple(odf.output_column(f.name) for f in features)
            types.update({column: f.value_type for column, f in zip(odf_columns, features, strict=True)})
            requested_on_demand.append(RequestedOnDemand(definition=odf, features=features, columns=odf_columns))
        derived = {column for requested in requested_on_demand for column in requested.columns}
        return cls(
            refs=texts,
            tables=tuple(tables),
            columns=tuple(columns),
            entities=tuple(key_entities.values()),
            types=types,
            on_demand=tuple(requested_on_demand),
            fetched_columns=(*(c for c in columns if c not in derived), *hidden),
            hidden_columns=hidden,
        )


def _pick(odf: OnDemandFeatures, ref: FeatureRef, text: str, picked: dict[str, dict[str, str]]) -> list[str]:
    """Record the features of ``odf`` that ``ref`` asks for; return their result columns."""
    names = odf.feature_names
    if ref.feature is None:
        wanted: tuple[str, ...] = names
    elif ref.feature in names:
        wanted = (ref.feature,)
    else:
        hint = did_you_mean(ref.feature, names) or f" Its features: {', '.join(names)}."
        raise FeatureRefError(text, f"on-demand features {odf.name!r} have no feature {ref.feature!r}.{hint}")
    odf_picks = picked.setdefault(odf.name, {})
    for feature in wanted:
        first = odf_picks.get(feature)
        if first is not None:
            raise FeatureRefError(
                f"{odf.name}:{feature}", f"requested twice (by {first!r} and {text!r}); result columns must be unique"
            )
        odf_picks[feature] = text
    return [odf.output_column(feature) for feature in wanted]


def _add_inputs(
    requested: Sequence[OnDemandFeatures],
    picked: dict[str, dict[str, str]],
    feature_tables: Mapping[str, FeatureTable],
) -> tuple[str, ...]:
    """Add the inputs of ``requested`` to ``picked``; return the columns of those not requested."""
    hidden: list[str] = []
    for odf in requested:
        for text in odf.inputs:
            ref = FeatureRef.parse(text)
            table = feature_tables.get(ref.table)
            if table is None or ref.feature is None or table.get_feature(ref.feature) is None:
                raise FeatureRefError(
                    text, f"input of on-demand features {odf.name!r} is not a registered feature (apply it)"
                )
            table_picks = picked.setdefault(table.name, {})
            if ref.feature not in table_picks:
                table_picks[ref.feature] = f"input of {odf.name}"
                hidden.append(result_column(table.name, ref.feature))
    return tuple(hidden)


def check_passthrough_columns(names: Iterable[str], result_columns: Sequence[str], *, where: str) -> None:
    """Refuse entity or pass-through columns named like result columns (they would hide or spoof them).

    Raises:
        DataError: ``names`` holds a ``<table>__<feature>`` column of ``result_columns``.
    """
    clashing = set(names).intersection(result_columns)
    if clashing:
        clash = sorted(clashing)
        shown = ", ".join(repr(name) for name in clash[:10])
        raise DataError(
            f"The {where} has columns named like result columns: {shown}; rename them "
            "(a pass-through column must not look like a feature's result)."
        )


def _entity(entities: Mapping[str, Entity], name: str, project: str) -> Entity:
    entity = entities.get(name)
    if entity is None:
        raise EntityNotFoundError(name, project=project, known=list(entities))
    return entity


def row_schema(table: FeatureTable, key_types: Mapping[str, ValueType]) -> pa.Schema:
    """Return the normalized rows of ``table`` that ingestion writes to the online store.

    One column per entity key and per feature (named as they are, typed by ``to_arrow()``),
    then ``event_timestamp`` and ``created_timestamp`` (``timestamp[us, UTC]``).

    Args:
        table: the feature table.
        key_types: the value type of (at least) each of the table's entities, by name.
    """
    return pa.schema(
        [
            *(pa.field(name, key_types[name].to_arrow()) for name in table.entities),
            *(pa.field(f.name, f.value_type.to_arrow()) for f in table.features),
            pa.field(EVENT_TIMESTAMP, TIMESTAMP_TYPE),
            pa.field(CREATED_TIMESTAMP, TIMESTAMP_TYPE),
        ]
    )
