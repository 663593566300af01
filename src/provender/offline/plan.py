"""The point-in-time rule, stated once, and the plans every offline engine compiles.

**The rule** (DESIGN.md, "Semantics"). For each entity row (entity key columns and its
``event_timestamp`` *T*) and each requested feature table:

1. candidates are the table's rows with the same entity key, ``event_timestamp <= T`` and, if the
   table has a ``max_age``, ``event_timestamp >= T - max_age`` (both bounds inclusive);
2. the candidate with the greatest ``(event_timestamp, created_timestamp)`` wins, a missing
   ``created_timestamp`` ranking below any present one; its values are returned;
3. with no candidate, the table's features are null;
4. every entity row is kept, duplicates included, in the input's order, with its extra columns.

**Windowed aggregations** (DESIGN.md, "Transformations"). A requested aggregation feature
(:class:`~provender.definitions.Aggregation`) of an entity row at *T* aggregates the input column
over the key's source rows with ``T - window < event_timestamp <= T`` (lower bound exclusive,
upper inclusive; ``max_age`` does not apply). Null inputs are skipped; with no row, ``count`` and
``count_distinct`` give 0 and the others null; ``last`` takes the row ranked first by the rule's
ranking (among rows with a non-null input). :data:`AGGREGATION_RULE` carries the bounds as data.
Offline-to-online ingestion writes, per key, the aggregates at *T* = ``end``: the window
``end - window < event_timestamp <= end`` (so the online value at ``end`` equals the historical
one at ``end``), for every key with a row in ``[min(start, end - longest window), end]``; such a
row is stamped ``event_timestamp = end`` and its plain features are the rule's pick among the rows
with ``start <= event_timestamp <= end``.

Timestamps without a time zone are UTC. :data:`RULE` carries the rule as data; engines compile it
idiomatically (DuckDB: an ``ASOF`` join on the ranking key then the ``max_age`` bound; Spark: a
window ranked by the same key). Offline-to-online ingestion is the same rule evaluated at
``end`` over the rows with ``start <= event_timestamp < end`` (:class:`LatestPlan`).

Building a plan validates everything that can be checked without reading data: refs (resolved
by the one request model, :class:`~provender.definitions.request.FeatureRequest`), tables,
entity columns and their types; so bad input fails before any heavy work.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pyarrow as pa

from provender.definitions import Aggregation, BatchSource, Entity, Feature, FeatureTable, OnDemandFeatures
from provender.definitions.request import (
    CREATED_TIMESTAMP,
    EVENT_TIMESTAMP,
    FeatureRequest,
    check_passthrough_columns,
    result_column,
)
from provender.errors import DataError
from provender.offline.lineage import PreviousRead, SourceInput

ENTITY_TIMESTAMP = EVENT_TIMESTAMP
"""The entity rows' timestamp column (*T* of the rule)."""

