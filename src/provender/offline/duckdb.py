"""The embedded offline engine: DuckDB, in-process and out-of-core.

Compiles :mod:`provender.offline.plan` as follows. Retrieval: one ``ASOF LEFT JOIN`` per feature
table, matching on the entity key and on the ranking key ``(event_timestamp, created_timestamp)``
(a struct, so ties on event time go to the greatest created time, a missing created time ranking
lowest), then the ``max_age`` bound as a filter on the matched row: ASOF picks the latest row not
after *T*, so if that row is older than ``T - max_age`` no row qualifies. Ingestion: the same
ranking in a ``row_number()`` window over ``[start, end)``. Windowed aggregations: a range join
and GROUP BY per entity row (:mod:`provender.offline.duckdb_sql`). Work larger than ``memory_limit``
spills to ``temp_directory``.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import ClassVar, Self

import duckdb
import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from provender.config import StorageSection, validate_backend_config
from provender.definitions import CsvFormat, FileSource, SqlSource, ValueType
from provender.definitions.request import SOURCE_ROWS
from provender.errors import BackendError, DataError
from provender.offline import object_reads
from provender.offline.arrow_source import ArrowSource, open_arrow_source, reads_through_arrow
from provender.offline.duckdb_sql import (
    _AGE_WITHOUT_BOUND,
    _CREATED,
    _ENTITY_COLUMN,
    _EVENT,
    _RANK,
    _ROW_ID,
    _TS,
    _TS_CEIL,
    _ceil_timestamp,
    _floor_timestamp,
    _interval,
    _timestamp_literal,
    aggregate_sql,
    compile_windows,
    float_inputs,
    literal,
    quote,
    sketch_sql,
    sql_type,
)
from provender.offline.engine import EngineCapabilities, EntityRows, OfflineEngine
from provender.offline.files import DateRange, list_table_files, lower_event_bound
from provender.offline.lineage import SourceInput, local_files
from provender.offline.objectstore import is_object_store_url, read_rows
from provender.offline.plan import (
    CREATED_TIMESTAMP,
    ENTITY_TIMESTAMP,
    EVENT_TIMESTAMP,
    LatestPlan,
    RetrievalPlan,
    TableJoin,
    check_source_schema,
    null_entity_times_error,
)
from provender.offline.sql_source import ReadWindow, duckdb_relation, open_inputs, register_inputs, result_columns
from provender.offline.statistics import StatisticsPlan, TableStatistics
from provender.offline.statistics_sql import Dialect, compute_statistics


class DuckDBConfig(BaseModel):
    """``offline: {engine: duckdb, ...}`` options.

    Attributes:
        memory_limit: DuckDB's memory cap, e.g. ``"4GB"`` (default: DuckDB's, 80% of RAM).
        threads: worker threads (default: one per core).
        temp_directory: where work beyond ``memory_limit`` spills, relative to the project.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    engine: str = "duckdb"
    memory_limit: str | None = None
    threads: int | None = None
    temp_directory: str = ".provender/duckdb_tmp"


