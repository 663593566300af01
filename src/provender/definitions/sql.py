"""The SQL of :class:`~provender.definitions.source.SqlSource`: checked once, transpiled per engine.

A query is parsed with sqlglot in its declared dialect when the definition is built: it must be
one read-only query (``SELECT``, with CTEs, joins, set operations), reading only the tables its
``sources`` name. Engines get it with :func:`transpile`, in their own dialect, with each table
name replaced by the relation the engine reads it from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, SqlglotError, UnsupportedError
from sqlglot.optimizer.scope import Scope, traverse_scope, walk_in_scope

from provender.errors import DefinitionError

__all__ = ["ENGINE_DIALECTS", "ReadPlan", "check_query", "plan_reads", "transpile"]

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


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """What a SQL source's query needs from its inputs, for a read that uses only some result columns.

    Attributes:
        query: the query to run instead of the declared one (same dialect): the declared query
            with every result column nobody reads removed, and its result columns named as asked.
        columns: per input, the columns the query reads from it (in the input's own spelling).
        time_columns: per input whose column the result's event timestamp is an unchanged copy
            of (proven below), that column: a filter on the result's event time holds for the
            input's rows before the query runs.
    """

    query: str
    columns: Mapping[str, tuple[str, ...]]
    time_columns: Mapping[str, str]


class _Unprovable(Exception):
    """The query's structure does not let a filter on its event time move to an input."""


def plan_reads(
    query: str,
    dialect: str,
    schemas: Mapping[str, Sequence[str]],
    output: Sequence[str],
    event_timestamp_column: str,
) -> ReadPlan | None:
    """Plan reading only what ``query`` needs to give the result columns ``output``.

    ``schemas``: each input's column names. The query is qualified against them (stars expanded,
    each column given its table) and the projections no one reads are removed (sqlglot's
    ``qualify`` and ``pushdown_projections``); the columns left in each scope are the ones read.

    An input is time-prunable when the result's ``event_timestamp_column`` is, along every step
    from the result to that input, a plain column reference (aliases allowed; no expression, no
    cast), each step's SELECT keeps its rows one for one (no GROUP BY, aggregate, window, LIMIT,
    OFFSET, QUALIFY, DISTINCT ON; set operations only UNION [ALL]), the input is read once and no
    CTE is read twice. Then dropping the input's rows whose time is outside a range drops exactly
    the result rows outside it (and rows of an outer join whose time is null, which no read
    keeps), and nothing else.

    Returns None when the query cannot be planned (sqlglot cannot resolve a column, a result
    column in ``output`` is missing...): the caller then reads every input whole.
    """
    from sqlglot.optimizer.pushdown_projections import pushdown_projections
    from sqlglot.optimizer.qualify import qualify

    statement = _parse(query, dialect)
    wrapper = exp.select(*(exp.column(name, quoted=True) for name in output)).from_(
        exp.Subquery(this=statement, alias=exp.TableAlias(this=exp.to_identifier("__provender_result")))
    )
    schema: dict[str, object] = {name: dict.fromkeys(columns, "UNKNOWN") for name, columns in schemas.items()}
    try:
        qualified = qualify(
            wrapper, dialect=dialect, schema=schema, validate_qualify_columns=True, quote_identifiers=True
        )
        pruned = pushdown_projections(qualified)
        scopes = traverse_scope(pruned)
    except (SqlglotError, KeyError, ValueError):
        return None
    spelling = {name.lower(): name for name in schemas}
    if len(spelling) != len(schemas):
        return None
    for table in pruned.find_all(exp.Table):  # identifiers come back normalized; the engines look names up as declared
        if not table.db and table.name.lower() in spelling:
            table.set("this", exp.to_identifier(spelling[table.name.lower()]))
    root = scopes[-1]
    assert isinstance(root.expression, exp.Select)  # the wrapper
    for select, name in zip(root.expression.selects, output, strict=True):  # the result's names, as asked
        select.set("alias", exp.to_identifier(name, quoted=True))
    spellings = {name: {column.lower(): column for column in columns} for name, columns in schemas.items()}
    if any(len(spellings[name]) != len(columns) for name, columns in schemas.items()):
        return None  # names that differ only by case: no safe mapping back
    read: dict[str, set[str]] = {name: set() for name in schemas}
    for scope in scopes:
        for column in scope.columns:
            source = scope.sources.get(column.table)
            if isinstance(source, exp.Table) and source.name in read:
                actual = spellings[source.name].get(column.name.lower())
                if actual is None:
                    return None
                read[source.name].add(actual)
                column.set(
                    "this", exp.to_identifier(actual, quoted=True)
                )  # as the input spells it (Spark may be case-sensitive)
    columns = {name: tuple(c for c in schemas[name] if c in used) for name, used in read.items()}  # the input's order
    try:
        leaves = _trace(root, output.index(event_timestamp_column))
        _check_single_reads(pruned, leaves)
    except _Unprovable:
        leaves = []
    time_columns = {table.name: spellings[table.name][leaf.lower()] for table, leaf in leaves}
    return ReadPlan(query=pruned.sql(dialect=dialect), columns=columns, time_columns=time_columns)


_ROW_CHANGING = ("group", "having", "limit", "offset", "qualify", "fetch")


def _trace(scope: Scope, position: int) -> list[tuple[exp.Table, str]]:
    """The input columns the ``position``-th result column of ``scope`` is an unchanged copy of.

    Raises:
        _Unprovable: a step changes the value or the rows (see :func:`plan_reads`).
    """
    statement = scope.expression
    if isinstance(statement, exp.SetOperation):
        if not isinstance(statement, exp.Union) or any(statement.args.get(arg) for arg in _ROW_CHANGING):
            raise _Unprovable
        return [leaf for branch in scope.set_operation_scopes for leaf in _trace(branch, position)]
    if not isinstance(statement, exp.Select) or any(statement.args.get(arg) for arg in _ROW_CHANGING):
        raise _Unprovable
    distinct = statement.args.get("distinct")
    if distinct is not None and distinct.args.get("on") is not None:
        raise _Unprovable
    if any(isinstance(node, exp.AggFunc | exp.Window) for node in walk_in_scope(statement)):
        raise _Unprovable
    selects = statement.selects
    if position >= len(selects):
        raise _Unprovable
    column = selects[position].unalias()
    if not isinstance(column, exp.Column) or not column.table:
        raise _Unprovable
    source = scope.sources.get(column.table)
    if isinstance(source, exp.Table):
        return [(source, column.name)]
    if not isinstance(source, Scope):
        raise _Unprovable
    if not isinstance(source.expression, exp.Query):
        raise _Unprovable
    names = source.expression.named_selects
    if column.name not in names:
        raise _Unprovable
    return _trace(source, names.index(column.name))


def _check_single_reads(statement: exp.Expression, leaves: list[tuple[exp.Table, str]]) -> None:
    """Raise _Unprovable if an input on the event time's path, or any CTE, is read more than once."""
    counts: dict[str, int] = {}
    for table in statement.find_all(exp.Table):
        if not table.db:
            counts[table.name.lower()] = counts.get(table.name.lower(), 0) + 1
    ctes = [cte.alias_or_name.lower() for cte in statement.find_all(exp.CTE)]
    if any(counts.get(name, 0) > 1 for name in ctes) or any(
        cte.args.get("recursive") for cte in statement.find_all(exp.With)
    ):
        raise _Unprovable
    if any(counts.get(table.name.lower(), 0) != 1 for table, _ in leaves):
        raise _Unprovable
