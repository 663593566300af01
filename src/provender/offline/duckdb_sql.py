"""SQL building blocks of the DuckDB engine: internal names, types, literals, times, windows.

:func:`compile_windows` and :func:`aggregate_sql` compile windowed aggregations
(``plan.AGGREGATION_RULE``): a range join of the entity rows with the source rows of their key
in the longest window, grouped by entity row, each aggregate keeping its own window by a FILTER.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from provender.definitions import Aggregation, Feature, FeatureTable, ValueType, sketch
from provender.offline.plan import TableJoin

_ROW_ID = "__provender_row_id"
_TS = "__provender_ts"
_TS_CEIL = "__provender_ts_ceil"
_ENTITY_COLUMN = "__provender_e{}"
_EVENT = "__provender_event_ts"
_CREATED = "__provender_created_ts"
_RANK = "__provender_rank"
# A max_age this long bounds nothing, and T - max_age would overflow DuckDB's interval arithmetic.
_AGE_WITHOUT_BOUND = timedelta(days=100_000 * 365)

_SQL_TYPES = {
    ValueType.BOOL: "BOOLEAN",
    ValueType.INT32: "INTEGER",
    ValueType.INT64: "BIGINT",
    ValueType.FLOAT: "FLOAT",
    ValueType.DOUBLE: "DOUBLE",
    ValueType.STRING: "VARCHAR",
    ValueType.BYTES: "BLOB",
    ValueType.UNIX_TIMESTAMP: "TIMESTAMPTZ",
}


def sql_type(value_type: ValueType) -> str:
    """Return the DuckDB type of ``value_type``."""
    return f"{_SQL_TYPES[value_type.element]}[]" if value_type.is_list else _SQL_TYPES[value_type]


def quote(identifier: str) -> str:
    """Quote an SQL identifier."""
    return '"' + identifier.replace('"', '""') + '"'


def literal(text: str) -> str:
    """Quote an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _timestamp_literal(at: datetime) -> str:
    naive = at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at
    return f"TIMESTAMP {literal(naive.isoformat(sep=' '))}"


def _interval(age: timedelta) -> str:
    return f"INTERVAL {age // timedelta(microseconds=1)} MICROSECONDS"


def _is_nanoseconds(found: pa.DataType) -> bool:
    return bool(pa.types.is_timestamp(found) and found.unit == "ns")


def _floor_timestamp(column: str, found: pa.DataType) -> str:
    """SQL for ``column`` (Arrow type ``found``) as a naive UTC TIMESTAMP, nanoseconds rounded down.

    DuckDB's CAST from nanoseconds rounds to the nearest microsecond, which can move a time past
    an entity row's T and join a value from the future; rounding down keeps ``event <= T``.
    """
    if _is_nanoseconds(found):
        return f"make_timestamp(epoch_us(CAST({column} AS TIMESTAMP_NS)))"
    return _naive_utc(column, found)


def _ceil_timestamp(column: str, found: pa.DataType) -> str:
    """Like :func:`_floor_timestamp`, nanoseconds rounded up (for the ``T - max_age`` bound)."""
    if _is_nanoseconds(found):
        ns = f"CAST({column} AS TIMESTAMP_NS)"
        return f"make_timestamp(epoch_us({ns}) + CASE WHEN epoch_ns({ns}) % 1000 <> 0 THEN 1 ELSE 0 END)"
    return _naive_utc(column, found)


def _naive_utc(column: str, found: pa.DataType) -> str:
    """SQL for ``column`` (Arrow type ``found``, microseconds or coarser) as a naive UTC TIMESTAMP.

    A time-zone-aware column is read through its UTC epoch rather than CAST, which converts
    through ICU row by row: about 20x slower, and a third of the CPU of a 10M-row retrieval
    (benchmarks/historical.py). Same values as CAST under the engine's UTC session, infinities
    included (they take the CAST branch).
    """
    if pa.types.is_timestamp(found) and found.tz is not None:
        return (
            f"CASE WHEN isfinite({column}) THEN make_timestamp(epoch_us({column})) ELSE CAST({column} AS TIMESTAMP) END"
        )
    return f"CAST({column} AS TIMESTAMP)"