class DuckDBEngine:
    """Point-in-time retrieval and ingestion batches with an embedded DuckDB."""

    capabilities: ClassVar[EngineCapabilities] = EngineCapabilities(is_distributed=False)
    config_model: ClassVar[type[BaseModel]] = DuckDBConfig

    def __init__(self, config: DuckDBConfig, *, base_dir: Path, storage: StorageSection | None = None) -> None:
        self.config = config
        self.base_dir = base_dir
        self.storage = storage
        temp = Path(config.temp_directory)
        temp = temp if temp.is_absolute() else base_dir / temp
        self._lock = threading.Lock()
        self._objects: object_reads.ObjectReads | None = None  # S3 objects DuckDB reads, registered at first use
        try:
            self._db = duckdb.connect(":memory:")
            self._db.execute(f"SET temp_directory = {literal(str(temp))}")
            self._db.execute("SET preserve_insertion_order = false")
            if config.memory_limit:
                self._db.execute(f"SET memory_limit = {literal(config.memory_limit)}")
            if config.threads:
                self._db.execute(f"SET threads = {int(config.threads)}")
        except duckdb.Error as exc:
            raise BackendError(f"cannot start DuckDB with offline settings {config.model_dump()}: {exc}") from exc

    @classmethod
    def from_options(
        cls, options: Mapping[str, object], *, base_dir: Path, storage: StorageSection | None = None
    ) -> Self:
        """Build the engine from the ``offline:`` section (``storage``: the object stores' settings)."""
        config = validate_backend_config(DuckDBConfig, "offline", options)
        assert isinstance(config, DuckDBConfig)
        return cls(config, base_dir=base_dir, storage=storage)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """Return a new connection to the engine's database, in UTC."""
        with self._lock:
            cursor = self._db.cursor()
        cursor.execute("SET TimeZone = 'UTC'")
        return cursor

    def close(self) -> None:
        """Close the database."""
        if self._objects is not None:
            self._objects.close()
        self._db.close()

    # -- retrieval -----------------------------------------------------------------------------

    def retrieve(self, plan: RetrievalPlan, entity_rows: EntityRows) -> DuckDBRetrievalJob:
        """Check the sources and return a job computing ``plan`` (run lazily)."""
        cursor = self.cursor()
        if entity_rows.paths and is_object_store_url(entity_rows.paths[0]):
            table = read_rows(self.storage, list(entity_rows.paths))
            entity_rows = EntityRows(schema=table.schema, table=table)
        entity_sql = self._entity_relation(cursor, entity_rows)
        earliest, latest, key_ranges = _entity_ranges(cursor, entity_sql, plan)
        inputs: list[SourceInput] = []
        sources = [
            self._source_relation(
                cursor,
                join,
                DateRange.for_window(earliest, latest, join.lookback),
                upper=latest,
                lower=lower_event_bound(earliest, join.lookback),
                inputs=inputs,
            )
            for join in plan.joins
        ]
        time_type = entity_rows.schema.field(ENTITY_TIMESTAMP).type
        sql = compile_retrieval(plan, entity_sql, sources, entity_time_type=time_type, key_ranges=key_ranges)
        if entity_rows.table is None:
            # Entity rows in files: one query, which every result method streams without holding
            # them. Reading them into Arrow for to_arrow to take the split below measured no gain
            # at size S (median CPU 0.545 vs 0.570 s, n=15, load 15-17; the unchanged DataFrame
            # path moved as much between the same runs), so they are not.
            return DuckDBRetrievalJob(cursor, sql, inputs=inputs)
        # One query per feature table: each ASOF join then sorts only its own columns, and the
        # memory of one join is released before the next (at size L: about a tenth less CPU and
        # 100 MB less peak memory than one query joining both tables in turn).
        features_sql = tuple(
            compile_retrieval(
                replace(plan, joins=(join,), output_columns=_columns_of(plan, join)),
                entity_sql,
                [source],
                entity_time_type=time_type,
                key_ranges=key_ranges,
                features_only=True,
            )
            for join, source in zip(plan.joins, sources, strict=True)
        ) or (
            compile_retrieval(
                plan, entity_sql, sources, entity_time_type=time_type, key_ranges=key_ranges, features_only=True
            ),
        )
        return DuckDBRetrievalJob(
            cursor,
            sql,
            features_sql=features_sql,
            output_columns=plan.output_columns,
            entity_table=entity_rows.table,
            inputs=inputs,
        )

    def _entity_relation(self, cursor: duckdb.DuckDBPyConnection, rows: EntityRows) -> str:
        """SQL for the entity rows, their columns renamed by position (see :func:`entity_column`)."""
        internal = [_ENTITY_COLUMN.format(n) for n in range(len(rows.schema.names))]
        if rows.table is not None:
            table = rows.table.rename_columns(internal).append_column(
                _ROW_ID, pa.array(np.arange(rows.table.num_rows, dtype=np.int64))
            )
            cursor.register("provender_entity_rows", table)
            return "SELECT * FROM provender_entity_rows"
        files = ", ".join(literal(p) for p in rows.paths)
        columns = ", ".join(quote(c) for c in internal)
        return (
            f"SELECT {columns}, row_number() OVER (ORDER BY filename, file_row_number) - 1 AS {_ROW_ID} "
            f"FROM read_parquet([{files}], filename = true, file_row_number = true) AS f({columns})"
        )

    def _source_relation(  # noqa: PLR0913 - the window's three bounds, all keyword-only
        self,
        cursor: duckdb.DuckDBPyConnection,
        join: TableJoin,
        dates: DateRange,
        *,
        upper: datetime | None,
        lower: datetime | None,
        before: datetime | None = None,
        inputs: list[SourceInput] | None = None,
    ) -> str:
        """SQL for ``join``'s candidate rows; what is read is appended to ``inputs`` (lineage).

        Rows have ``lower <= event <= upper`` and ``event < before`` (each bound optional).
        """
        scrub: Callable[[str], str] = str
        if isinstance(join.source, SqlSource):
            sql_inputs = open_inputs(
                join.source,
                base_dir=self.base_dir,
                table=join.name,
                storage=self.storage,
                output=result_columns(join),
                window=ReadWindow(dates=dates, lower=lower, upper=before if upper is None else upper),
            )
            source_input = SourceInput(table=join.name, path=join.source.path, files=sql_inputs.read)
            scan = duckdb_relation(join.source, sql_inputs, register_inputs(cursor, sql_inputs))
            scrub = sql_inputs.scrub
        elif reads_through_arrow(join):
            opened = open_arrow_source(
                join,
                dates,
                base_dir=self.base_dir,
                storage=self.storage,
                lower=lower,
                upper=before if upper is None else upper,  # inclusive: prunes no row before ``before``
                dataset=not (isinstance(join.source, FileSource) and object_reads.serves(join.source.path)),
            )
            source_input = opened.input
            scan, scrub = self._arrow_scan(cursor, join, opened)
        else:
            assert isinstance(join.source, FileSource)  # Delta sources read through Arrow
            files = list_table_files(join.name, join.source, base_dir=self.base_dir, dates=dates)
            source_input = SourceInput(table=join.name, path=join.source.path, files=local_files(files))
            scan = self._scan(join.source, join, files) if files else ""
        if inputs is not None:
            inputs.append(source_input)
        if not scan:  # every date partition was pruned: no row can be a candidate
            return _empty_source_relation(join)
        try:
            schema = cursor.sql(f"SELECT * FROM {scan} LIMIT 0").to_arrow_table().schema
        except duckdb.Error as exc:
            raise DataError(
                f"Cannot read the batch source of feature table {join.name!r} ({join.source.path}): {scrub(str(exc))}"
            ) from None
        check_source_schema(join, schema)
        columns = join.columns
        select = [
            f"CAST({quote(col)} AS {sql_type(e.value_type)}) AS {quote(e.name)}"
            for col, e in zip(columns.keys, join.entities, strict=True)
        ]
        select += [
            f"CAST({quote(col)} AS {sql_type(f.value_type)}) AS {quote(f.name)}"
            for col, f in zip(columns.features, join.table.source_features, strict=True)
            if f in join.source_features
        ]
        event = _floor_timestamp(quote(columns.event_timestamp), schema.field(columns.event_timestamp).type)
        created = (
            _floor_timestamp(quote(columns.created_timestamp), schema.field(columns.created_timestamp).type)
            if columns.created_timestamp
            else "NULL::TIMESTAMP"
        )
        select += [f"{event} AS {_EVENT}", f"{created} AS {_CREATED}"]
        # Filter on the stored column itself when it orders like its UTC reading (a timestamp of
        # microseconds or coarser, zoned or naive UTC): the comparison is then a plain integer one
        # that DuckDB pushes into the Parquet scan (row-group statistics), instead of a
        # conversion evaluated for every row (about a tenth of a 10M-row retrieval's CPU).
        event_type = schema.field(columns.event_timestamp).type
        raw = _is_raw_micros(event_type)
        # The ranking key (retrieval only; unused columns cost nothing), from the stored columns
        # where they already count microseconds since the epoch in UTC (the same values).
        event_us = f"epoch_us({quote(columns.event_timestamp) if raw else event})"
        created_us = "NULL::BIGINT"
        if columns.created_timestamp:
            created_raw = _is_raw_micros(schema.field(columns.created_timestamp).type)
            created_us = f"epoch_us({quote(columns.created_timestamp) if created_raw else created})"
        select.append(f"{_rank(event_us, created_us)} AS {_RANK}")
        bounded = quote(columns.event_timestamp) if raw else event
        cast = "TIMESTAMPTZ" if raw and event_type.tz is not None else None
        where = [f"{bounded} IS NOT NULL"]
        if upper is not None:
            where.append(f"{bounded} <= {_bound_literal(upper, cast)}")
        if lower is not None:
            where.append(f"{bounded} >= {_bound_literal(lower, cast)}")
        if before is not None:
            where.append(f"{bounded} < {_bound_literal(before, cast)}")
        return f"SELECT {', '.join(select)} FROM {scan} WHERE {' AND '.join(where)}"

    def _arrow_scan(
        self, cursor: duckdb.DuckDBPyConnection, join: TableJoin, opened: ArrowSource
    ) -> tuple[str, Callable[[str], str]]:
        """SQL scanning an opened Delta or object-store source ("" if nothing is left), and its scrub.

        S3 Parquet is read by DuckDB's own Parquet reader where :mod:`.object_reads` can serve
        it (as local files are: the same reader, about half the CPU of a pyarrow scan); Delta
        tables, GCS, and S3 without that module's packages, by scanning the pyarrow dataset.
        """
        if opened.dataset is not None:
            return _register(cursor, opened.dataset), opened.scrub
        store = opened.store
        if store is None or not opened.input.files:  # every date partition was pruned
            return "", opened.scrub
        assert isinstance(join.source, FileSource)
        with self._lock:
            if self._objects is None:
                self._objects = object_reads.ObjectReads()
                self._db.register_filesystem(self._objects.filesystem)
            objects = self._objects
        urls = objects.add(store, opened.input.files)

        def scrub(text: str) -> str:
            return store.scrub(objects.scrub(text))

        return self._scan(join.source, join, urls), scrub

    def _scan(self, source: FileSource, join: TableJoin, files: list[str]) -> str:
        file_list = "[" + ", ".join(literal(f) for f in files) + "]"
        if isinstance(source.file_format, CsvFormat):
            declared = [
                *zip(join.columns.keys, (e.value_type for e in join.entities), strict=True),
                *zip(join.columns.features, (f.value_type for f in join.table.source_features), strict=True),
            ]
            types = ", ".join(f"{literal(col)}: {literal(sql_type(value_type))}" for col, value_type in declared)
            # Timestamps are typed too: a column that is empty in a file would be sniffed as text.
            stamps = [join.columns.event_timestamp, join.columns.created_timestamp]
            types += "".join(f", {literal(col)}: 'TIMESTAMPTZ'" for col in stamps if col)
            return (
                f"read_csv({file_list}, header = true, delim = {literal(source.file_format.delimiter)}, "
                f"types = {{{types}}}, union_by_name = true)"
            )
        return f"read_parquet({file_list}, hive_partitioning = true, union_by_name = true)"

    # -- ingestion -----------------------------------------------------------------------------

    def read_latest(self, plan: LatestPlan, *, batch_rows: int) -> pa.RecordBatchReader:
        """Stream the latest row per entity key in ``[start, end)``, normalized for the online store."""
        cursor = self.cursor()
        join = plan.join
        if join.aggregations:
            return self._read_latest_windows(cursor, plan, batch_rows=batch_rows)
        dates = DateRange.for_interval(plan.start, plan.end)
        source = self._source_relation(cursor, join, dates, upper=plan.end, lower=plan.start, inputs=plan.inputs)
        keys = ", ".join(quote(k) for k in join.join_keys)
        # The rule's ranking, (event, created) with a missing created lowest, as one struct key;
        # arg_max keeps the winning row per key in one hash aggregation (no sort).
        rank = f"{{'t': {_EVENT}, 'c': coalesce({_CREATED}, '-infinity'::TIMESTAMP)}}"
        packed = ", ".join(
            [
                *(f"{quote(f.name)} := {quote(f.name)}" for f in join.features),
                f"{_EVENT} := {_EVENT}",
                f"{_CREATED} := {_CREATED}",
            ]
        )
        unpacked = ", ".join(f"latest.{quote(f.name)} AS {quote(f.name)}" for f in join.features)
        counted = f", count(*) AS {quote(SOURCE_ROWS)}" if plan.count_source_rows else ""
        sql = (
            f"SELECT {keys}, {unpacked}, CAST(latest.{_EVENT} AS TIMESTAMPTZ) AS {EVENT_TIMESTAMP}, "
            f"CAST(latest.{_CREATED} AS TIMESTAMPTZ) AS {CREATED_TIMESTAMP}"
            f"{f', {quote(SOURCE_ROWS)}' if counted else ''} FROM ("
            f"SELECT {keys}, arg_max(struct_pack({packed}), {rank}) AS latest{counted} FROM ({source}) "
            f"WHERE {_EVENT} < {_timestamp_literal(plan.end)} GROUP BY {keys})"
        )
        return _stream(cursor, sql, batch_rows, f"ingestion of feature table {join.name!r}")

    def read_events(self, plan: LatestPlan, *, lower: datetime, batch_rows: int) -> pa.RecordBatchReader:
        """Stream the events with ``lower < event_timestamp <= end``: keys, the aggregations' inputs, times.

        Ordered by entity key, then time: a key's events are contiguous (batch ingestion rebuilds
        each key's tiles from them, ``tile_writer.TileWriter.rebuild``).
        """
        cursor = self.cursor()
        join = plan.join
        dates = DateRange.for_interval(lower, plan.end)
        source = self._source_relation(cursor, join, dates, upper=plan.end, lower=lower)
        keys = ", ".join(quote(k) for k in join.join_keys)
        inputs = ", ".join(quote(c) for c in dict.fromkeys(a.column for a in join.table.aggregations))
        sql = (
            f"SELECT {keys}, {inputs}, CAST({_EVENT} AS TIMESTAMPTZ) AS {EVENT_TIMESTAMP}, "
            f"CAST({_CREATED} AS TIMESTAMPTZ) AS {CREATED_TIMESTAMP} FROM ({source}) "
            f"WHERE {_EVENT} > {_timestamp_literal(lower)} AND {_EVENT} <= {_timestamp_literal(plan.end)} "
            f"ORDER BY {keys}, {_EVENT}, {_CREATED} NULLS FIRST"
        )
        return _stream(cursor, sql, batch_rows, f"reading the events of feature table {join.name!r}")

    def _read_latest_windows(
        self, cursor: duckdb.DuckDBPyConnection, plan: LatestPlan, *, batch_rows: int
    ) -> pa.RecordBatchReader:
        """Ingestion of a table with aggregations: the aggregates at ``end`` per key (``plan`` docstring)."""
        join = plan.join
        lower = min(plan.start, plan.end - max(aggregation.window for _, aggregation in join.aggregations))
        source = self._source_relation(
            cursor, join, DateRange.for_interval(lower, plan.end), upper=plan.end, lower=lower, inputs=plan.inputs
        )
        keys = ", ".join(quote(k) for k in join.join_keys)
        end = _timestamp_literal(plan.end)
        recent = f"FILTER (WHERE {_EVENT} >= {_timestamp_literal(plan.start)})"
        inner = [keys]
        outer = [keys]
        for feature in join.features:
            aggregation = join.table.get_aggregation(feature.name)
            if aggregation is None:
                rank = f"{{'t': {_EVENT}, 'c': coalesce({_CREATED}, '-infinity'::TIMESTAMP)}}"
                inner.append(
                    f"arg_max(struct_pack(v := {quote(feature.name)}), {rank}) {recent} AS {quote(feature.name)}"
                )
                outer.append(f"{quote(feature.name)}.v AS {quote(feature.name)}")
            elif aggregation.function == "approx_count_distinct":  # estimated below, by key
                inner.append(f"NULL::BIGINT AS {quote(feature.name)}")
                outer.append(quote(feature.name))
            else:
                inner.append(f"{aggregate_sql(feature, aggregation, at=end, src='')} AS {quote(feature.name)}")
                outer.append(quote(feature.name))
        outer += [f"CAST({end} AS TIMESTAMPTZ) AS {EVENT_TIMESTAMP}", f"NULL::TIMESTAMPTZ AS {CREATED_TIMESTAMP}"]
        if plan.count_source_rows:
            inner.append(f"count(*) {recent} AS {quote(SOURCE_ROWS)}")
            outer.append(quote(SOURCE_ROWS))
        sql = f"SELECT {', '.join(outer)} FROM (SELECT {', '.join(inner)} FROM ({source}) GROUP BY {keys})"
        sketched = [(f, a) for f, a in join.aggregations if a.function == "approx_count_distinct"]
        if sketched:  # HyperLogLog: registers per key first, then the estimate (duckdb_sql.sketch_sql)
            estimates = sketch_sql(
                sketched,
                f"({source})",
                [quote(k) for k in join.join_keys],
                at=end,
                src="",
                names=lambda f: quote(f.name),
                floats=float_inputs(join.table),
            )
            replaced = ", ".join(f"coalesce(z.{quote(f.name)}, 0) AS {quote(f.name)}" for f, _ in sketched)
            sql = f"SELECT * REPLACE ({replaced}) FROM ({sql}) q LEFT JOIN ({estimates}) z USING ({keys})"
        return _stream(cursor, sql, batch_rows, f"ingestion of feature table {join.name!r}")

    # -- statistics ----------------------------------------------------------------------------

    def compute_statistics(self, plan: StatisticsPlan) -> TableStatistics:
        """Compute the statistics of the source rows in ``[start, end)`` (:mod:`provender.offline.statistics`).

        The window's feature columns are materialized once in a temporary table (spilling past
        ``memory_limit``; re-reading it is much cheaper than re-reading the source), then read by
        the passes of :mod:`provender.offline.statistics_sql`. The window is filtered on the
        stored event-time column where it orders like its UTC reading (no per-row conversion).
        """
        join = plan.join
        if join.aggregations:
            raise DataError(
                f"Statistics cover source features; {', '.join(f.name for f, _ in join.aggregations)} "
                f"of feature table {join.name!r} are aggregations."
            )
        cursor = self.cursor()
        source = self._source_relation(
            cursor, join, DateRange.for_interval(plan.start, plan.end), upper=None, lower=plan.start, before=plan.end
        )
        columns = ", ".join(quote(f.name) for f in join.features) or "1 AS __provender_none"
        try:
            cursor.execute(f"CREATE TEMP TABLE __provender_stats AS SELECT {columns} FROM ({source})")
            return compute_statistics(
                plan,
                "__provender_stats",
                _DUCKDB_DIALECT,
                lambda sql: cursor.execute(sql).fetchall(),
                engine="duckdb",
            )
        except duckdb.Error as exc:
            raise _data_or_backend_error(exc, f"statistics of feature table {join.name!r}") from exc
        finally:
            cursor.close()


