"""SQL-defined sources (:class:`~provender.definitions.SqlSource`): their inputs and DuckDB's relation.

Both engines run the same query, transpiled from its dialect (:func:`provender.definitions.sql.transpile`):
DuckDB as a subquery whose inputs are CTEs over the input files (:func:`duckdb_relation`), Spark
over temporary views (``offline/spark/sources.py``). The query's result is then read like a file:
its schema is checked against the table (:func:`~provender.offline.plan.check_source_schema`), and
the point-in-time rule, windows, ingestion and statistics run over it unchanged. Inputs are read
only for what the read needs (:func:`open_inputs`): the columns the query uses to give the
table's columns, and, where the result's event time is an unchanged copy of an input's column,
that input's partitions, files and rows inside the read's event-time window.

:func:`check_sql_source` runs at ``apply``: it reads the inputs' schemas and plans the query
with DuckDB (no rows are read), so an unknown column or table, or a result that lacks a
declared column or has the wrong type, is a clear error before anything is stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from provender.config import StorageSection
from provender.definitions import CsvFormat, DeltaSource, Entity, FeatureTable, FileSource, SqlSource
from provender.definitions.sql import plan_reads, transpile
from provender.errors import DataError
from provender.offline.delta import open_delta, time_window
from provender.offline.duckdb_sql import _timestamp_literal, literal, quote
from provender.offline.files import DateRange, in_dates, is_remote, list_source_files
from provender.offline.lineage import InputFile, local_files
from provender.offline.objectstore import open_store, source_files, split_url, store_dataset
from provender.offline.plan import TableJoin, check_source_schema, table_join

__all__ = [
    "InputRead",
    "ReadWindow",
    "SqlInputs",
    "check_sql_source",
    "duckdb_relation",
    "open_inputs",
    "relation_names",
    "result_columns",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadWindow:
    """The event times a read needs from a SQL source (the window the engine computed for it).

    Attributes:
        dates: the date partitions that can hold them.
        lower: the oldest event time needed (inclusive), or None.
        upper: the latest event time needed (inclusive), or None.
    """

    dates: DateRange
    lower: datetime | None
    upper: datetime | None


@dataclass(frozen=True, slots=True)
class InputRead:
    """How one input is read: the columns kept and the time filter applied before the query runs.

    Attributes:
        columns: the columns read, or None for all.
        time_column: the input's column the result's event time copies, filtered to the read's
            window before the query (None: every row is read).
        time_type: that column's Arrow type (a timestamp).
    """

    columns: tuple[str, ...] | None = None
    time_column: str | None = None
    time_type: pa.DataType | None = None


@dataclass(frozen=True, slots=True)
class SqlInputs:
    """The opened inputs of a SQL source, and how the query reads them.

    Attributes:
        files: the files of each local input.
        datasets: the rows of each object-store (``s3://``, ``gs://``: Parquet) or Delta input, read through pyarrow.
        read: every file read, with its size and modification time (the read's lineage).
        scrub: removes secrets from an error message about these inputs.
        query: the query to run, in the source's dialect (the declared one, or one reading only
            the result columns asked for: :func:`provender.definitions.sql.plan_reads`).
        reads: per input, the columns kept and its time filter (an input absent is read whole).
        window: the read's event-time window (the bounds of each input's time filter).
    """

    files: dict[str, list[str]] = field(default_factory=dict)
    datasets: dict[str, ds.Dataset] = field(default_factory=dict)
    read: tuple[InputFile, ...] = ()
    scrub: Callable[[str], str] = str
    query: str = ""
    reads: dict[str, InputRead] = field(default_factory=dict)
    window: ReadWindow | None = None


@dataclass(slots=True)
class _Opened:
    """One input as first opened (whole): its files or dataset, their lineage and its schema."""

    schema: pa.Schema
    files: list[str] | None = None
    dataset: ds.Dataset | None = None
    read: list[InputFile] = field(default_factory=list)


def open_inputs(
    source: SqlSource,
    *,
    base_dir: Path,
    table: str,
    storage: StorageSection | None,
    output: Sequence[str] | None = None,
    window: ReadWindow | None = None,
) -> SqlInputs:
    """List (local) or open (object-store, Delta) every input of ``source``, reading only what is needed.

    With ``output`` (the result columns the read uses), each input is read for the columns the
    query needs to give them (``plan_reads``). With ``window`` too, each input whose column the
    result's event time copies unchanged is pruned to it: its date partitions outside
    ``window.dates`` (when that column is the input's own event timestamp), a Delta input's
    files whose statistics fall outside it, and its rows outside ``[lower, upper]`` (filtered
    before the query runs). Where that cannot be proven, every row is read (the engine applies
    the exact bounds to the result either way).

    Raises:
        DataError: an input does not exist, has no file, or its store refuses access (naming it and the table).
    """
    opened: dict[str, _Opened] = {}
    scrubs: list[Callable[[str], str]] = []
    for name, input_source in source.sources.items():
        where = _where(name, table)
        try:
            opened[name] = _open(
                input_source, where=where, base_dir=base_dir, storage=storage, scrubs=scrubs, window=window
            )
        except DataError as exc:
            message = str(exc)
            raise DataError(message if message.startswith(where) else f"{where}: {message}") from None

    def scrub(text: str) -> str:
        for one in scrubs:
            text = one(text)
        return text

    plan = None
    if output is not None:
        schemas = {name: one.schema.names for name, one in opened.items()}
        plan = plan_reads(source.query, source.dialect, schemas, output, source.event_timestamp_column)
    reads: dict[str, InputRead] = {}
    for name, input_source in source.sources.items():
        one = opened[name]
        if plan is None:
            continue
        columns = plan.columns[name] or None  # an input read for no column (EXISTS...): whole
        time_column = plan.time_columns.get(name)
        if window is None or time_column is None or not pa.types.is_timestamp(one.schema.field(time_column).type):
            reads[name] = InputRead(columns=columns)
            continue
        _prune(one, input_source, time_column, window)
        csv = isinstance(input_source, FileSource) and isinstance(input_source.file_format, CsvFormat)
        reads[name] = InputRead(
            columns=columns,
            time_column=None if csv else time_column,  # CSV types are inferred by each engine: no row filter
            time_type=None if csv else one.schema.field(time_column).type,
        )
    return SqlInputs(
        files={name: one.files for name, one in opened.items() if one.files is not None},
        datasets={name: one.dataset for name, one in opened.items() if one.dataset is not None},
        read=tuple(f for one in opened.values() for f in one.read),
        scrub=scrub,
        query=source.query if plan is None else plan.query,
        reads=reads,
        window=window,
    )


def _where(name: str, table: str) -> str:
    return f"Input {name!r} of the SQL source of feature table {table!r}"


def _open(
    input_source: FileSource | DeltaSource,
    *,
    where: str,
    base_dir: Path,
    storage: StorageSection | None,
    scrubs: list[Callable[[str], str]],
    window: ReadWindow | None,
) -> _Opened:
    """Open one input whole: a Delta snapshot, an object-store listing, or the local files.

    A local input's columns are read from one file, in ``window``'s date partitions if one is
    (a partition the read will prune is never opened).
    """
    if isinstance(input_source, DeltaSource):  # one snapshot: the pinned version or time, else the latest
        snapshot = open_delta(input_source, what=where, base_dir=base_dir, storage=storage)
        return _Opened(snapshot.dataset.schema, dataset=snapshot.dataset, read=list(snapshot.files))
    if is_remote(input_source.path):
        store = open_store(input_source.path, storage, f"{where} ({input_source.path})")
        infos = source_files(store, input_source, DateRange(first=None, last=None), where)
        listed = [
            InputFile(
                path=store.url(i.path), size=i.size, modified=None if i.mtime is None else i.mtime.astimezone(UTC)
            )
            for i in infos
        ]
        if not listed:
            raise DataError(f"{where}: no Parquet object under {input_source.path}.")
        urls = [f.path for f in listed]
        root = None if urls == [input_source.path] else input_source.path
        dataset = store_dataset(store, urls, root=root, sizes={f.path: f.size for f in listed})
        scrubs.append(store.scrub)
        return _Opened(dataset.schema, dataset=dataset, read=listed)
    files = list_source_files(input_source, base_dir=base_dir)
    column = input_source.date_partition_column
    first = files[0]
    if window is not None and column is not None:
        first = next((f for f in files if in_dates(f, column, window.dates)), first)
    with duckdb.connect() as connection:  # one file's columns (hive partitions included), for planning
        try:
            schema = connection.sql(f"SELECT * FROM {_input_scan(input_source, [first])} LIMIT 0").to_arrow_table()
        except duckdb.Error as exc:
            raise DataError(f"{where}: cannot read {first}: {exc}") from None
    return _Opened(schema.schema, files=files, read=list(local_files(files)))


def _prune(one: _Opened, input_source: FileSource | DeltaSource, time_column: str, window: ReadWindow) -> None:
    """Drop ``one``'s files that cannot hold rows of ``window`` (``time_column`` copies the result's event time).

    Date partitions are the ones of the input's own event timestamp, so they prune only when
    ``time_column`` is it; a Delta input keeps the files whose statistics of ``time_column``
    reach the window, with the filter a Delta batch source uses (``time_window``). If nothing is left
    of a local input, it is read whole (its rows are still filtered).
    """
    if isinstance(input_source, DeltaSource):  # the snapshot opened, its files pruned by their statistics
        dataset = one.dataset
        assert isinstance(dataset, ds.FileSystemDataset)
        fragments = list(dataset.get_fragments())  # in the order of one.read (open_delta builds both)
        keep = {
            f.path
            for f in dataset.get_fragments(filter=time_window(dataset.schema, time_column, window.lower, window.upper))
        }
        pairs = [(f, read) for f, read in zip(fragments, one.read, strict=True) if f.path in keep]
        one.dataset = ds.FileSystemDataset([f for f, _ in pairs], dataset.schema, dataset.format, dataset.filesystem)
        one.read = [read for _, read in pairs]
        return
    column = input_source.date_partition_column
    if column is None or time_column != input_source.event_timestamp_column or window.dates.is_unbounded:
        return
    if one.dataset is not None:
        dataset = one.dataset
        assert isinstance(dataset, ds.FileSystemDataset)
        fragments = [f for f in dataset.get_fragments() if in_dates(f.path, column, window.dates)]
        kept = {f.path for f in fragments}
        one.dataset = ds.FileSystemDataset(fragments, dataset.schema, dataset.format, dataset.filesystem)
        one.read = [f for f in one.read if split_url(f.path)[1] in kept]
    elif one.files:
        files = [f for f in one.files if in_dates(f, column, window.dates)]
        if files:
            one.files, one.read = files, list(local_files(files))


def relation_names(source: SqlSource) -> dict[str, str]:
    """The name each input is read under by the engines (never one a query would use)."""
    return {name: f"__provender_sql_{name}" for name in source.sources}


def _input_scan(source: FileSource | DeltaSource, files: list[str]) -> str:
    file_list = "[" + ", ".join(literal(f) for f in files) + "]"
    if isinstance(source, FileSource) and isinstance(source.file_format, CsvFormat):
        delimiter = literal(source.file_format.delimiter)
        return f"read_csv({file_list}, header = true, delim = {delimiter}, union_by_name = true)"
    return f"read_parquet({file_list}, hive_partitioning = true, union_by_name = true)"


def duckdb_relation(source: SqlSource, inputs: SqlInputs, registered: Mapping[str, str]) -> str:
    """The query as a DuckDB relation (a parenthesized, aliased subquery) over ``inputs``.

    Each input is a CTE reading only its planned columns, its time filter in its WHERE clause
    (DuckDB pushes both into the Parquet or Arrow scan). ``registered``: the SQL name of each
    object-store input's dataset, registered on the cursor.
    """
    names = relation_names(source)
    ctes = []
    for name, input_source in source.sources.items():
        scan = registered[name] if name in registered else _input_scan(input_source, inputs.files[name])
        how = inputs.reads.get(name, InputRead())
        columns = "*" if how.columns is None else ", ".join(quote(c) for c in how.columns)
        where = ""
        if how.time_column is not None and inputs.window is not None:
            where = _time_filter(how.time_column, how.time_type, inputs.window)
        ctes.append(f"{quote(names[name])} AS (SELECT {columns} FROM {scan}{where})")
    query = transpile(inputs.query or source.query, source.dialect, to="duckdb", relations=names)
    return f"(WITH {', '.join(ctes)} SELECT * FROM ({query}) AS __provender_sql_result) AS __provender_sql_source"


def _time_filter(column: str, kind: pa.DataType | None, window: ReadWindow) -> str:
    """`` WHERE`` keeping ``column``'s values in ``[lower, upper]`` (upper widened by a microsecond).

    Compared as stored, so DuckDB prunes row groups by their statistics; the microsecond covers
    nanoseconds the engine rounds down onto ``upper``. Bounds are UTC; a zoned column gets zoned ones.
    """
    zoned = isinstance(kind, pa.TimestampType) and kind.tz is not None

    def bound(at: datetime) -> str:
        naive = _timestamp_literal(at)
        return f"({naive} AT TIME ZONE 'UTC')" if zoned else naive

    parts = []
    if window.lower is not None:
        parts.append(f"{quote(column)} >= {bound(window.lower)}")
    if window.upper is not None:
        parts.append(f"{quote(column)} <= {bound(window.upper + timedelta(microseconds=1))}")
    return f" WHERE {' AND '.join(parts)}" if parts else ""


def register_inputs(cursor: duckdb.DuckDBPyConnection, inputs: SqlInputs) -> dict[str, str]:
    """Register each object-store input's dataset on ``cursor``; return their SQL names by input."""
    registered = {}
    for name, dataset in inputs.datasets.items():
        relation = f"__provender_sql_ds_{uuid.uuid4().hex}"
        cursor.register(relation, dataset)
        registered[name] = quote(relation)
    return registered


