"""The statistics SQL's exact quantiles by selection and histograms, against numpy, on DuckDB.

Small fine bins and a small collect limit force every path of the selection: ranks at bin
ends, bins of equal values, collected bins, re-binned bins (several levels on heavy tails),
histogram edges inside a fine bin, and the fallback for infinite ranges.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from fractions import Fraction

import duckdb
import numpy as np
import pyarrow as pa
import pytest

import provender as pv
from provender.errors import BackendError
from provender.offline import statistics_sql
from provender.offline.duckdb import _DUCKDB_DIALECT
from provender.offline.plan import table_join
from provender.offline.statistics import QUANTILES, StatisticsPlan, TableStatistics
from tests.support.builders import ENTITIES

START, END = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)


def _distributions(rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = 5000
    heavy = rng.lognormal(0, 3, n)
    heavy[:3] = [1e12, -1e9, 3e15]  # outliers: nearly every value lands in one fine bin, level after level
    return {
        "uniform": rng.random(n),
        "heavy": heavy,
        "ties": rng.integers(0, 4, n).astype(np.float64),  # bins of equal values
        "normal": rng.normal(-3.0, 2.0, n),
        "two": np.array([1.5, -2.25]),
        "one": np.array([7.0]),
        "constant": np.full(300, 2.5),
        "signed_zeros": np.concatenate([np.zeros(50), -np.zeros(50), rng.normal(0, 1e-300, 100)]),
        "tiny_range": 1.0 + np.arange(400) * np.finfo(np.float64).eps,
    }


@pytest.fixture(params=[(20 * 5, 40), (20 * 100, 100_000)], ids=["small_bins", "default_bins"])
def limits(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    fine, collect = request.param
    monkeypatch.setattr(statistics_sql, "_FINE_BINS", fine)
    monkeypatch.setattr(statistics_sql, "_COLLECT_LIMIT", collect)
    yield


def _statistics(values: dict[str, np.ndarray], queries: list[str] | None = None) -> TableStatistics:
    table = pv.FeatureTable(
        name="numbers",
        entities=["driver_id"],
        features=[pv.Feature(name, pv.ValueType.DOUBLE) for name in values],
        batch_source=pv.FileSource(path="-", event_timestamp_column="ts"),
    )
    rows = max(len(v) for v in values.values())
    padded = {
        k: pa.array(np.concatenate([v, np.full(rows - len(v), np.nan)]), mask=np.arange(rows) >= len(v))
        for k, v in values.items()
    }
    db = duckdb.connect()
    db.register("numbers", pa.table(padded))

    def run(sql: str) -> list[tuple[object, ...]]:
        if queries is not None:
            queries.append(sql)
        return db.execute(sql).fetchall()

    plan = StatisticsPlan(join=table_join(table, table.features, ENTITIES), start=START, end=END)
    return statistics_sql.compute_statistics(plan, "numbers", _DUCKDB_DIALECT, run, engine="duckdb")


@pytest.mark.usefixtures("limits")
def test_quantiles_and_histograms_equal_numpy_bit_for_bit() -> None:
    data = _distributions(np.random.default_rng(11))
    stats = _statistics(data)
    for name, values in data.items():
        f = stats[name]
        assert f.count == len(values), name
        assert f.quantiles == tuple(float(q) for q in np.quantile(values, QUANTILES)), name
        assert f.histogram is not None
        edges = np.array(f.histogram.edges)
        if len(edges) > 2:
            assert f.histogram.edges == tuple(np.linspace(values.min(), values.max(), 21)), name
        assert f.histogram.counts == tuple(int(c) for c in np.histogram(values, bins=edges)[0]), name
        assert f.std == _exact_std(values), name


def _exact_std(values: np.ndarray) -> float | None:
    """The sample standard deviation in exact rational arithmetic, rounded once (numpy's own
    loses digits when the spread is tiny beside the mean, as in ``tiny_range``)."""
    if len(values) < 2:
        return None
    exact = [Fraction(float(v)) for v in values]
    mean = sum(exact, Fraction(0)) / len(exact)
    std = math.sqrt(sum(((v - mean) ** 2 for v in exact), Fraction(0)) / (len(exact) - 1))
    return pytest.approx(std, rel=1e-12, abs=1e-300)  # type: ignore[return-value]


def test_heavy_tails_are_re_binned_level_after_level(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statistics_sql, "_FINE_BINS", 100)
    monkeypatch.setattr(statistics_sql, "_COLLECT_LIMIT", 40)
    values = np.random.default_rng(5).lognormal(0, 3, 5000)
    values[:2] = [1e15, -1e15]
    queries: list[str] = []
    stats = _statistics({"heavy": values}, queries)
    levels = [q for q in queries if "GROUP BY f" in q]
    assert len(levels) >= 3, "the outliers leave almost every value in one bin: several levels"
    assert stats["heavy"].quantiles == tuple(float(q) for q in np.quantile(values, QUANTILES))


def test_infinite_ranges_fall_back_to_the_exact_aggregate() -> None:
    values = np.array([1.0, 2.0, np.inf, 4.0, -np.inf, 3.0])
    stats = _statistics({"inf": values})
    f = stats["inf"]
    assert (f.min, f.max) == (-np.inf, np.inf)
    assert f.histogram is None
    assert f.quantile(0.5) == float(np.quantile(values, 0.5))


def test_a_source_changing_between_passes_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The collecting pass checks the counts of the binning pass: changed rows cannot go unnoticed."""
    monkeypatch.setattr(statistics_sql, "_FINE_BINS", 20)
    db = duckdb.connect()
    db.execute("CREATE TABLE numbers AS SELECT CAST(i AS DOUBLE) AS v FROM range(1000) t(i)")
    table = pv.FeatureTable(
        name="numbers",
        entities=["driver_id"],
        features=[pv.Feature("v", pv.ValueType.DOUBLE)],
        batch_source=pv.FileSource(path="-", event_timestamp_column="ts"),
    )

    def run(sql: str) -> list[tuple[object, ...]]:
        if sql.startswith("SELECT list("):
            db.execute("INSERT INTO numbers SELECT CAST(i AS DOUBLE) + 0.5 FROM range(100) t(i)")
        return db.execute(sql).fetchall()

    plan = StatisticsPlan(join=table_join(table, table.features, ENTITIES), start=START, end=END)
    with pytest.raises(BackendError, match=r"statistics of feature 'v': \d+ values in .* previous pass counted"):
        statistics_sql.compute_statistics(plan, "numbers", _DUCKDB_DIALECT, run, engine="duckdb")