def _register(cursor: duckdb.DuckDBPyConnection, dataset: object) -> str:
    """Register a pyarrow dataset on ``cursor``; return its SQL name.

    DuckDB scans it with projections and filters pushed down. Delta tables, GCS objects, and S3
    objects without the ``s3`` extra are read this way (through pyarrow's filesystems): no httpfs
    extension is published for this DuckDB version. S3 Parquet with the extra: :meth:`_arrow_scan`.
    """
    name = f"__provender_ds_{uuid.uuid4().hex}"
    cursor.register(name, dataset)
    return quote(name)


def _empty_source_relation(join: TableJoin) -> str:
    select = [f"CAST(NULL AS {sql_type(e.value_type)}) AS {quote(e.name)}" for e in join.entities]
    select += [f"CAST(NULL AS {sql_type(f.value_type)}) AS {quote(f.name)}" for f in join.source_features]
    select += [f"NULL::TIMESTAMP AS {_EVENT}", f"NULL::TIMESTAMP AS {_CREATED}", f"NULL::HUGEINT AS {_RANK}"]
    return f"SELECT {', '.join(select)} WHERE false"


def entity_column(columns: Sequence[str], name: str) -> str:
    """The quoted SQL name of the entity rows' column ``name`` (``columns``: the entity source's).

    Entity columns are renamed by position because DuckDB binds identifiers case-insensitively:
    with columns ``Driver_Id`` and ``driver_id`` (or ``EVENT_TIMESTAMP``), the wrong one could be
    joined on or passed through. Results get the original names back.
    """
    return quote(_ENTITY_COLUMN.format(list(columns).index(name)))


