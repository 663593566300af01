"""Compiling :mod:`provender.offline.plan` to Spark DataFrames: retrieval and latest rows.

**Retrieval**, per feature table: entity rows and source rows go in one frame, partitioned by
entity key and sorted by time, a feature row before an entity row at equal times
(``event_timestamp <= T``); a running ``max`` of the ranking key ``struct(event timestamp,
created timestamp, values)`` (a missing created time orders lowest, as in the rule) gives each
entity row its winning row, whose ``max_age`` bound is then checked, as DuckDB's ``ASOF`` join
does. One sort per table, no fan-out per key; tables are chained and the result is sorted in
the entity rows' order. **Windowed aggregations**: a range join of the entity rows with their
key's source rows in the longest window, grouped by entity row, each aggregate keeping its own
window (``plan.AGGREGATION_RULE``), joined back by row. **Ingestion**: ``max`` of the same key per entity key over
``[start, end)``; the events that rebuild a table's tiles, partitioned and sorted by key.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, FloatType, StringType

from provender.definitions import Aggregation, Feature, sketch
from provender.offline.plan import (
    CREATED_TIMESTAMP,
    ENTITY_TIMESTAMP,
    EVENT_TIMESTAMP,
    LatestPlan,
    RetrievalPlan,
    TableJoin,
)
from provender.offline.spark.columns import CREATED, EVENT, ORDER, TS, TS_CEIL, col, spark_type, timestamp_literal
from provender.offline.spark.schemas import ROW_ID

_VALUES = "__provender_values"
_VERSION = "__provender_version"  # struct(event, created, values): the ranking key, then the values
_ROW = "__provender_row"
_IS_ENTITY = "__provender_is_entity"
_AT = "__provender_at"
_NO_BOUND = 2**62  # microseconds: more than Spark's timestamps span (years 1..9999), no overflow


def compile_retrieval(
    plan: RetrievalPlan, entities: DataFrame, sources: list[DataFrame], *, passthrough: bool
) -> DataFrame:
    """Compile the retrieval plan to one DataFrame, sorted in the entity rows' order.

    Args:
        plan: the retrieval plan.
        entities: the entity rows with ``ORDER``, ``TS``/``TS_CEIL`` (T rounded down/up) and
            ``__key_<entity>`` (keys cast to their declared types).
        sources: per join, the rows of :func:`provender.offline.spark.sources.source_frame`.
        passthrough: keep every entity column; else only the row id (to stitch the entity
            rows back in on the driver) and ``event_timestamp``.
    """
    current = entities
    for join, source in zip(plan.joins, sources, strict=True):
        if join.aggregations:
            current = _with_windows(join, current, source)
        if not join.plain_features:
            continue
        keys = [f"__provender_k{n}" for n in range(len(join.join_keys))]
        entity_side = current.select(
            *(col(f"__key_{k}").alias(alias) for k, alias in zip(join.join_keys, keys, strict=True)),
            F.col(TS).alias(_AT),
            F.lit(1).alias(_IS_ENTITY),
            F.struct(*(col(c) for c in current.columns)).alias(_ROW),
        )
        values = F.struct(*(col(f.name) for f in join.plain_features)).alias(_VALUES)
        feature_side = source.select(
            *(col(k).alias(alias) for k, alias in zip(join.join_keys, keys, strict=True)),
            F.col(EVENT).alias(_AT),
            F.lit(0).alias(_IS_ENTITY),
            F.struct(F.col(EVENT), F.col(CREATED), values).alias(_VERSION),
        )
        # A key's rows by time, feature rows before entity rows at equal times (event <= T):
        # the running max of the ranking key at an entity row is the rule's winner.
        window = Window.partitionBy(*keys).orderBy(_AT, _IS_ENTITY).rowsBetween(Window.unboundedPreceding, 0)
        won = entity_side.unionByName(feature_side, allowMissingColumns=True).select(  # missing sides are null
            _IS_ENTITY, _ROW, F.max(_VERSION).over(window).alias(_VERSION)
        )
        picked = F.col(_VERSION).isNotNull()
        if join.max_age is not None:
            age = min(join.max_age // timedelta(microseconds=1), _NO_BOUND)
            bound = F.unix_micros(F.col(f"{_ROW}.{TS_CEIL}")) - F.lit(age)
            picked &= F.unix_micros(F.col(f"{_VERSION}.{EVENT}")) >= bound
        picks = [
            F.when(picked, F.col(_VERSION)[_VALUES][f.name]).alias(join.output_column(f)) for f in join.plain_features
        ]
        current = won.where(F.col(_IS_ENTITY) == 1).select(f"{_ROW}.*", *picks)
    stamp = F.col(TS).alias(ENTITY_TIMESTAMP)
    if passthrough:
        select = [stamp if c == ENTITY_TIMESTAMP else col(c) for c in plan.entity_columns]
    else:
        select = [col(ROW_ID), stamp]
    result = current.select(*select, *(col(c) for c in plan.output_columns), F.col(ORDER))
    return result.orderBy(ORDER).drop(ORDER)


def _with_windows(join: TableJoin, current: DataFrame, source: DataFrame) -> DataFrame:
    """``current`` with the aggregation features of ``join`` (one row per entity row, by ``ORDER``)."""
    longest = max(aggregation.window for _, aggregation in join.aggregations) // timedelta(microseconds=1)
    keys = [f"__provender_w{n}" for n in range(len(join.join_keys))]
    left = current.select(F.col(ORDER), F.col(TS).alias(_AT), *(col(f"__key_{k}") for k in join.join_keys))
    inputs = sorted({aggregation.column for _, aggregation in join.aggregations})
    right = source.select(
        *(col(k).alias(alias) for k, alias in zip(join.join_keys, keys, strict=True)),
        F.col(EVENT),
        F.col(CREATED),
        *(col(name) for name in inputs),
    )
    on = [col(f"__key_{k}") == col(alias) for k, alias in zip(join.join_keys, keys, strict=True)]
    on += [F.col(EVENT) <= F.col(_AT), F.unix_micros(F.col(EVENT)) > F.unix_micros(F.col(_AT)) - F.lit(longest)]
    aggregates = [
        _aggregate(feature, aggregation).alias(join.output_column(feature))
        for feature, aggregation in join.aggregations
        if aggregation.function != "approx_count_distinct"
    ]
    pairs = left.join(right, on, "inner")
    grouped = pairs.groupBy(ORDER).agg(*aggregates) if aggregates else pairs.select(ORDER).distinct()
    sketched = [(join.output_column(f), a) for f, a in join.aggregations if a.function == "approx_count_distinct"]
    if sketched:
        grouped = grouped.join(_sketches(pairs, [ORDER], sketched, F.col(_AT)), on=ORDER, how="left")
    joined = current.join(grouped, on=ORDER, how="left")
    counted = {join.output_column(f) for f, aggregation in join.aggregations if aggregation.counts}  # 0 with no event
    return joined.select(*(F.coalesce(col(c), F.lit(0)).alias(c) if c in counted else col(c) for c in joined.columns))


_FLOAT_TEXT = "__provender_float_text"


def _double_repr(value: float | None) -> str | None:
    """A FLOAT or DOUBLE value's text for the sketch (``sketch.register``): its double's ``repr``."""
    return None if value is None else repr(float(value))


def _sketches(pairs: DataFrame, groups: list[str], sketched: list[tuple[str, Aggregation]], at: Column) -> DataFrame:
    """``approx_count_distinct`` per group (``definitions/sketch.py``): ranks per register, then estimates.

    The register and rank are the sketch's SQL (the same text as DuckDB's), so both engines and
    the online tiles hold the same registers.
    """
    result: DataFrame | None = None
    for column in dict.fromkeys(a.column for _, a in sketched):
        text = f"CAST(`{column}` AS STRING)"
        if isinstance(pairs.schema[column].dataType, FloatType | DoubleType):
            # Spark's double-to-text is Java's ("1.0E7"), not the sketch's (Python's repr): a UDF gives it.
            double_text = F.udf(_double_repr, returnType=StringType(), useArrow=False)
            pairs = pairs.withColumn(_FLOAT_TEXT, double_text(F.col(f"`{column}`")))
            text = f"`{_FLOAT_TEXT}`"
        members = [(n, name, a) for n, (name, a) in enumerate(sketched) if a.column == column]
        ranks = [
            F.max(F.when(_in_window(a, at), F.expr(sketch.rank_sql(text)))).alias(f"__provender_m{n}")
            for n, _, a in members
        ]
        registers = pairs.groupBy(*groups, F.expr(sketch.register_sql(text)).alias("__provender_r")).agg(*ranks)
        estimates = registers.groupBy(*groups).agg(
            *(F.expr(sketch.estimate_sql(f"__provender_m{n}")).alias(name) for n, name, _ in members)
        )
        result = estimates if result is None else result.join(estimates, on=groups, how="outer")
    assert result is not None
    return result


def _in_window(aggregation: Aggregation, at: Column) -> Column:
    window = aggregation.window // timedelta(microseconds=1)
    in_window = F.unix_micros(F.col(EVENT)) > F.unix_micros(at) - F.lit(window)
    return in_window & col(aggregation.column).isNotNull()


def _aggregate(feature: Feature, aggregation: Aggregation, at: Column | None = None) -> Column:
    """One aggregate over the rows in its own window before *T* (``at``, else each row's ``_AT``)."""
    value = col(aggregation.column)
    in_window = _in_window(aggregation, F.col(_AT) if at is None else at)
    out = spark_type(feature.value_type)
    function = aggregation.function
    if function == "count":
        return F.count(F.when(in_window, value))
    if function == "count_distinct":
        return F.countDistinct(F.when(in_window, value))
    if function == "sum":
        return F.sum(F.when(in_window, value.cast(out))).cast(out)
    if function == "mean":
        return F.avg(F.when(in_window, value.cast("double")))
    if function in ("min", "max"):
        return (F.min if function == "min" else F.max)(F.when(in_window, value))
    # last: the rule's ranking, a missing created time lowest (nulls order first in Spark)
    ranked = F.struct(F.col(EVENT).alias("t"), F.col(CREATED).alias("c"), value.alias("v"))
    return F.max(F.when(in_window, ranked))["v"]


def compile_latest(plan: LatestPlan, source: DataFrame) -> DataFrame:
    """Compile offline-to-online ingestion: per key, the max of the ranking key in ``[start, end)``."""
    join = plan.join
    values = F.struct(*(col(f.name) for f in join.features)).alias(_VALUES)
    version = F.max(F.struct(F.col(EVENT), F.col(CREATED), values)).alias(_VERSION)
    latest = source.where(F.col(EVENT) < timestamp_literal(plan.end)).groupBy(*join.join_keys).agg(version)
    return latest.select(
        *(col(k) for k in join.join_keys),
        *(F.col(_VERSION)[_VALUES][f.name].alias(f.name) for f in join.features),
        F.col(f"{_VERSION}.{EVENT}").alias(EVENT_TIMESTAMP),
        F.col(f"{_VERSION}.{CREATED}").alias(CREATED_TIMESTAMP),
    )


def compile_latest_windows(plan: LatestPlan, source: DataFrame) -> DataFrame:
    """Ingestion of a table with aggregations: per key, the aggregates at ``end`` (``plan`` module docstring).

    ``source`` holds the rows with ``min(start, end - longest window) <= event <= end``; plain
    features are the rule's pick among the rows with ``start <= event``; rows are stamped ``end``.
    """
    join = plan.join
    end = timestamp_literal(plan.end)
    recent = F.col(EVENT) >= timestamp_literal(plan.start)
    values = []
    sketched = []
    for feature in join.features:
        aggregation = join.table.get_aggregation(feature.name)
        if aggregation is None:
            ranked = F.struct(F.col(EVENT).alias("t"), F.col(CREATED).alias("c"), col(feature.name).alias("v"))
            values.append(F.max(F.when(recent, ranked))["v"].alias(feature.name))
        elif aggregation.function == "approx_count_distinct":  # estimated below, by key
            sketched.append((feature.name, aggregation))
        elif aggregation.counts:  # count and count_distinct: 0 with no event
            values.append(F.coalesce(_aggregate(feature, aggregation, end), F.lit(0)).alias(feature.name))
        else:
            values.append(_aggregate(feature, aggregation, end).alias(feature.name))
    rows = source.where(F.col(EVENT) <= end)
    keys = list(join.join_keys)
    grouped = rows.groupBy(*keys).agg(*values) if values else rows.select(*keys).distinct()
    if sketched:
        grouped = grouped.join(_sketches(rows, keys, sketched, end), on=keys, how="left")
    counted = {name for name, _ in sketched}
    return grouped.select(
        *(col(k) for k in join.join_keys),
        *(F.coalesce(col(f.name), F.lit(0)).alias(f.name) if f.name in counted else col(f.name) for f in join.features),
        end.alias(EVENT_TIMESTAMP),
        F.lit(None).cast("timestamp").alias(CREATED_TIMESTAMP),
    )


def compile_events(plan: LatestPlan, source: DataFrame, *, lower: datetime) -> DataFrame:
    """The events with ``lower < event <= end``: keys, the aggregations' inputs, event and created times.

    Partitioned by entity key and sorted by key, then time (a missing created time first), as
    DuckDB's ``read_events`` orders them: each key's events are contiguous in one partition
    (batch ingestion rebuilds each key's tiles from them, ``tile_writer.TileWriter.rebuild``).
    """
    join = plan.join
    keys = list(join.join_keys)
    inputs = list(dict.fromkeys(a.column for a in join.table.aggregations))
    rows = source.where((F.col(EVENT) > timestamp_literal(lower)) & (F.col(EVENT) <= timestamp_literal(plan.end)))
    events = rows.select(
        *(col(k) for k in [*keys, *inputs]),
        F.col(EVENT).alias(EVENT_TIMESTAMP),
        F.col(CREATED).alias(CREATED_TIMESTAMP),
    )
    return events.repartition(*(col(k) for k in keys)).sortWithinPartitions(
        *(col(k) for k in keys), F.col(EVENT_TIMESTAMP), F.col(CREATED_TIMESTAMP).asc_nulls_first()
    )