def query_schema(source: SqlSource, *, base_dir: Path, table: str, storage: StorageSection | None = None) -> pa.Schema:
    """The Arrow schema of the query's result, planned by DuckDB over the inputs (no row is read).

    Raises:
        DataError: an input cannot be read, or the query fails to plan (an unknown column or
            table, a type error), with DuckDB's reason.
    """
    inputs = open_inputs(source, base_dir=base_dir, table=table, storage=storage)
    with duckdb.connect() as connection:
        relation = duckdb_relation(source, inputs, register_inputs(connection, inputs))
        try:
            return connection.sql(f"SELECT * FROM {relation} LIMIT 0").to_arrow_table().schema
        except duckdb.Error as exc:
            raise DataError(
                f"The SQL source of feature table {table!r} does not run: {inputs.scrub(str(exc))}"
            ) from None


def result_columns(join: TableJoin) -> list[str]:
    """The source columns a read of ``join`` uses: keys, features, event and created timestamps."""
    c = join.columns
    return list(dict.fromkeys([*c.keys, *c.features, c.event_timestamp, *filter(None, [c.created_timestamp])]))


def check_sql_source(
    table: FeatureTable, entities: Mapping[str, Entity], *, base_dir: Path, storage: StorageSection | None = None
) -> None:
    """Check, at apply, that ``table``'s SQL source runs and gives its declared columns and types.

    Raises:
        DataError: see :func:`query_schema`, or a declared key, feature or time column that the
            result lacks or holds with an incompatible type (naming it).
    """
    source = table.batch_source
    if not isinstance(source, SqlSource) or any(name not in entities for name in table.entities):
        return  # not a SQL source, or the plan refuses the table for its unregistered entities
    schema = query_schema(source, base_dir=base_dir, table=table.name, storage=storage)
    check_source_schema(table_join(table, table.source_features, entities), schema)