def _columns_of(plan: RetrievalPlan, join: TableJoin) -> tuple[str, ...]:
    """The columns of ``plan.output_columns`` that ``join`` computes, in their order."""
    own = {join.output_column(f) for f in join.features}
    return tuple(c for c in plan.output_columns if c in own)


def _entity_ranges(
    cursor: duckdb.DuckDBPyConnection, entity_sql: str, plan: RetrievalPlan
) -> tuple[datetime | None, datetime | None, dict[str, tuple[int, int]]]:
    """The entity rows' time range and, per integer key of an ASOF join, its range (one pass).

    The key ranges let :func:`compile_retrieval` narrow the join keys (see :func:`_narrow_key`).
    """
    stamp = f"CAST({entity_column(plan.entity_columns, ENTITY_TIMESTAMP)} AS TIMESTAMP)"
    keys = sorted(
        {
            e.name
            for join in plan.joins
            if join.plain_features
            for e in join.entities
            if e.value_type in (ValueType.INT32, ValueType.INT64)
        }
    )
    columns = [f"CAST({entity_column(plan.entity_columns, k)} AS BIGINT)" for k in keys]
    ranges = "".join(f", min({c}), max({c})" for c in columns)
    try:
        row = cursor.execute(
            f"SELECT min({stamp}), max({stamp}), count(*) FILTER (WHERE {stamp} IS NULL), "
            f"min({_ROW_ID}) FILTER (WHERE {stamp} IS NULL){ranges} FROM ({entity_sql})"
        ).fetchall()[0]
    except duckdb.Error as exc:
        raise DataError(f"Cannot read the entity source: {exc}") from exc
    if row[2]:
        raise null_entity_times_error(row[2], f"row {row[3]}")
    found = {k: (row[4 + 2 * n], row[5 + 2 * n]) for n, k in enumerate(keys)}
    return row[0], row[1], {k: (int(lo), int(hi)) for k, (lo, hi) in found.items() if lo is not None}