def compile_windows(join: TableJoin, source: str) -> str:
    """The aggregation features of ``join`` per entity row (by row id): a range join and GROUP BY.

    Each source row of the key with ``T - longest window < event <= T`` joins the entity row;
    each aggregate then keeps its own window with a FILTER (``plan.AGGREGATION_RULE``).
    """
    longest = max(aggregation.window for _, aggregation in join.aggregations)
    on = [f"e.{quote('__key_' + k)} = src.{quote(k)}" for k in join.join_keys]
    on += [f"src.{_EVENT} <= e.{_TS}", f"src.{_EVENT} > e.{_TS} - {_interval(longest)}"]
    select = [f"e.{_ROW_ID}"]
    select += [
        f"{aggregate_sql(feature, aggregation, at=f'e.{_TS}', src='src.')} AS {quote(join.output_column(feature))}"
        for feature, aggregation in join.aggregations
        if aggregation.function != "approx_count_distinct"
    ]
    joined = f"e JOIN ({source}) AS src ON {' AND '.join(on)}"
    sql = f"SELECT {', '.join(select)} FROM {joined} GROUP BY e.{_ROW_ID}"
    sketched = [(f, a) for f, a in join.aggregations if a.function == "approx_count_distinct"]
    if not sketched:
        return sql
    estimates = sketch_sql(
        sketched,
        joined,
        [f"e.{_ROW_ID}"],
        at=f"e.{_TS}",
        src="src.",
        names=lambda f: quote(join.output_column(f)),
        floats=float_inputs(join.table),
    )
    return f"SELECT * FROM ({sql}) q LEFT JOIN ({estimates}) z USING ({_ROW_ID})"


def float_inputs(table: FeatureTable) -> frozenset[str]:
    """The FLOAT and DOUBLE features of ``table`` (``approx_count_distinct`` hashes them as doubles)."""
    return frozenset(f.name for f in table.features if sketch.is_float(f.value_type))


def sketch_sql(  # noqa: PLR0913 - the relation, its groups and columns, and what to name
    sketched: list[tuple[Feature, Aggregation]],
    relation: str,
    groups: list[str],
    *,
    at: str,
    src: str,
    names: Callable[[Feature], str],
    floats: frozenset[str] = frozenset(),
) -> str:
    """``approx_count_distinct`` (``sketch.py``) per group: the highest rank per register, then the estimate.

    ``floats``: the input columns of type FLOAT or DOUBLE (hashed by their double's text).

    ``relation`` holds the events (columns prefixed ``src``), ``groups`` the grouping columns (an
    entity row id, or the entity keys), ``at`` the time *T*; each estimate is named ``names(feature)``.
    """
    plain = [g.rsplit(".", 1)[-1] for g in groups]
    by_column: dict[str, list[tuple[int, Feature, Aggregation]]] = {}
    for n, (feature, aggregation) in enumerate(sketched):
        by_column.setdefault(aggregation.column, []).append((n, feature, aggregation))
    parts = []
    for column, members in by_column.items():  # registers of one input column: one GROUP BY
        value = f"{src}{quote(column)}"
        text = sketch.text_sql(value, floating=column in floats)
        ranks, estimates = [], []
        for n, feature, aggregation in members:
            window = f"{src}{_EVENT} > {at} - {_interval(aggregation.window)} AND {value} IS NOT NULL"
            ranks.append(f"max({sketch.rank_sql(text)}) FILTER (WHERE {window}) AS __provender_m{n}")
            estimates.append(f"{sketch.estimate_sql(f'__provender_m{n}')} AS {names(feature)}")
        keys = [f"{g} AS {p}" for g, p in zip(groups, plain, strict=True)]
        by = ", ".join([*groups, sketch.register_sql(text)])
        inner = f"SELECT {', '.join([*keys, *ranks])} FROM {relation} GROUP BY {by}"
        parts.append(f"SELECT {', '.join([*plain, *estimates])} FROM ({inner}) GROUP BY {', '.join(plain)}")
    sql = f"({parts[0]}) z0"
    for n, part in enumerate(parts[1:], start=1):
        sql += f" JOIN ({part}) z{n} USING ({', '.join(plain)})"
    return f"SELECT * FROM {sql}"


def aggregate_sql(feature: Feature, aggregation: Aggregation, *, at: str, src: str) -> str:
    """SQL of one aggregate at time ``at`` over source columns prefixed ``src`` (null inputs skipped)."""
    value = f"{src}{quote(aggregation.column)}"
    in_window = f"FILTER (WHERE {src}{_EVENT} > {at} - {_interval(aggregation.window)} AND {value} IS NOT NULL)"
    out = sql_type(feature.value_type)
    function = aggregation.function
    if function == "count":
        return f"count({value}) {in_window}"
    if function == "count_distinct":
        return f"count(DISTINCT {value}) {in_window}"
    if function == "sum":
        return f"CAST(sum(CAST({value} AS {out})) {in_window} AS {out})"
    if function == "mean":
        return f"avg(CAST({value} AS DOUBLE)) {in_window}"
    if function in ("min", "max"):
        return f"{function}({value}) {in_window}"
    rank = f"{{'t': {src}{_EVENT}, 'c': coalesce({src}{_CREATED}, '-infinity'::TIMESTAMP)}}"
    return f"arg_max({value}, {rank}) {in_window}"  # last
