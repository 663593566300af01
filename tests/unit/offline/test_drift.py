"""Drift: detected on a shifted distribution, not on a resample of the same one (DuckDB statistics)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

import provender as pv
from provender.cli.main import cli
from provender.offline.drift import jensen_shannon_distance, population_stability_index
from tests.support.builders import DRIVER, make_client, write_parquet

DAY = datetime(2026, 1, 1, tzinfo=UTC)
ROWS = 4000
CITIES = ["paris", "lyon", "nice", "lille"]


def _day(rng: np.random.Generator, day: int, *, mean: float, weights: list[float]) -> pa.Table:
    return pa.table(
        {
            "driver_id": pa.array(rng.integers(0, 1000, ROWS), pa.int64()),
            "ts": pa.array([DAY + timedelta(days=day, seconds=int(s)) for s in rng.integers(0, 86400, ROWS)]),
            "conv_rate": pa.array(rng.normal(mean, 1.0, ROWS), pa.float64()),
            "city": pa.array(rng.choice(CITIES, ROWS, p=weights), pa.string()),
        }
    )


@pytest.fixture
def client(tmp_path: Path) -> Iterator[pv.Client]:
    rng = np.random.default_rng(11)
    same = [0.4, 0.3, 0.2, 0.1]
    days = [
        _day(rng, 0, mean=0.0, weights=same),  # baseline
        _day(rng, 1, mean=0.0, weights=same),  # a resample of the same distribution
        _day(rng, 2, mean=0.6, weights=[0.1, 0.2, 0.3, 0.4]),  # shifted
    ]
    path = write_parquet(pa.concat_tables(days), tmp_path / "src" / "rows.parquet")
    table = pv.FeatureTable(
        name="driver_statistics",
        entities=["driver_id"],
        features=[pv.Feature("conv_rate", pv.ValueType.DOUBLE), pv.Feature("city", pv.ValueType.STRING)],
        batch_source=pv.FileSource(path=str(path), event_timestamp_column="ts"),
    )
    with make_client(tmp_path / "project") as c:
        c.apply([DRIVER, table])
        yield c


def _stats(client: pv.Client, day: int) -> pv.TableStatistics:
    return client.get_statistics(
        "driver_statistics", start=DAY + timedelta(days=day), end=DAY + timedelta(days=day + 1)
    )


def test_a_resample_does_not_drift(client: pv.Client) -> None:
    report = client.compare_statistics(_stats(client, 0), _stats(client, 1))
    assert report.drifted == []
    assert report["conv_rate"].psi is not None and report["conv_rate"].psi < 0.05
    assert report["city"].js_distance is not None and report["city"].js_distance < 0.05


def test_a_shift_drifts(client: pv.Client) -> None:
    report = client.compare_statistics(_stats(client, 0), _stats(client, 2))
    assert report.drifted == ["conv_rate", "city"]
    assert report["conv_rate"].psi is not None and report["conv_rate"].psi > 0.2
    assert report["city"].psi is not None and report["city"].psi > 0.2
    assert "conv_rate: psi=" in repr(report) and "DRIFTED" in repr(report)
    assert report.to_arrow().column("drifted").to_pylist() == [True, True]


def test_identical_statistics_have_zero_drift(client: pv.Client) -> None:
    stats = _stats(client, 0)
    report = client.compare_statistics(stats, stats)
    assert report["conv_rate"].psi == pytest.approx(0.0, abs=1e-12)
    assert report["city"].js_distance == pytest.approx(0.0, abs=1e-6)


def test_measures() -> None:
    assert population_stability_index([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert jensen_shannon_distance([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1.0)
    assert population_stability_index([0.9, 0.1], [0.1, 0.9]) == pytest.approx(2 * 0.8 * np.log(9))


def test_stats_compare_cli(client: pv.Client, tmp_path: Path) -> None:
    config = str(tmp_path / "project" / "provender.yaml")
    window = [f"{(DAY + timedelta(days=d)).date()}/{(DAY + timedelta(days=d + 1)).date()}" for d in range(3)]
    base = ["--config", config, "stats", "compare", "-t", "driver_statistics", "--baseline", window[0]]
    same = CliRunner().invoke(cli, [*base, "--current", window[1]])
    assert same.exit_code == 0, same.output
    assert "conv_rate: psi=" in same.output and "DRIFTED" not in same.output
    shifted = CliRunner().invoke(cli, [*base, "--current", window[2]])
    assert shifted.exit_code == 3, shifted.output
    assert "DRIFTED" in shifted.output