def _narrow_key(span: int) -> str | None:
    """The narrowest unsigned SQL type holding ``0 .. span`` if narrower than BIGINT, else None.

    An ASOF join sorts each side on its key and ranking key together; with a 16-byte ranking key
    (:func:`_rank`), a BIGINT key makes the sort key wider than the next size step, a 4-byte one
    does not: at size L that is about 40% less CPU and 25% less memory for the whole retrieval
    (``benchmarks/historical.py``). Keys are narrowed as ``key - min`` over the entity rows' range;
    a source row outside that range cannot match, so it is filtered out first.
    """
    for bits, name in ((8, "UTINYINT"), (16, "USMALLINT"), (32, "UINTEGER")):
        if span < 1 << bits:
            return name
    return None


def compile_retrieval(
    plan: RetrievalPlan,
    entity_sql: str,
    sources: list[str],
    *,
    entity_time_type: pa.DataType | None = None,
    key_ranges: Mapping[str, tuple[int, int]] | None = None,
    features_only: bool = False,
) -> str:
    """Compile the retrieval plan to one DuckDB query over the entity and source relations.

    ``entity_sql`` names the entity columns by position (:func:`entity_column`) and has a row id.
    By default the query returns the entity columns then the features, in the entity rows'
    order. With ``features_only`` it returns the row id, the UTC ``event_timestamp`` and the
    features, unordered: the caller puts them in order and beside the entity columns it holds.

    ``entity_time_type`` is the Arrow type of the entity rows' ``event_timestamp``: with
    nanoseconds, T is rounded down for ``event <= T`` and up for ``event >= T - max_age``.
    ``key_ranges`` holds the entity rows' (min, max) of integer keys: the ASOF joins then match
    on the narrowed keys (:func:`_narrow_key`), and the source rows outside the range are skipped.
    """
    keys = sorted({e.name: e for join in plan.joins for e in join.entities}.items())
    names = plan.entity_columns
    key_casts = [
        f"CAST({entity_column(names, name)} AS {sql_type(e.value_type)}) AS {quote('__key_' + name)}"
        for name, e in keys
    ]
    narrow: dict[str, tuple[int, int, str]] = {}  # key -> (min, max, the narrow type)
    for name, (low, high) in (key_ranges or {}).items():
        narrowed = _narrow_key(high - low) if name in dict(keys) else None
        if narrowed is not None:
            narrow[name] = (low, high, narrowed)
            offset = f"CAST({entity_column(names, name)} AS BIGINT) - ({low})"
            key_casts.append(f"CAST({offset} AS {narrowed}) AS {quote('__nkey_' + name)}")
    stamp, stamp_type = entity_column(names, ENTITY_TIMESTAMP), entity_time_type or pa.timestamp("us")
    floor = _floor_timestamp(stamp, stamp_type)
    ctes = [
        f"e AS (SELECT *, {floor} AS {_TS}, {_ceil_timestamp(stamp, stamp_type)} AS {_TS_CEIL}, "
        f"{_rank_at(floor)} AS {_RANK}"
        f"{''.join(', ' + c for c in key_casts)} FROM ({entity_sql}))"
    ]
    joins, columns = [], {}
    for n, (join, source) in enumerate(zip(plan.joins, sources, strict=True)):
        if join.aggregations:
            window_alias = f"w{n}"
            ctes.append(f"{window_alias} AS ({compile_windows(join, source)})")
            joins.append(f"LEFT JOIN {window_alias} ON e.{_ROW_ID} = {window_alias}.{_ROW_ID}")
            for feature, aggregation in join.aggregations:
                column = quote(join.output_column(feature))
                value = f"{window_alias}.{column}"
                if aggregation.counts:  # no event in the window: 0
                    value = f"coalesce({value}, 0)"
                columns[join.output_column(feature)] = f"{value} AS {column}"
        if not join.plain_features:
            continue
        alias = f"s{n}"
        # The rule's ranking key, built once per source row; the join carries it, and max_age is
        # checked on it too, so the event and created columns are not carried (see _rank).
        narrow_keys = [k for k in join.join_keys if k in narrow]
        excluded = ", ".join([_EVENT, _CREATED, *(quote(k) for k in narrow_keys)])
        added = "".join(
            f", CAST({quote(k)} - ({narrow[k][0]}) AS {narrow[k][2]}) AS {quote('__nkey_' + k)}" for k in narrow_keys
        )
        within = " AND ".join(f"{quote(k)} BETWEEN {narrow[k][0]} AND {narrow[k][1]}" for k in narrow_keys)
        ctes.append(
            f"{alias} AS (SELECT * EXCLUDE ({excluded}){added} FROM ({source}){f' WHERE {within}' if within else ''})"
        )
        on = [
            f"e.{quote('__nkey_' + k)} = {alias}.{quote('__nkey_' + k)}"
            if k in narrow
            else f"e.{quote('__key_' + k)} = {alias}.{quote(k)}"
            for k in join.join_keys
        ]
        on.append(f"e.{_RANK} >= {alias}.{_RANK}")
        joins.append(f"ASOF LEFT JOIN {alias} ON {' AND '.join(on)}")
        for feature in join.plain_features:
            value = f"{alias}.{quote(feature.name)}"
            if join.max_age is not None and join.max_age < _AGE_WITHOUT_BOUND:
                bound = f"e.{_TS_CEIL} - {_interval(join.max_age)}"
                value = f"CASE WHEN {alias}.{_RANK} >= {_rank_at(bound, latest=False)} THEN {value} END"
            columns[join.output_column(feature)] = f"{value} AS {quote(join.output_column(feature))}"
    select = [
        f"CAST(e.{_TS} AS TIMESTAMPTZ) AS {quote(c)}"
        if c == ENTITY_TIMESTAMP
        else f"e.{entity_column(names, c)} AS {quote(c)}"
        for c in plan.entity_columns
    ]
    features = [columns[c] for c in plan.output_columns]
    if features_only:
        select = [f"e.{_ROW_ID}", f"CAST(e.{_TS} AS TIMESTAMPTZ) AS {quote(ENTITY_TIMESTAMP)}", *features]
        return f"WITH {', '.join(ctes)} SELECT {', '.join(select)} FROM e {' '.join(joins)}"
    select += features
    return f"WITH {', '.join(ctes)} SELECT {', '.join(select)} FROM e {' '.join(joins)} ORDER BY e.{_ROW_ID}"


