"""Feature statistics on Spark: the shared SQL of :mod:`provender.offline.statistics` in Spark SQL.

The window's feature columns are cached once (``persist``), registered as a temporary view, and
read by the same queries DuckDB runs (:mod:`provender.offline.statistics_sql`), so the numbers
are DuckDB's (means and deviations up to summation order); ``percentile`` (Spark's exact
quantile) serves only features with an infinite range. Rows with a null entity key are left
out, as in every Spark read of a source.
"""

from __future__ import annotations

import uuid

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from provender.offline.files import DateRange
from provender.offline.spark.columns import EVENT, col, quote, timestamp_literal
from provender.offline.spark.failures import run_in_group
from provender.offline.spark.sources import SourceContext, source_frame
from provender.offline.statistics import StatisticsPlan, TableStatistics
from provender.offline.statistics_sql import Dialect, compute_statistics

SPARK_DIALECT = Dialect(
    quote=quote,
    quantiles=lambda x, qs: f"percentile({x}, array({', '.join(repr(q) for q in qs)}))",
    list_length=lambda x: f"CASE WHEN {x} IS NULL THEN NULL ELSE size({x}) END",
    byte_length=lambda x: f"length({x})",
    collect=lambda x: f"collect_list({x})",
)


def spark_statistics(session: SparkSession, plan: StatisticsPlan, *, context: SourceContext) -> TableStatistics:
    """Compute the statistics of ``plan`` on ``session`` (sources read with ``context``)."""
    join = plan.join
    dates = DateRange.for_interval(plan.start, plan.end)
    source = source_frame(session, join, dates, context=context, lower=plan.start, upper=None)
    frame = source.where(F.col(EVENT) < timestamp_literal(plan.end)).select(*(col(f.name) for f in join.features))
    frame.persist()
    try:
        return frame_statistics(session, frame, plan, group=f"provender-stats-{uuid.uuid4().hex}")
    finally:
        frame.unpersist()


def frame_statistics(session: SparkSession, frame: DataFrame, plan: StatisticsPlan, *, group: str) -> TableStatistics:
    """The statistics of the columns of ``frame`` named after ``plan``'s features, as Spark jobs of ``group``.

    ``frame`` is read by several queries: the caller persists it (so each reads the cache).
    """
    view = f"provender_stats_{uuid.uuid4().hex}"
    frame.select(*(col(f.name) for f in plan.join.features)).createOrReplaceTempView(view)
    try:
        return compute_statistics(
            plan,
            quote(view),
            SPARK_DIALECT,
            lambda sql: run_in_group(
                session,
                group,
                f"statistics of feature table {plan.join.name!r}",
                lambda: [tuple(row) for row in session.sql(sql).collect()],
            ),
            engine="spark",
        )
    finally:
        session.catalog.dropTempView(view)