__all__ = [
    "AGGREGATION_RULE",
    "CREATED_TIMESTAMP",
    "ENTITY_TIMESTAMP",
    "EVENT_TIMESTAMP",
    "RULE",
    "AggregationRule",
    "LatestPlan",
    "PointInTimeRule",
    "RetrievalPlan",
    "SourceColumns",
    "TableJoin",
    "build_retrieval_plan",
    "check_key_type",
    "check_source_schema",
    "is_compatible",
    "null_entity_times_error",
    "refuse_aggregations",
    "source_columns",
    "table_join",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class PointInTimeRule:
    """The rule as data, for engines and docs: the ranking and the window bounds."""

    ranking: tuple[str, ...] = ("event_timestamp DESC", "created_timestamp DESC NULLS LAST")
    event_at_most_entity_time: bool = True  # event_timestamp <= T
    max_age_lower_bound_inclusive: bool = True  # event_timestamp >= T - max_age


RULE = PointInTimeRule()


@dataclass(frozen=True, slots=True, kw_only=True)
class AggregationRule:
    """The window bounds of an aggregation at *T*, as data: ``T - window < event_timestamp <= T``."""

    lower_bound_inclusive: bool = False  # event_timestamp > T - window
    upper_bound_inclusive: bool = True  # event_timestamp <= T
    empty_window: tuple[tuple[str, int | None], ...] = (("count", 0), ("count_distinct", 0))  # others: null


AGGREGATION_RULE = AggregationRule()


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceColumns:
    """How a feature table's columns are named in its batch source (after ``field_mapping``)."""

    keys: tuple[str, ...]
    features: tuple[str, ...]
    event_timestamp: str
    created_timestamp: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TableJoin:
    """One feature table's part of a retrieval: its key, requested features, source and window.

    Attributes:
        entities: the table's entities, in key order (their names are the join columns).
        features: the requested features, in the order of the refs.
        delta_since: with a Delta source, what an earlier ingestion read: skip its files unless
            their statistics reach outside its window (incremental ingestion); the whole snapshot
            if the history since is not append-only.
    """

    table: FeatureTable
    entities: tuple[Entity, ...]
    features: tuple[Feature, ...]
    source: BatchSource
    columns: SourceColumns
    delta_since: PreviousRead | None = None

    @property
    def name(self) -> str:
        """The feature table's name."""
        return self.table.name

    @property
    def join_keys(self) -> tuple[str, ...]:
        """The entity columns the join matches on."""
        return tuple(e.name for e in self.entities)

    @property
    def max_age(self) -> timedelta | None:
        """The table's max_age (None: no lower bound)."""
        return self.table.max_age

    @property
    def plain_features(self) -> tuple[Feature, ...]:
        """The requested features read as they are (the point-in-time rule picks their row)."""
        return tuple(f for f in self.features if self.table.get_aggregation(f.name) is None)

    @property
    def aggregations(self) -> tuple[tuple[Feature, Aggregation], ...]:
        """The requested aggregation features with their aggregations, in request order."""
        pairs = ((f, self.table.get_aggregation(f.name)) for f in self.features)
        return tuple((f, a) for f, a in pairs if a is not None)

    @property
    def source_features(self) -> tuple[Feature, ...]:
        """The source features an engine reads: the plain requested ones and the aggregations' inputs."""
        wanted = {f.name for f in self.plain_features} | {a.column for _, a in self.aggregations}
        return tuple(f for f in self.table.source_features if f.name in wanted)

    @property
    def lookback(self) -> timedelta | None:
        """How long before *T* a source row can still count (None: unbounded)."""
        reach = [a.window for _, a in self.aggregations]
        if self.plain_features:
            if self.max_age is None:
                return None
            reach.append(self.max_age)
        return max(reach) if reach else None

    def output_column(self, feature: Feature) -> str:
        """The result column of ``feature``: ``<table>__<feature>``."""
        return result_column(self.table.name, feature.name)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetrievalPlan:
    """A validated historical retrieval: entity rows joined with one or more feature tables.

    Attributes:
        entity_columns: the entity source's columns, in order (all pass through).
        joins: one per feature table, in order of first appearance in the refs.
        output_columns: the feature columns the engine returns, in ref order (after the entity
            columns), then the inputs of on-demand features not requested themselves.
        request: the resolved refs (with the on-demand features, computed after the engine's join).
    """

    entity_columns: tuple[str, ...]
    joins: tuple[TableJoin, ...]
    output_columns: tuple[str, ...]
    request: FeatureRequest | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LatestPlan:
    """Offline-to-online ingestion: per entity key, the row the rule picks at ``end``.

    The candidates are the rows with ``start <= event_timestamp < end``. With
    ``count_source_rows``, an engine that can count them cheaply adds a ``SOURCE_ROWS`` column
    (:mod:`provender.definitions.request`): the candidates of each key (an engine may not).
    """

    join: TableJoin
    start: datetime
    end: datetime
    count_source_rows: bool = False
    inputs: list[SourceInput] = field(default_factory=list, compare=False)
    """What the engine read, appended as it opens the source (the job's lineage)."""


def source_columns(table: FeatureTable, source: BatchSource) -> SourceColumns:
    """Return the source column names of ``table``'s keys and features (``field_mapping`` applied)."""
    to_source = {target: column for column, target in source.field_mapping.items()}
    return SourceColumns(
        keys=tuple(to_source.get(name, name) for name in table.entities),
        features=tuple(to_source.get(f.name, f.name) for f in table.source_features),
        event_timestamp=source.event_timestamp_column,
        created_timestamp=source.created_timestamp_column,
    )


def table_join(table: FeatureTable, features: Sequence[Feature], entities: Mapping[str, Entity]) -> TableJoin:
    """Return the join of ``table`` for ``features``; the table needs a batch source."""
    if table.batch_source is None:
        raise DataError(
            f"Feature table {table.name!r} has no batch_source, so it cannot be read offline; "
            "give it a FileSource (stream-only tables can log to one)."
        )
    return TableJoin(
        table=table,
        entities=tuple(entities[name] for name in table.entities),
        features=tuple(features),
        source=table.batch_source,
        columns=source_columns(table, table.batch_source),
    )


def refuse_aggregations(joins: Sequence[TableJoin], *, engine: str, what: str) -> None:
    """Raise DataError if a join's table has aggregations: for engine paths that do not compute them."""
    for join in joins:
        if join.table.aggregations:
            raise DataError(
                f"Feature table {join.name!r} has windowed aggregations, which the {engine} engine does not "
                f"compute yet for {what}; use the duckdb offline engine for it."
            )


def build_retrieval_plan(
    refs: Sequence[str],
    *,
    entity_schema: pa.Schema,
    tables: Mapping[str, FeatureTable],
    entities: Mapping[str, Entity],
    project: str,
    on_demand_features: Mapping[str, OnDemandFeatures] | None = None,
) -> RetrievalPlan:
    """Validate a retrieval against the registry and the entity rows' schema, and plan it.

    Raises:
        FeatureRefError, FeatureTableNotFoundError, EntityNotFoundError: bad refs
            (:meth:`FeatureRequest.resolve`).
        DataError: a missing ``event_timestamp`` or entity column, an entity column of the wrong
            type, or an entity-source column that collides with a result column.
    """
    request = FeatureRequest.resolve(
        refs, feature_tables=tables, entities=entities, project=project, on_demand_features=on_demand_features
    )
    joins = tuple(table_join(requested.table, requested.features, entities) for requested in request.tables)
    _check_entity_schema(entity_schema, joins, request.all_columns)
    return RetrievalPlan(
        entity_columns=tuple(entity_schema.names),
        joins=joins,
        output_columns=request.fetched_columns,
        request=request,
    )


def _check_entity_schema(schema: pa.Schema, joins: Sequence[TableJoin], output_columns: Sequence[str]) -> None:
    names = schema.names
    if ENTITY_TIMESTAMP not in names:
        raise DataError(
            f"The entity source has no {ENTITY_TIMESTAMP!r} column (columns: {', '.join(names)}); "
            "add the time at which each row's features are wanted."
        )
    stamp_type = schema.field(ENTITY_TIMESTAMP).type
    # A null-typed column (an empty or all-null frame) passes here; null times are reported by row later.
    if not (pa.types.is_timestamp(stamp_type) or pa.types.is_date(stamp_type) or pa.types.is_null(stamp_type)):
        raise DataError(f"The entity source's {ENTITY_TIMESTAMP!r} column has type {stamp_type}; expected a timestamp.")
    for join in joins:
        for entity in join.entities:
            if entity.name not in names:
                raise DataError(
                    f"The entity source has no column {entity.name!r}, the key of feature table "
                    f"{join.name!r} (entity columns given: {', '.join(names)})."
                )
            check_key_type(entity, schema.field(entity.name).type, where="entity source")
    check_passthrough_columns(names, output_columns, where="entity source")


def null_entity_times_error(count: int, first: object) -> DataError:
    """The error for entity rows without a time: ``count`` of them, the first at ``first``."""
    return DataError(
        f"The entity source's {ENTITY_TIMESTAMP!r} column is null in {count} row(s), "
        f"the first at {first}; every entity row needs a time."
    )


def check_key_type(entity: Entity, found: pa.DataType, *, where: str) -> None:
    """Raise DataError unless an Arrow column of type ``found`` can hold ``entity``'s keys exactly."""
    declared = entity.value_type.to_arrow()
    if found == declared or pa.types.is_null(found):
        return
    if pa.types.is_integer(declared) and pa.types.is_integer(found) and _int_fits(found, declared):
        return
    if pa.types.is_string(declared) and (pa.types.is_large_string(found) or pa.types.is_string_view(found)):
        return
    if pa.types.is_binary(declared) and pa.types.is_large_binary(found):
        return
    raise DataError(
        f"Column {entity.name!r} of the {where} has type {found}, but entity {entity.name!r} is "
        f"{entity.value_type} ({declared}); convert the column."
    )


def _int_fits(found: pa.DataType, declared: pa.DataType) -> bool:
    if pa.types.is_unsigned_integer(found):
        return bool(found.bit_width < declared.bit_width)
    return bool(found.bit_width <= declared.bit_width)


def check_source_schema(join: TableJoin, schema: pa.Schema) -> None:
    """Raise DataError unless the source has the table's columns with compatible types.

    The message names the table, the column, the declared and the found type.
    """
    columns = join.columns
    where = f"batch source of feature table {join.name!r} ({join.source.path})"
    expected: list[tuple[str, str, pa.DataType | None]] = [
        *(
            (column, f"entity {e.name!r}", e.value_type.to_arrow())
            for column, e in zip(columns.keys, join.entities, strict=True)
        ),
        *(
            (column, f"feature {f.name!r}", f.value_type.to_arrow())
            for column, f in zip(columns.features, join.table.source_features, strict=True)
        ),
        (columns.event_timestamp, "event timestamp", None),
    ]
    if columns.created_timestamp:
        expected.append((columns.created_timestamp, "created timestamp", None))
    for column, role, declared in expected:
        if column not in schema.names:
            raise DataError(f"The {where} has no column {column!r} ({role}); columns: {', '.join(schema.names)}.")
        found = schema.field(column).type
        ok = _is_timestamp_like(found) if declared is None else is_compatible(declared, found)
        if not ok:
            wanted = "a timestamp" if declared is None else str(declared)
            raise DataError(f"Column {column!r} ({role}) of the {where} has type {found}, but {wanted} is declared.")


def _is_timestamp_like(found: pa.DataType) -> bool:
    return bool(pa.types.is_timestamp(found) or pa.types.is_date(found) or pa.types.is_null(found))


def is_compatible(declared: pa.DataType, found: pa.DataType) -> bool:
    """Whether values of Arrow type ``found`` convert to ``declared`` without loss."""
    return bool(_is_compatible(declared, found))


def _is_compatible(declared: pa.DataType, found: pa.DataType) -> object:  # noqa: PLR0911 - one return per type
    if found == declared or pa.types.is_null(found):
        return True
    if pa.types.is_integer(declared) and pa.types.is_integer(found):
        return _int_fits(found, declared)
    if pa.types.is_float64(declared):
        return pa.types.is_float32(found) or pa.types.is_float16(found)
    if pa.types.is_float32(declared):
        return pa.types.is_float16(found)
    if pa.types.is_string(declared):
        return pa.types.is_large_string(found) or pa.types.is_string_view(found)
    if pa.types.is_binary(declared):
        return pa.types.is_large_binary(found) or pa.types.is_fixed_size_binary(found)
    if pa.types.is_timestamp(declared):
        return pa.types.is_timestamp(found)
    if pa.types.is_list(declared) and (pa.types.is_list(found) or pa.types.is_large_list(found)):
        return _is_compatible(declared.value_type, found.value_type)
    return False