def _bound_literal(at: datetime, cast: str | None) -> str:
    """``at`` as a naive UTC TIMESTAMP literal, or as a TIMESTAMPTZ one (the same instant) for a zoned column."""
    naive = _timestamp_literal(at)
    return naive if cast is None else f"({naive} AT TIME ZONE 'UTC')"


_TWO_64 = "18446744073709551616::HUGEINT"


def _is_raw_micros(found: pa.DataType) -> bool:
    """Whether ``epoch_us`` of a stored column of Arrow type ``found`` is that of its UTC reading.

    True for timestamps of microseconds or coarser, zoned or naive (naive times are UTC);
    nanoseconds are rounded down first (:func:`~provender.offline.duckdb_sql._floor_timestamp`).
    ``epoch_us`` of an infinite time is null either way.
    """
    return bool(pa.types.is_timestamp(found) and found.unit != "ns")


def _rank(event_us: str, created_us: str) -> str:
    """A source row's ranking key ``(event_timestamp, created_timestamp)`` as one HUGEINT.

    ``event_us``, ``created_us``: SQL for the times as microseconds since the epoch (BIGINT).

    ``event_us * 2**64 + low``, where ``low`` is ``created_us + 2**63`` (1 .. 2**64 - 1 for any
    timestamp) or 0 for a missing created time: ordering these integers is ordering the pairs,
    with a missing created time lowest, exactly as the rule says. One 16-byte integer compares
    and moves much faster through the ASOF join than the two-timestamp struct it replaced
    (``benchmarks/historical.py``: about a third less CPU and memory at size L).
    """
    low = f"coalesce({created_us}::HUGEINT + 9223372036854775808::HUGEINT, 0::HUGEINT)"
    return f"({event_us}::HUGEINT * {_TWO_64} + {low})"


