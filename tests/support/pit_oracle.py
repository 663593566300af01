"""A brute-force point-in-time join, written row by row to be obviously correct.

It states DESIGN.md's rule directly, with no sorting tricks and no asof joins. For each entity
row (its keys and its ``event_timestamp`` T) and each requested feature table:

1. candidates: the table's rows with the same entity key, ``event_timestamp <= T`` and, if the
   table has a ``max_age``, ``event_timestamp >= T - max_age`` (both inclusive);
2. the winner has the greatest ``(event_timestamp, created_timestamp)``, a missing
   ``created_timestamp`` ranking below any present one; its values are returned;
3. no candidate: the table's features are null;
4. every entity row is kept, in order, with its extra columns.

Naive timestamps are UTC; ``event_timestamp`` comes back UTC-aware, at microsecond precision
(an entity row's sub-microsecond digits are dropped from the result, never used to widen the
window). When several candidates
tie on the whole ranking key (equal event times and no created column, or equal created times)
the rule does not say which wins, so the oracle accepts the values of any of them; values of
one table always come from one row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pyarrow as pa

import provender as pv

ENTITY_TIMESTAMP = "event_timestamp"


def to_utc(at: datetime) -> datetime:
    """Return ``at`` as an aware UTC datetime (naive means UTC); a pandas Timestamp keeps its ns."""
    if at.tzinfo is None:
        return at.replace(tzinfo=UTC)
    return at.astimezone(UTC)


def to_result_time(at: datetime) -> datetime:
    """Return the ``event_timestamp`` a result row carries for entity time ``at``: UTC, in microseconds."""
    at = to_utc(at)
    if isinstance(at, pd.Timestamp):
        floored: datetime = at.floor("us").to_pydatetime()
        return floored
    return at


@dataclass(frozen=True)
class SourceData:
    """A feature table and the rows of its batch source, keyed by source column names."""

    table: pv.FeatureTable
    rows: Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class ExpectedRow:
    """What one result row must hold.

    Attributes:
        passthrough: the entity row's columns, ``event_timestamp`` as aware UTC.
        choices: per requested table, the acceptable ``{result column: value}`` dicts
            (one, unless the winner is tied).
    """

    passthrough: dict[str, Any]
    choices: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def mismatches(self, got: Mapping[str, Any]) -> list[str]:
        """Return what differs between ``got`` and this expectation (empty when it matches)."""
        problems = []
        for column, want in self.passthrough.items():
            if not same_value(got.get(column), want):
                problems.append(f"column {column!r}: got {got.get(column)!r}, expected {want!r}")
        for table, options in self.choices.items():
            found = {column: got.get(column) for column in options[0]}
            if not any(all(same_value(found[c], v) for c, v in option.items()) for option in options):
                problems.append(f"table {table!r}: got {found!r}, expected one of {options!r}")
        return problems


@dataclass(frozen=True)
class Expected:
    """The oracle's answer: result columns in order, and one expectation per entity row."""

    columns: list[str]
    rows: list[ExpectedRow]


def same_value(got: object, want: object) -> bool:
    """Compare result values; datetimes compare as instants (naive means UTC)."""
    if isinstance(got, datetime) and isinstance(want, datetime):
        return to_utc(got) == to_utc(want)
    if got is None or want is None:
        return got is None and want is None
    return type(got) is type(want) and got == want


def expand_refs(refs: Sequence[str], tables: Mapping[str, pv.FeatureTable]) -> list[tuple[str, str]]:
    """Return ``(table, feature)`` pairs in ref order; ``"<table>"`` means all its features."""
    pairs: list[tuple[str, str]] = []
    for ref in refs:
        table_name, _, feature = ref.partition(":")
        table = tables[table_name]
        names = [feature] if feature else [f.name for f in table.features]
        pairs.extend((table_name, name) for name in names)
    return pairs


def _source_name(table: pv.FeatureTable, name: str) -> str:
    assert table.batch_source is not None
    for column, target in table.batch_source.field_mapping.items():
        if target == name:
            return column
    return name


def _rank(row: Mapping[str, Any], table: pv.FeatureTable) -> tuple[datetime, int, datetime | None]:
    """The ranking key: event time, then created time with missing ranking lowest."""
    source = table.batch_source
    assert source is not None
    event = to_utc(row[source.event_timestamp_column])
    created = row.get(source.created_timestamp_column) if source.created_timestamp_column else None
    if created is None:
        return (event, 0, None)
    return (event, 1, to_utc(created))


