"""The SQL of :class:`~provender.definitions.source.SqlSource`: checked once, transpiled per engine.

A query is parsed with sqlglot in its declared dialect when the definition is built: it must be
one read-only query (``SELECT``, with CTEs, joins, set operations), reading only the tables its
``sources`` name. Engines get it with :func:`transpile`, in their own dialect, with each table
name replaced by the relation the engine reads it from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, UnsupportedError

from provender.errors import DefinitionError

__all__ = ["ENGINE_DIALECTS", "check_query", "transpile"]

ENGINE_DIALECTS = {"duckdb": "duckdb", "spark": "spark"}
"""The sqlglot dialect each offline engine runs: a query must transpile to every one of them."""


def _parse(query: str, dialect: str) -> exp.Query:
    try:
        sqlglot.Dialect.get_or_raise(dialect)
    except ValueError:
        raise DefinitionError("SqlSource", "dialect", f"{dialect!r} is not a SQL dialect sqlglot knows") from None
    try:
        parsed = sqlglot.parse(query, read=dialect)
    except ParseError as exc:
        raise DefinitionError("SqlSource", "query", f"is not valid {dialect} SQL: {exc}") from None
    statements = [statement for statement in parsed if statement is not None]
    if len(statements) != 1:
        raise DefinitionError("SqlSource", "query", f"must be one query, got {len(statements)} statements")
    statement = statements[0]
    if not isinstance(statement, exp.Query):
        raise DefinitionError(
            "SqlSource",
            "query",
            f"must be a SELECT query (it parses as {statement.key.upper()}); nothing may be written",
        )
    return statement


def _read_tables(statement: exp.Query) -> list[exp.Table]:
    """The tables the query reads (CTE names excluded)."""
    ctes = {cte.alias_or_name for cte in statement.find_all(exp.CTE)}
    return [table for table in statement.find_all(exp.Table) if table.name and table.name not in ctes]


def check_query(query: str, dialect: str, sources: Sequence[str]) -> None:
    """Raise DefinitionError unless ``query`` is one read-only query over exactly ``sources``.

    It must also transpile to every engine's dialect without a construct sqlglot reports as
    unsupported there (e.g. a function with no equivalent), so it fails here, not in a job.
    """
    statement = _parse(query, dialect)
    tables = _read_tables(statement)
    unknown = sorted({t.sql(dialect=dialect) for t in tables if t.db or t.catalog or t.name not in sources})
    if unknown:
        raise DefinitionError(
            "SqlSource",
            "query",
            f"reads {', '.join(unknown)}, which sources does not name (sources: {', '.join(sources)}); "
            "add each table the query reads to sources",
        )
    unused = sorted(set(sources) - {t.name for t in tables})
    if unused:
        raise DefinitionError("SqlSource", "sources", f"lists {', '.join(unused)}, which the query does not read")
    for engine, target in ENGINE_DIALECTS.items():
        try:
            statement.sql(dialect=target, unsupported_level=ErrorLevel.RAISE)
        except UnsupportedError as exc:
            raise DefinitionError(
                "SqlSource", "query", f"cannot be written for the {engine} engine ({target} SQL): {exc}"
            ) from None


def transpile(query: str, dialect: str, *, to: str, relations: Mapping[str, str]) -> str:
    """Return ``query`` in dialect ``to``, each source table replaced by ``relations[name]``.

    ``relations`` maps a source name to the name of the relation (a view, a CTE) the engine reads
    it from; the query's own aliases are kept, so ``t.fare`` still resolves.
    """
    statement = _parse(query, dialect)
    for table in _read_tables(statement):
        alias = table.alias or table.name
        table.replace(exp.to_table(relations[table.name]).as_(alias) if alias else exp.to_table(relations[table.name]))
    return statement.sql(dialect=to)