def _rank_at(timestamp: str, *, latest: bool = True) -> str:
    """The rank bounding the rows of event time ``timestamp``: above all of them (``latest``) or below."""
    low = "18446744073709551615::HUGEINT" if latest else "0::HUGEINT"
    return f"(epoch_us({timestamp})::HUGEINT * {_TWO_64} + {low})"


class StatisticsCollector:
    """Statistics of the rows an ingestion job writes, gathered as its batches go by.

    Each batch's feature columns are appended to a temporary table (spilling past DuckDB's
    limits); :meth:`finish` runs the statistics SQL over it. The extra cost is one columnar copy
    of what is written (one row per entity key), never a second read of the source. The table
    lives in the job's DuckDB engine's database when the job runs on one (``engine``), else in
    the process's collector database (:func:`_collector_database`, started once): starting a
    database per job cost about 80 ms of a 1 s job's wall time, half the statistics' share of
    it. The collector's own connection keeps its table private.
    """

    def __init__(self, plan: StatisticsPlan, *, engine: OfflineEngine | None = None) -> None:
        self.plan = plan
        self._names = [f.name for f in plan.join.features]
        self._lock = threading.Lock()
        database = engine._db if isinstance(engine, DuckDBEngine) else _collector_database()
        self._db = database.cursor()
        columns = ", ".join(f"{quote(f.name)} {sql_type(f.value_type)}" for f in plan.join.features)
        self._db.execute(f"CREATE TEMP TABLE written ({columns})")

    def add(self, rows: pa.Table | pa.RecordBatch) -> None:
        """Append the feature columns of ``rows`` (a batch being written)."""
        batch = rows.select(self._names)
        with self._lock:
            self._db.register("provender_batch", batch)
            self._db.execute("INSERT INTO written SELECT * FROM provender_batch")
            self._db.unregister("provender_batch")

    def finish(self, *, job_id: str | None = None) -> TableStatistics:
        """Compute the statistics of every row added."""
        with self._lock:
            stats = compute_statistics(
                self.plan, "written", _DUCKDB_DIALECT, lambda sql: self._db.execute(sql).fetchall(), engine="duckdb"
            )
        return replace(stats, job_id=job_id, notes=("statistics of the rows the job wrote (latest per key)",))

    def close(self) -> None:
        """Release the rows gathered."""
        with self._lock:
            self._db.execute("DROP TABLE IF EXISTS written")
            self._db.close()