def _rank_lt(a: tuple[datetime, int, datetime | None], b: tuple[datetime, int, datetime | None]) -> bool:
    if a[0] != b[0]:
        return a[0] < b[0]
    if a[1] != b[1]:
        return a[1] < b[1]
    if a[2] is None or b[2] is None:
        return False
    return a[2] < b[2]


def candidates(entity_row: Mapping[str, Any], data: SourceData) -> list[Mapping[str, Any]]:
    """Return the rows of ``data`` that rule 1 allows for ``entity_row`` (unordered)."""
    table = data.table
    source = table.batch_source
    assert source is not None
    at = to_utc(entity_row[ENTITY_TIMESTAMP])
    found = []
    for row in data.rows:
        same_key = True
        for entity in table.entities:
            key = entity_row[entity]
            value = row[_source_name(table, entity)]
            if key is None or value is None or key != value:
                same_key = False
        if not same_key:
            continue
        event = row[source.event_timestamp_column]
        if event is None:
            continue
        event = to_utc(event)
        if event > at:
            continue
        if table.max_age is not None and event < at - table.max_age:
            continue
        found.append(row)
    return found


def winners(entity_row: Mapping[str, Any], data: SourceData) -> list[Mapping[str, Any]]:
    """Return the candidates with the greatest ranking key (several only on a full tie)."""
    best: list[Mapping[str, Any]] = []
    for row in candidates(entity_row, data):
        if not best or _rank_lt(_rank(best[0], data.table), _rank(row, data.table)):
            best = [row]
        elif not _rank_lt(_rank(row, data.table), _rank(best[0], data.table)):
            best.append(row)
    return best


def retrieve(
    entity_rows: Sequence[Mapping[str, Any]],
    sources: Sequence[SourceData],
    refs: Sequence[str],
    *,
    entity_columns: Sequence[str] | None = None,
) -> Expected:
    """Return what ``get_historical_features(refs, entity_rows)`` must return.

    Args:
        entity_rows: the entity rows, each with the key columns and ``event_timestamp``.
        sources: every feature table the refs name, with its source rows.
        refs: feature refs, ``"<table>:<feature>"`` or ``"<table>"``.
        entity_columns: the entity source's columns in order (default: the first row's keys).
    """
    tables = {s.table.name: s.table for s in sources}
    data_by_name = {s.table.name: s for s in sources}
    pairs = expand_refs(refs, tables)
    if entity_columns is None:
        entity_columns = list(entity_rows[0]) if entity_rows else []
    columns = [*entity_columns, *(f"{t}__{f}" for t, f in pairs)]
    requested: dict[str, list[str]] = {}
    for table_name, feature in pairs:
        requested.setdefault(table_name, []).append(feature)
    expected = []
    for entity_row in entity_rows:
        passthrough = {c: entity_row[c] for c in entity_columns}
        passthrough[ENTITY_TIMESTAMP] = to_result_time(entity_row[ENTITY_TIMESTAMP])
        choices = {}
        for table_name, features in requested.items():
            data = data_by_name[table_name]
            options = []
            for row in winners(entity_row, data):
                option = {f"{table_name}__{f}": row.get(_source_name(data.table, f)) for f in features}
                if option not in options:
                    options.append(option)
            choices[table_name] = options or [{f"{table_name}__{f}": None for f in features}]
        expected.append(ExpectedRow(passthrough=passthrough, choices=choices))
    return Expected(columns=columns, rows=expected)


def assert_matches(got: pa.Table, expected: Expected) -> None:
    """Assert that a retrieval result has the oracle's columns, row count, order and values."""
    assert got.column_names == expected.columns, f"columns {got.column_names} != {expected.columns}"
    assert got.num_rows == len(expected.rows), f"{got.num_rows} rows, expected {len(expected.rows)}"
    problems: list[str] = []
    for n, (row, want) in enumerate(zip(got.to_pylist(), expected.rows, strict=True)):
        problems.extend(f"row {n}: {p}" for p in want.mismatches(row))
    assert not problems, "result differs from the oracle:\n" + "\n".join(problems[:20])
