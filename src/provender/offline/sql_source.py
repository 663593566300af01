"""SQL-defined sources (:class:`~provender.definitions.SqlSource`): their inputs and DuckDB's relation.

Both engines run the same query, transpiled from its dialect (:func:`provender.definitions.sql.transpile`):
DuckDB as a subquery whose inputs are CTEs over the input files (:func:`duckdb_relation`), Spark
over temporary views (``offline/spark/sources.py``). The query's result is then read like a file:
its schema is checked against the table (:func:`~provender.offline.plan.check_source_schema`), and
the point-in-time rule, windows, ingestion and statistics run over it unchanged. Inputs are read
whole: a SQL source has no date partitions to prune (the event-time bounds apply to its result).

:func:`check_sql_source` runs at ``apply``: it reads the inputs' schemas and plans the query
with DuckDB (no rows are read), so an unknown column or table, or a result that lacks a
declared column or has the wrong type, is a clear error before anything is stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from provender.config import StorageSection
from provender.definitions import CsvFormat, DeltaSource, Entity, FeatureTable, FileSource, SqlSource
from provender.definitions.sql import transpile
from provender.errors import DataError
from provender.offline.delta import open_delta
from provender.offline.duckdb_sql import literal, quote
from provender.offline.files import DateRange, is_remote, list_source_files
from provender.offline.lineage import InputFile, local_files
from provender.offline.objectstore import open_store, source_files, store_dataset
from provender.offline.plan import check_source_schema, table_join

__all__ = ["SqlInputs", "check_sql_source", "duckdb_relation", "open_inputs", "relation_names"]


@dataclass(frozen=True, slots=True)
class SqlInputs:
    """The opened inputs of a SQL source.

    Attributes:
        files: the files of each local input.
        datasets: the rows of each object-store (``s3://``, ``gs://``: Parquet) or Delta input, read through pyarrow.
        read: every file read, with its size and modification time (the read's lineage).
        scrub: removes secrets from an error message about these inputs.
    """

    files: dict[str, list[str]] = field(default_factory=dict)
    datasets: dict[str, ds.Dataset] = field(default_factory=dict)
    read: tuple[InputFile, ...] = ()
    scrub: Callable[[str], str] = str


def open_inputs(source: SqlSource, *, base_dir: Path, table: str, storage: StorageSection | None) -> SqlInputs:
    """List (local) or open (object-store) every input of ``source``, whole.

    Raises:
        DataError: an input does not exist, has no file, or its store refuses access (naming it and the table).
    """
    files: dict[str, list[str]] = {}
    datasets: dict[str, ds.Dataset] = {}
    read: list[InputFile] = []
    scrubs: list[Callable[[str], str]] = []
    for name, input_source in source.sources.items():
        where = f"Input {name!r} of the SQL source of feature table {table!r}"
        try:
            if isinstance(input_source, DeltaSource):  # one snapshot: the pinned version or time, else the latest
                snapshot = open_delta(input_source, what=where, base_dir=base_dir, storage=storage)
                datasets[name] = snapshot.dataset
                read += snapshot.files
            elif is_remote(input_source.path):
                store = open_store(input_source.path, storage, f"{where} ({input_source.path})")
                infos = source_files(store, input_source, DateRange(first=None, last=None), where)
                listed = [
                    InputFile(
                        path=store.url(i.path),
                        size=i.size,
                        modified=None if i.mtime is None else i.mtime.astimezone(UTC),
                    )
                    for i in infos
                ]
                if not listed:
                    raise DataError(f"{where}: no Parquet object under {input_source.path}.")
                urls = [f.path for f in listed]
                root = None if urls == [input_source.path] else input_source.path
                datasets[name] = store_dataset(store, urls, root=root, sizes={f.path: f.size for f in listed})
                read += listed
                scrubs.append(store.scrub)
            else:
                files[name] = list_source_files(input_source, base_dir=base_dir)
                read += local_files(files[name])
        except DataError as exc:
            message = str(exc)
            raise DataError(message if message.startswith(where) else f"{where}: {message}") from None

    def scrub(text: str) -> str:
        for one in scrubs:
            text = one(text)
        return text

    return SqlInputs(files=files, datasets=datasets, read=tuple(read), scrub=scrub)


def relation_names(source: SqlSource) -> dict[str, str]:
    """The name each input is read under by the engines (never one a query would use)."""
    return {name: f"__provender_sql_{name}" for name in source.sources}


def _input_scan(source: FileSource | DeltaSource, files: list[str]) -> str:
    file_list = "[" + ", ".join(literal(f) for f in files) + "]"
    if isinstance(source, FileSource) and isinstance(source.file_format, CsvFormat):
        delimiter = literal(source.file_format.delimiter)
        return f"read_csv({file_list}, header = true, delim = {delimiter}, union_by_name = true)"
    return f"read_parquet({file_list}, hive_partitioning = true, union_by_name = true)"


def duckdb_relation(source: SqlSource, files: Mapping[str, list[str]], registered: Mapping[str, str]) -> str:
    """The query as a DuckDB relation (a parenthesized, aliased subquery) over ``files``.

    ``registered``: the SQL name of each object-store input's dataset, registered on the cursor.
    """
    names = relation_names(source)
    inputs = ", ".join(
        f"{quote(names[name])} AS (SELECT * FROM "
        f"{registered[name] if name in registered else _input_scan(input_source, files[name])})"
        for name, input_source in source.sources.items()
    )
    query = transpile(source.query, source.dialect, to="duckdb", relations=names)
    return f"(WITH {inputs} SELECT * FROM ({query}) AS __provender_sql_result) AS __provender_sql_source"


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
        relation = duckdb_relation(source, inputs.files, register_inputs(connection, inputs))
        try:
            return connection.sql(f"SELECT * FROM {relation} LIMIT 0").to_arrow_table().schema
        except duckdb.Error as exc:
            raise DataError(
                f"The SQL source of feature table {table!r} does not run: {inputs.scrub(str(exc))}"
            ) from None


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