_collector_databases: dict[int, duckdb.DuckDBPyConnection] = {}
_collector_databases_lock = threading.Lock()


def _collector_database() -> duckdb.DuckDBPyConnection:
    """This process's in-memory DuckDB database for :class:`StatisticsCollector`.

    Kept by process id, so that a forked child never uses its parent's.
    """
    with _collector_databases_lock:
        database = _collector_databases.get(os.getpid())
        if database is None:
            database = _collector_databases[os.getpid()] = duckdb.connect(":memory:")
        return database


_DUCKDB_DIALECT = Dialect(
    quote=quote,
    quantiles=lambda x, qs: f"quantile_cont({x}, [{', '.join(repr(q) for q in qs)}])",
    list_length=lambda x: f"len({x})",
    byte_length=lambda x: f"octet_length({x})",
    collect=lambda x: f"list({x})",
)


def _stream(cursor: duckdb.DuckDBPyConnection, sql: str, batch_rows: int, what: str) -> pa.RecordBatchReader:
    """Run ``sql`` and stream its rows in batches of ``batch_rows``; DuckDB's errors name ``what``."""
    try:
        return cursor.sql(sql).to_arrow_reader(batch_rows)
    except duckdb.Error as exc:
        raise _data_or_backend_error(exc, what) from exc


def _data_or_backend_error(exc: duckdb.Error, what: str) -> Exception:
    if isinstance(exc, duckdb.ConversionException | duckdb.InvalidInputException | duckdb.IOException):
        return DataError(f"{what} failed on the source data: {exc}")
    return BackendError(f"{what} failed in DuckDB: {exc}")


class DuckDBRetrievalJob:
    """A compiled retrieval; each result method runs it (streaming where it can).

    When the entity rows are an Arrow table in memory, :meth:`to_arrow` runs ``features_sql``,
    one query per feature table: DuckDB joins only the keys and times and returns the features
    unordered; they are put back in the rows' order by their row ids (a permutation, so one
    scatter, no sort) and set beside the caller's own columns, which thus pass through exactly
    as given.
    """

    def __init__(
        self,
        cursor: duckdb.DuckDBPyConnection,
        sql: str,
        *,
        features_sql: Sequence[str] = (),
        output_columns: Sequence[str] = (),
        entity_table: pa.Table | None = None,
        inputs: Sequence[SourceInput] = (),
    ) -> None:
        self.inputs = tuple(inputs)
        """What the retrieval reads, per feature table (its lineage)."""
        self._cursor = cursor
        self.sql = sql
        self.features_sql = tuple(features_sql)
        self._output_columns = tuple(output_columns)
        self._entity_table = entity_table

    def to_arrow(self) -> pa.Table:
        """Run the retrieval and return an Arrow table."""
        try:
            if not self.features_sql or self._entity_table is None:
                return self._cursor.sql(self.sql).to_arrow_table()
            parts = [self._cursor.sql(sql).to_arrow_table() for sql in self.features_sql]
        except duckdb.Error as exc:
            raise _data_or_backend_error(exc, "historical retrieval") from exc
        return _beside_entity_rows(self._entity_table, parts, self._output_columns)

    def to_arrow_reader(self, batch_rows: int = 1_000_000) -> pa.RecordBatchReader:
        """Run the retrieval and stream record batches."""
        return _stream(self._cursor, self.sql, batch_rows, "historical retrieval")

    def to_parquet(self, path: str | Path) -> int:
        """Stream the result into a Parquet file without holding it in memory; return its rows."""
        try:
            row = self._cursor.execute(f"COPY ({self.sql}) TO {literal(str(path))} (FORMAT parquet)").fetchall()
        except duckdb.Error as exc:
            raise _data_or_backend_error(exc, "historical retrieval") from exc
        return int(row[0][0]) if row else 0


def _beside_entity_rows(entity_table: pa.Table, parts: Sequence[pa.Table], output_columns: Sequence[str]) -> pa.Table:
    """Order each of ``parts`` (row id, event_timestamp, features...) by row id; join them to the entity rows.

    The result has the entity columns (``event_timestamp`` as the engine normalized it), then
    ``output_columns`` (each computed by one of ``parts``).
    """
    rows = entity_table.num_rows
    positions = np.arange(rows, dtype=np.int64)
    computed: dict[str, pa.ChunkedArray] = {}
    stamp = None
    for part in parts:
        order = np.empty(rows, dtype=np.int64)
        order[part.column(0).to_numpy()] = positions
        ordered = part.take(order)
        stamp = ordered.column(1) if stamp is None else stamp
        computed.update(zip(ordered.schema.names[2:], ordered.columns[2:], strict=True))
    columns = list(entity_table.columns)
    if stamp is not None:
        columns[entity_table.schema.names.index(ENTITY_TIMESTAMP)] = stamp
    columns += [computed[c] for c in output_columns]
    return pa.Table.from_arrays(columns, names=[*entity_table.schema.names, *output_columns])
