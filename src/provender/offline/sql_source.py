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

from collections.abc import Mapping
from pathlib import Path

import duckdb
import pyarrow as pa

from provender.definitions import CsvFormat, Entity, FeatureTable, FileSource, SqlSource
from provender.definitions.sql import transpile
from provender.errors import DataError
from provender.offline.duckdb_sql import literal, quote
from provender.offline.files import is_remote, list_source_files
from provender.offline.plan import check_source_schema, table_join

__all__ = ["check_sql_source", "duckdb_relation", "input_files", "relation_names"]


def input_files(source: SqlSource, *, base_dir: Path, table: str) -> dict[str, list[str]]:
    """The files of each input of ``source`` (local paths only).

    Raises:
        DataError: an input is an object-store URL, does not exist or has no file (naming it and the table).
    """
    files = {}
    for name, input_source in source.sources.items():
        where = f"Input {name!r} of the SQL source of feature table {table!r}"
        if is_remote(input_source.path):
            raise DataError(f"{where} is {input_source.path}: SQL sources read local files only (for now).")
        try:
            files[name] = list_source_files(input_source, base_dir=base_dir)
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from None
    return files


def relation_names(source: SqlSource) -> dict[str, str]:
    """The name each input is read under by the engines (never one a query would use)."""
    return {name: f"__provender_sql_{name}" for name in source.sources}


def _input_scan(source: FileSource, files: list[str]) -> str:
    file_list = "[" + ", ".join(literal(f) for f in files) + "]"
    if isinstance(source.file_format, CsvFormat):
        delimiter = literal(source.file_format.delimiter)
        return f"read_csv({file_list}, header = true, delim = {delimiter}, union_by_name = true)"
    return f"read_parquet({file_list}, hive_partitioning = true, union_by_name = true)"


def duckdb_relation(source: SqlSource, files: Mapping[str, list[str]]) -> str:
    """The query as a DuckDB relation (a parenthesized, aliased subquery) over ``files``."""
    names = relation_names(source)
    inputs = ", ".join(
        f"{quote(names[name])} AS (SELECT * FROM {_input_scan(input_source, files[name])})"
        for name, input_source in source.sources.items()
    )
    query = transpile(source.query, source.dialect, to="duckdb", relations=names)
    return f"(WITH {inputs} SELECT * FROM ({query}) AS __provender_sql_result) AS __provender_sql_source"


def query_schema(source: SqlSource, *, base_dir: Path, table: str) -> pa.Schema:
    """The Arrow schema of the query's result, planned by DuckDB over the inputs (no row is read).

    Raises:
        DataError: an input cannot be read, or the query fails to plan (an unknown column or
            table, a type error), with DuckDB's reason.
    """
    relation = duckdb_relation(source, input_files(source, base_dir=base_dir, table=table))
    with duckdb.connect() as connection:
        try:
            return connection.sql(f"SELECT * FROM {relation} LIMIT 0").to_arrow_table().schema
        except duckdb.Error as exc:
            raise DataError(f"The SQL source of feature table {table!r} does not run: {exc}") from None


def check_sql_source(table: FeatureTable, entities: Mapping[str, Entity], *, base_dir: Path) -> None:
    """Check, at apply, that ``table``'s SQL source runs and gives its declared columns and types.

    Raises:
        DataError: see :func:`query_schema`, or a declared key, feature or time column that the
            result lacks or holds with an incompatible type (naming it).
    """
    source = table.batch_source
    if not isinstance(source, SqlSource) or any(name not in entities for name in table.entities):
        return  # not a SQL source, or the plan refuses the table for its unregistered entities
    schema = query_schema(source, base_dir=base_dir, table=table.name)
    check_source_schema(table_join(table, table.source_features, entities), schema)
