"""Statistics recorded by each ingestion job of what it wrote; read back by from_job and the CLI."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

import provender as pv
from provender.cli.main import cli
from tests.support.builders import DRIVER, make_client, write_parquet

END = datetime(2026, 3, 1, tzinfo=UTC)
START = END - timedelta(days=1)
DRIVERS = 50


@pytest.fixture
def project(tmp_path: Path) -> Iterator[tuple[pv.Client, Path, pa.Table]]:
    rng = np.random.default_rng(3)
    drivers = np.repeat(np.arange(1, DRIVERS + 1), 3)
    hours = np.tile([3, 2, 1], DRIVERS)  # the last row of each driver is its latest (1 h before END)
    rows = pa.table(
        {
            "driver_id": pa.array(drivers, pa.int64()),
            "ts": pa.array([END - timedelta(hours=int(h)) for h in hours], pa.timestamp("us", tz="UTC")),
            "conv_rate": pa.array(rng.random(len(drivers)), pa.float64()),
            "city": pa.array(rng.choice(["paris", "lyon", "nice"], len(drivers)), pa.string()),
        }
    )
    path = write_parquet(rows, tmp_path / "src" / "rows.parquet")
    table = pv.FeatureTable(
        name="driver_statistics",
        entities=["driver_id"],
        features=[pv.Feature("conv_rate", pv.ValueType.DOUBLE), pv.Feature("city", pv.ValueType.STRING)],
        batch_source=pv.FileSource(path=str(path), event_timestamp_column="ts"),
    )
    with make_client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        yield client, tmp_path / "project" / "provender.yaml", rows.slice(0).filter(pa.array(hours == 1))


def test_a_job_records_the_statistics_of_what_it_wrote(project: tuple[pv.Client, Path, pa.Table]) -> None:
    client, config, latest = project
    job = client.start_offline_to_online_ingestion("driver_statistics", start=START, end=END).wait()
    stats = job.statistics
    assert stats is not None
    assert (stats.rows, stats.job_id) == (DRIVERS, job.id)
    written = latest.column("conv_rate").to_numpy()
    assert stats["conv_rate"].quantiles == tuple(
        float(q) for q in np.quantile(written, [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99])
    )
    assert stats["conv_rate"].max == written.max()
    cities = latest.column("city").to_pylist()
    assert dict(stats["city"].top_values or ()) == {c: cities.count(c) for c in set(cities)}

    recorded = client.get_statistics("driver_statistics", from_job=job.id)
    assert recorded == stats
    assert client.get_statistics("driver_statistics", from_job=job.id, features=["city"]).features == (stats["city"],)
    with pytest.raises(pv.DataError, match="not both"):
        client.get_statistics("driver_statistics", start=START, end=END, from_job=job.id)
    with pytest.raises(pv.DataError, match="needs start and end"):
        client.get_statistics("driver_statistics")

    shown = CliRunner().invoke(cli, ["--config", str(config), "stats", "show", "--table", "driver_statistics"])
    assert shown.exit_code == 0, shown.output
    assert f"job={job.id}" in shown.output and "conv_rate (DOUBLE): count=50" in shown.output
    as_json = CliRunner().invoke(
        cli, ["--config", str(config), "stats", "show", "-t", "driver_statistics", "--job", job.id, "--json"]
    )
    assert json.loads(as_json.output)["rows"] == DRIVERS


def test_stats_show_computes_a_window(project: tuple[pv.Client, Path, pa.Table]) -> None:
    _, config, _ = project
    args = ["--config", str(config), "stats", "show", "-t", "driver_statistics", "--start", START.isoformat()]
    shown = CliRunner().invoke(cli, [*args, "--end", END.isoformat(), "--feature", "city"])
    assert shown.exit_code == 0, shown.output
    assert "city (STRING): count=150 nulls=0 distinct=3" in shown.output
    none_yet = CliRunner().invoke(cli, ["--config", str(config), "stats", "show", "-t", "driver_statistics"])
    assert none_yet.exit_code != 0
    assert "no ingestion job of 'driver_statistics' recorded statistics" in none_yet.output


def test_ingest_cli_prints_the_violations(project: tuple[pv.Client, Path, pa.Table]) -> None:
    client, config, _ = project
    table = client.get_feature_table("driver_statistics")
    features = [
        pv.Feature("conv_rate", pv.ValueType.DOUBLE, expect=[pv.expect.between(0, 0.5)]),
        *table.features[1:],
    ]
    client.apply(dataclasses.replace(table, features=features))
    args = ["--config", str(config), "ingest", "-t", "driver_statistics", "--start", START.isoformat()]
    failed = CliRunner().invoke(cli, [*args, "--end", END.isoformat()])
    assert failed.exit_code != 0
    assert "conv_rate: between(0, 0.5) violated by" in failed.output
    warned = CliRunner().invoke(cli, [*args, "--end", END.isoformat(), "--validation-policy", "warn"])
    assert warned.exit_code == 0, warned.output
    assert "conv_rate: between(0, 0.5) violated by" in warned.output
    assert f"{DRIVERS} entity keys written" in warned.output


def test_stats_serving_describes_the_values_served(project: tuple[pv.Client, Path, pa.Table], tmp_path: Path) -> None:
    _, config, _ = project
    lines = [
        {
            "time": (END + timedelta(minutes=n)).isoformat(),
            "protocol": "http",
            "endpoint": "/v1/online-features",
            "project": "default",
            "status": "200",
            "request": {"features": ["driver_statistics"], "entities": {"driver_id": [n, n + 1]}},
            "response": {
                "columns": {
                    "driver_id": [n, n + 1],
                    "driver_statistics__conv_rate": [n / 10, None],
                    "driver_statistics__city": ["paris", "lyon" if n % 2 else "paris"],
                }
            },
        }
        for n in range(4)
    ]
    lines.append({"time": END.isoformat(), "project": "default", "status": "400", "error": "bad ref"})
    log = tmp_path / "requests.jsonl"
    log.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    shown = CliRunner().invoke(
        cli, ["--config", str(config), "stats", "serving", "--log", str(log), "-t", "driver_statistics", "--json"]
    )
    assert shown.exit_code == 0, shown.output
    served = pv.TableStatistics.from_dict(json.loads(shown.output))
    assert served.rows == 8
    conv = served["conv_rate"]
    assert (conv.count, conv.null_count, conv.max) == (4, 4, 0.3)
    assert conv.mean == pytest.approx(0.15)
    assert served["city"].top_values == (("paris", 6), ("lyon", 2))
    assert served.start == END and served.end == END + timedelta(minutes=3)
