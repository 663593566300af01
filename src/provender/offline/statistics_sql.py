"""The statistics SQL every offline engine runs, and how its answers become :class:`TableStatistics`.

An engine gives a relation (the window's rows, one column per feature named after it), its
:class:`Dialect` and a function running SQL. The queries:

1. one pass over every feature: counts, nulls, NaNs, mean, min, max, zeros; lengths and exact
   distinct counts of strings, bytes and lists;
2. one query holding, per number feature, a ``GROUP BY`` of its values into :data:`_FINE_BINS`
   equal-width fine bins over ``[min, max]`` (bin ``floor((x - min) * scale)``): per fine bin
   the count, minimum and maximum (where each wanted order statistic and each histogram edge
   lies), and the sums giving the standard deviation (deviations from the mean, two-pass, so
   no cancellation). The histogram counts values under each edge of :func:`histogram_edges`
   (compared with the edges themselves, as ``numpy.histogram`` does): the fine bins wholly
   below it, and an edge inside a fine bin is counted in the collecting pass;
3. exact quantiles by selection: an order statistic that is a fine bin's minimum or maximum (or
   in a bin of equal values) is known; the others are read from their bins' values, collected
   in one pass (a fine bin found by its number: one ``floor`` and a set test per row) when a
   bin holds at most :data:`_COLLECT_LIMIT` values, else re-binned over the bin's own range
   (each level narrows by :data:`_FINE_BINS`). Quantiles are then interpolated as
   ``numpy.quantile`` does (``method="linear"``, its two-sided lerp), so they equal numpy's to
   the bit;
4. one ``GROUP BY`` per string or bytes feature for its top values.

No aggregate holds all values (as an exact ``quantile`` aggregate does), so memory stays
bounded by the fine bins and the collected values, and each pass is a cheap scan. Features
whose range is not finite (infinities) fall back to the dialect's exact quantile aggregate and
a histogram by comparisons.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from provender.definitions import ValueType
from provender.errors import BackendError
from provender.offline.statistics import (
    HISTOGRAM_BINS,
    QUANTILES,
    TOP_VALUES,
    FeatureStatistics,
    Histogram,
    StatisticsPlan,
    TableStatistics,
    histogram_edges,
    kind_of,
)

_FLOATS = {ValueType.FLOAT, ValueType.DOUBLE}
_FINE_BINS = 100 * HISTOGRAM_BINS
"""Fine bins per level of the quantile selection (a multiple of the histogram's, so that its edges
rarely fall inside a fine bin: an edge that does is counted in an extra pass)."""
_COLLECT_LIMIT = 100_000
"""At most this many values of one fine bin are collected to the caller; larger bins are re-binned."""
_MAX_LEVELS = 64
"""Re-binning levels before a bin's values are collected whatever their number (never reached on real data)."""

Run = Callable[[str], list[tuple[object, ...]]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Dialect:
    """The few functions in which the engines' SQL differs.

    Attributes:
        quote: quotes an identifier.
        quantiles: exact quantiles of a DOUBLE expression at the given fractions, as an array
            (only for features whose range is not finite).
        list_length: the length of a list (NULL for a null list).
        byte_length: the length of a bytes value in bytes.
        collect: the aggregate collecting an expression's values into an array.
    """

    quote: Callable[[str], str]
    quantiles: Callable[[str, Sequence[float]], str]
    list_length: Callable[[str], str]
    byte_length: Callable[[str], str]
    collect: Callable[[str], str]


def _double(value: float) -> str:
    return f"CAST('{value!r}' AS DOUBLE)"


def _number(value_type: ValueType, column: str) -> str:
    """A feature's value as DOUBLE, NaN as NULL."""
    if value_type is ValueType.BOOL:
        return f"CAST(CAST({column} AS INT) AS DOUBLE)"
    if value_type in _FLOATS:
        return f"CASE WHEN isnan({column}) THEN NULL ELSE CAST({column} AS DOUBLE) END"
    return f"CAST({column} AS DOUBLE)"


def _as_double(value_type: ValueType, column: str) -> str:
    """A feature's value as DOUBLE.

    NaN stays NaN: a range ``x >= low AND x <= high`` with a finite ``high`` leaves it out, as NaN
    is greater than every number in DuckDB and Spark alike.
    """
    if value_type is ValueType.BOOL:
        return f"CAST(CAST({column} AS INT) AS DOUBLE)"
    return f"CAST({column} AS DOUBLE)"


def _values_in(relation: str, stats: FeatureStatistics, dialect: Dialect, low: float, high: float) -> str:
    """``relation`` reduced to one column ``x``: the feature's values in ``[low, high]`` as DOUBLE."""
    x = _as_double(stats.value_type, dialect.quote(stats.name))
    return f"(SELECT x FROM (SELECT {x} AS x FROM {relation}) WHERE x >= {_double(low)} AND x <= {_double(high)})"


def aggregate_sql(relation: str, features: Sequence[tuple[str, ValueType]], dialect: Dialect) -> str:
    """One pass over ``relation``: the row count, then per feature the columns :func:`read_aggregates` reads.

    A number feature's value (NaN as NULL) is computed once per row, in a subquery; its NaN
    count is then the non-null values less the numbers.
    """
    select, inner = ["count(*)"], ["*"]
    for n, (name, value_type) in enumerate(features):
        column = dialect.quote(name)
        select += [f"count({column})", f"count(*) - count({column})"]
        kind = kind_of(value_type)
        if kind == "number":
            x = dialect.quote(f"__provender_x{n}")
            inner.append(f"{_number(value_type, column)} AS {x}")
            select += [f"count({column}) - count({x})", f"avg({x})", f"min({x})", f"max({x})"]
            select.append(f"count_if({x} = 0)")  # a third of FILTER's cost in DuckDB
        elif kind in ("string", "bytes", "list"):
            length = {"string": f"length({column})", "bytes": dialect.byte_length(column)}.get(
                kind, dialect.list_length(column)
            )
            select += [f"min({length})", f"max({length})", f"avg(CAST({length} AS DOUBLE))"]
            if kind != "list":
                select.append(f"count(DISTINCT {column})")
    return f"SELECT {', '.join(select)} FROM (SELECT {', '.join(inner)} FROM {relation})"


def read_aggregates(
    row: Sequence[object], features: Sequence[tuple[str, ValueType]]
) -> tuple[int, list[FeatureStatistics]]:
    """Read :func:`aggregate_sql`'s row into the row count and statistics (no std, quantiles, histogram yet)."""
    values = iter(row)
    rows = int(next(values))  # type: ignore[call-overload]
    result = []
    for name, value_type in features:
        kind = kind_of(value_type)
        stats: dict[str, object] = {"count": int(next(values)), "null_count": int(next(values))}  # type: ignore[call-overload]
        if kind == "number":
            nan, mean, low, high, zeros = (next(values) for _ in range(5))
            stats |= {
                "nan_count": int(nan or 0) if value_type in _FLOATS else None,  # type: ignore[call-overload]
                "mean": _float(mean),
                "min": _float(low),
                "max": _float(high),
                "zeros": int(zeros or 0),  # type: ignore[call-overload]
            }
        elif kind in ("string", "bytes", "list"):
            low, high, mean = (next(values) for _ in range(3))
            stats |= {"min_length": _int(low), "max_length": _int(high), "mean_length": _float(mean)}
            if kind != "list":
                stats["distinct_count"] = int(next(values))  # type: ignore[call-overload]
        result.append(FeatureStatistics(name=name, value_type=value_type, kind=kind, **stats))  # type: ignore[arg-type]
    return rows, result


# -- numbers: histogram, deviation and exact quantiles by selection ---------------------------------


def _values(stats: FeatureStatistics) -> int:
    """How many non-null, non-NaN values a number feature has."""
    return stats.count - (stats.nan_count or 0)


def _binnable(low: float, high: float) -> bool:
    """Whether ``[low, high]`` (low < high) can be cut into fine bins in floating point."""
    width = high - low
    return math.isfinite(width) and width > 0 and math.isfinite(_FINE_BINS / width)


def _fine(x: str, low: float, high: float) -> str:
    """The fine bin of ``x`` in ``[low, high]``: ``floor((x - low) * scale)``, from 0 to :data:`_FINE_BINS`.

    Monotone in ``x``, so the bins split the sorted values into consecutive runs; ``high`` (and
    values a rounding below it) get bin :data:`_FINE_BINS`, one more bin rather than a ``least``
    per row (which cost a third of the binning pass in DuckDB).
    """
    return f"floor(({x} - {_double(low)}) * {_double(_FINE_BINS / (high - low))})"


def _level_sql(relation: str, stats: FeatureStatistics, dialect: Dialect, low: float, high: float, key: int) -> str:
    """Per fine bin of ``[low, high]``: ``key``, the bin, count, min, max, and the sums of deviations from the mean.

    The sums are of the deviations and of their squares.
    """
    mean = _double(stats.mean or 0.0)
    return (
        f"SELECT {key} AS k, f, count(*), min(x), max(x), sum((x - {mean}) * (x - {mean})), sum(x - {mean}) "
        f"FROM (SELECT x, CAST({_fine('x', low, high)} AS BIGINT) AS f "
        f"FROM {_values_in(relation, stats, dialect, low, high)}) GROUP BY f"
    )


@dataclass(frozen=True, slots=True)
class _Bin:
    """The values of a feature in ``[low, high]``: ``count`` of them, ranked from ``first`` on.

    A fine bin also knows its level's range and its index there: the collecting pass finds its
    values by that index (one bin number per row and a set test, half the cost of a range test
    per bin).
    """

    low: float
    high: float
    first: int
    count: int
    level: tuple[float, float] | None = None
    index: int | None = None


@dataclass(slots=True)
class _Selection:
    """One number feature's order statistics (by 0-based rank) and histogram being found.

    Attributes:
        whole: all values are read in the collecting pass, which also gives the std and histogram.
        pending: bins whose values must be read (or re-binned) for the ranks listed.
        below: per histogram edge ``i`` (1 to 19), the number of values under it once known.
        straddles: edges lying inside a fine bin: (edge index, the bin, the values before it).
    """

    stats: FeatureStatistics
    n: int
    whole: bool = False
    found: dict[int, float] = field(default_factory=dict)
    pending: list[tuple[_Bin, list[int]]] = field(default_factory=list)
    below: dict[int, int] = field(default_factory=dict)
    straddles: list[tuple[int, _Bin]] = field(default_factory=list)

    def locate(self, bins: Sequence[_Bin], ranks: Iterable[int]) -> None:
        """Find ``ranks`` among consecutive ``bins``: known at a bin's ends or in a bin of equal values."""
        wanted = sorted(ranks)
        for part in bins:
            rest = []
            for rank in (r for r in wanted if part.first <= r < part.first + part.count):
                if part.low == part.high or rank == part.first:
                    self.found[rank] = part.low
                elif rank == part.first + part.count - 1:
                    self.found[rank] = part.high
                else:
                    rest.append(rank)
            if rest:
                self.pending.append((part, rest))

    def count_below_edges(self, bins: Sequence[_Bin], edges: Sequence[float]) -> None:
        """Count the values under each inner edge; an edge inside a bin is counted in the collecting pass."""
        for i in range(1, len(edges) - 1):
            edge = edges[i]
            inside = [b for b in bins if b.low < edge <= b.high]
            if inside:
                self.straddles.append((i, inside[0]))
            else:
                self.below[i] = sum(b.count for b in bins if b.high < edge)

    def histogram(self, edges: tuple[float, ...]) -> Histogram:
        """The histogram once every edge's count is known."""
        cumulative = [0, *(self.below[i] for i in range(1, len(edges) - 1)), self.n]
        return Histogram(edges=edges, counts=tuple(b - a for a, b in itertools.pairwise(cumulative)))


def _bins(rows: Iterable[tuple[object, ...]], first: int, level: tuple[float, float]) -> tuple[list[_Bin], float]:
    """:func:`_level_sql`'s rows of ``level`` as consecutive bins ranked from ``first``, and the squared deviations.

    The sum of squared deviations is corrected for the rounding of the mean (the corrected
    two-pass algorithm: ``sum(d^2) - sum(d)^2 / n``).
    """
    bins, squares, deviations, start = [], 0.0, 0.0, first
    for index, count, low, high, square, deviation in sorted(rows, key=lambda row: int(row[0])):  # type: ignore[call-overload]
        bins.append(
            _Bin(low=float(low), high=float(high), first=start, count=int(count), level=level, index=int(index))  # type: ignore[arg-type,call-overload]
        )
        squares += float(square)  # type: ignore[arg-type]
        deviations += float(deviation)  # type: ignore[arg-type]
        start += int(count)  # type: ignore[call-overload]
    n = start - first
    return bins, squares - deviations * deviations / n if n else 0.0


def _wanted_ranks(n: int) -> set[int]:
    """The 0-based ranks ``numpy.quantile`` (linear) reads for :data:`QUANTILES` of ``n`` values."""
    return {rank for q in QUANTILES for rank in _neighbours(n, q)}


def _neighbours(n: int, q: float) -> tuple[int, int]:
    index = (n - 1) * q
    if index >= n - 1:
        return n - 1, n - 1
    below = math.floor(index)
    return below, below + 1


def _interpolate(n: int, q: float, found: dict[int, float]) -> float:
    """``numpy.quantile(values, q)`` from the order statistics ``found`` (numpy's two-sided ``_lerp``)."""
    below, above = _neighbours(n, q)
    a, b = found[below], found[above]
    t = (n - 1) * q - below if below != above else 0.0
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


def _numbers(relation: str, stats: list[FeatureStatistics], dialect: Dialect, run: Run) -> list[FeatureStatistics]:
    """Add std, quantiles and histogram to the number features in ``stats`` with values."""
    selections: list[_Selection] = []
    result: dict[str, FeatureStatistics] = {}
    unbinnable, binned = [], []
    for s in stats:
        n = _values(s)
        if s.kind != "number" or n == 0 or s.min is None or s.max is None:
            continue
        if s.min == s.max:
            edges = histogram_edges(s.min, s.max)
            result[s.name] = replace(
                s,
                std=0.0 if n > 1 else None,
                quantiles=tuple(s.min for _ in QUANTILES),
                histogram=None if edges is None else Histogram(edges=edges, counts=(n,)),
            )
        elif not _binnable(s.min, s.max) or s.mean is None or not math.isfinite(s.mean):
            unbinnable.append(s)
        elif n <= _COLLECT_LIMIT:  # few values: all read in the collecting pass, no binning pass
            selection = _Selection(stats=s, n=n, whole=True)
            selection.pending.append((_Bin(low=s.min, high=s.max, first=0, count=n), sorted(_wanted_ranks(n))))
            selections.append(selection)
        else:
            binned.append(s)
    levels = _levels(relation, [(s, s.min or 0.0, s.max or 0.0) for s in binned], dialect, run)
    for s, rows in zip(binned, levels, strict=True):
        bins, squares = _bins(rows, 0, (s.min or 0.0, s.max or 0.0))
        n = _values(s)
        selection = _Selection(stats=replace(s, std=_std(squares, n)), n=n)
        selection.locate(bins, _wanted_ranks(n))
        edges = histogram_edges(s.min or 0.0, s.max or 0.0)
        assert edges is not None
        selection.count_below_edges(bins, edges)
        selections.append(selection)
    _select(relation, selections, dialect, run)
    for selection in selections:
        edges = histogram_edges(selection.stats.min or 0.0, selection.stats.max or 0.0)
        assert edges is not None
        quantiles = tuple(_interpolate(selection.n, q, selection.found) for q in QUANTILES)
        result[selection.stats.name] = replace(
            selection.stats, quantiles=quantiles, histogram=selection.histogram(edges)
        )
    for s in _unbinnable(relation, unbinnable, dialect, run):
        result[s.name] = s
    return [result.get(s.name, s) for s in stats]


def _select(relation: str, selections: list[_Selection], dialect: Dialect, run: Run) -> None:
    """Find every pending order statistic and edge count: collect small bins, re-bin large ones."""
    for level in range(_MAX_LEVELS + 1):
        _collect(relation, selections, dialect, run, everything=level == _MAX_LEVELS)
        refine = [(s, part, ranks) for s in selections for part, ranks in s.pending]
        if not refine:
            return
        for s in selections:
            s.pending = []
        levels = _levels(relation, [(s.stats, part.low, part.high) for s, part, _ in refine], dialect, run)
        for (selection, part, ranks), rows in zip(refine, levels, strict=True):
            selection.locate(_bins(rows, part.first, (part.low, part.high))[0], ranks)


def _levels(
    relation: str, requests: Sequence[tuple[FeatureStatistics, float, float]], dialect: Dialect, run: Run
) -> list[list[tuple[object, ...]]]:
    """:func:`_level_sql`'s rows (without the key) for each ``(feature, low, high)``, in one query.

    One query rather than one per feature: the same work, but each query is a synchronisation
    of the engine's threads, which a loaded machine makes wait for a core.
    """
    if not requests:
        return []
    sql = " UNION ALL ".join(
        f"SELECT * FROM ({_level_sql(relation, stats, dialect, low, high, key)})"
        for key, (stats, low, high) in enumerate(requests)
    )
    result: list[list[tuple[object, ...]]] = [[] for _ in requests]
    for row in run(sql):
        result[int(row[0])].append(row[1:])  # type: ignore[call-overload]
    return result


def _collect(relation: str, selections: list[_Selection], dialect: Dialect, run: Run, *, everything: bool) -> None:
    """One pass: the values of the small pending bins, and the counts under the straddled edges.

    A bin is read when it holds at most :data:`_COLLECT_LIMIT` values, cannot be re-binned, or
    ``everything`` is set; its ranks are picked from the values sorted. Larger bins stay pending.
    """
    select, reads = [], []
    for n, s in enumerate(selections):
        x = f"x{n}"
        small = [
            (p, r) for p, r in s.pending if everything or p.count <= _COLLECT_LIMIT or not _binnable(p.low, p.high)
        ]
        s.pending = [(p, r) for p, r in s.pending if (p, r) not in small]
        if small:
            select.append(f"{dialect.collect(x)} FILTER (WHERE {_inside(x, [p for p, _ in small])})")
        select += [
            f"count(*) FILTER (WHERE {x} >= {_double(part.low)} AND {x} < {_double(_edge(s, i))})"
            for i, part in s.straddles
        ]
        reads.append((s, small))
    if not select:
        return
    columns = ", ".join(
        f"{_as_double(s.stats.value_type, dialect.quote(s.stats.name))} AS x{n}" for n, s in enumerate(selections)
    )
    row = iter(run(f"SELECT {', '.join(select)} FROM (SELECT {columns} FROM {relation})")[0])
    for s, small in reads:
        if small:
            values = sorted(float(v) for v in next(row) or ())  # type: ignore[attr-defined]
            for part, ranks in small:
                _pick(s, part, ranks, values)
        for i, part in s.straddles:
            s.below[i] = part.first + int(next(row) or 0)  # type: ignore[call-overload]
        s.straddles = []


def _inside(x: str, bins: Sequence[_Bin]) -> str:
    """SQL: whether ``x`` lies in one of ``bins`` (fine bins by their index, others by their range)."""
    levels: dict[tuple[float, float], list[int]] = {}
    tests = []
    for part in bins:
        if part.level is None or part.index is None:
            tests.append(f"({x} >= {_double(part.low)} AND {x} <= {_double(part.high)})")
        else:
            levels.setdefault(part.level, []).append(part.index)
    for (low, high), indexes in levels.items():
        # With the range test: outside it (NaN included) an engine may give any bin number.
        tests.append(
            f"({x} >= {_double(low)} AND {x} <= {_double(high)} AND "
            f"{_fine(x, low, high)} IN ({', '.join(str(i) for i in sorted(indexes))}))"
        )
    return " OR ".join(tests)


def _edge(selection: _Selection, i: int) -> float:
    """The ``i``-th histogram edge of the feature."""
    edges = histogram_edges(selection.stats.min or 0.0, selection.stats.max or 0.0)
    assert edges is not None
    return edges[i]


def _pick(selection: _Selection, part: _Bin, ranks: list[int], values: list[float]) -> None:
    """Set the ranks' values from ``values`` (sorted; the bin's are a run of them)."""
    start = bisect.bisect_left(values, part.low)
    stop = bisect.bisect_right(values, part.high)
    if stop - start != part.count:
        raise BackendError(
            f"statistics of feature {selection.stats.name!r}: {stop - start} values in "
            f"[{part.low!r}, {part.high!r}] where the previous pass counted {part.count}; "
            "did the source change while its statistics were computed?"
        )
    for rank in ranks:
        selection.found[rank] = values[start + rank - part.first]
    if selection.whole:
        s = selection.stats
        assert s.min is not None and s.max is not None and s.mean is not None
        edges = histogram_edges(s.min, s.max)
        assert edges is not None
        selection.below = {i: bisect.bisect_left(values, edges[i]) for i in range(1, len(edges) - 1)}
        deviations = [v - s.mean for v in values]
        squares = math.fsum(d * d for d in deviations)
        selection.stats = replace(s, std=_std(squares - math.fsum(deviations) ** 2 / len(values), len(values)))


def _std(squares: float, n: int) -> float | None:
    """The sample standard deviation from the sum of squared deviations (None for one value)."""
    return math.sqrt(max(squares, 0.0) / (n - 1)) if n > 1 else None


def _unbinnable(
    relation: str, stats: list[FeatureStatistics], dialect: Dialect, run: Run
) -> Iterable[FeatureStatistics]:
    """Std, quantiles (the dialect's exact aggregate) and histogram of features with an infinite range."""
    if not stats:
        return []
    select = []
    for s in stats:
        x = _number(s.value_type, dialect.quote(s.name))
        select += [f"stddev_samp({x})", dialect.quantiles(x, QUANTILES)]
        bounds = histogram_edges(s.min or 0.0, s.max or 0.0) or ()
        for i in range(len(bounds) - 1):
            upper = "<=" if i == len(bounds) - 2 else "<"
            select.append(
                f"sum(CASE WHEN {x} >= {_double(bounds[i])} AND {x} {upper} {_double(bounds[i + 1])} THEN 1 ELSE 0 END)"
            )
    values = iter(run(f"SELECT {', '.join(select)} FROM {relation}")[0])
    result = []
    for s in stats:
        std, quantiles = next(values), next(values)
        edges = histogram_edges(s.min or 0.0, s.max or 0.0)
        counts = tuple(int(next(values) or 0) for _ in (edges or ())[1:])  # type: ignore[call-overload]
        result.append(
            replace(
                s,
                std=_float(std),
                quantiles=None if quantiles is None else tuple(float(q) for q in quantiles),  # type: ignore[attr-defined]
                histogram=None if edges is None else Histogram(edges=edges, counts=counts),
            )
        )
    return result


# -- strings and bytes ------------------------------------------------------------------------------


def top_values_sql(relation: str, stats: FeatureStatistics, dialect: Dialect) -> str:
    """The :data:`TOP_VALUES` most frequent non-null values of a string or bytes feature, ties by value."""
    column = dialect.quote(stats.name)
    return (
        f"SELECT {column}, count(*) AS n FROM {relation} WHERE {column} IS NOT NULL "
        f"GROUP BY {column} ORDER BY n DESC, {column} LIMIT {TOP_VALUES}"
    )


def top_value(value: object) -> str:
    """A top value as text (bytes as hex)."""
    return value.hex() if isinstance(value, bytes | bytearray) else str(value)


def _float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


def compute_statistics(
    plan: StatisticsPlan,
    relation: str,
    dialect: Dialect,
    run: Run,
    *,
    engine: str,
) -> TableStatistics:
    """Compute the statistics of ``plan`` with ``run`` (executes SQL, returns rows) over ``relation``.

    ``relation`` holds the rows of the window, one column per feature named after it. It is
    read once for the aggregates, once per number feature (plus a collecting pass, and rarely
    more, for quantiles) and once per string or bytes feature, so it should be cheap to re-read
    and must not change meanwhile (an engine materializes or caches it, or reads immutable files).
    """
    features = [(f.name, f.value_type) for f in plan.join.features]
    rows, stats = read_aggregates(run(aggregate_sql(relation, features, dialect))[0], features)
    result = []
    for s in _numbers(relation, stats, dialect, run):
        if s.kind in ("string", "bytes"):
            top = run(top_values_sql(relation, s, dialect))
            result.append(replace(s, top_values=tuple((top_value(v), int(n)) for v, n in top)))  # type: ignore[call-overload]
        else:
            result.append(s)
    return TableStatistics(
        table=plan.join.name, start=plan.start, end=plan.end, rows=rows, features=tuple(result), engine=engine
    )
