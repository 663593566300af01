"""Windowed aggregations on Spark against the brute-force oracle (the DuckDB test's cases, fewer)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from tests.unit.offline.test_duckdb_windows import (
    check_against_oracle,
    check_float_sketch,
    entity_strategy,
    events_strategy,
)

pytestmark = [pytest.mark.service, pytest.mark.slow]


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(raw_events=events_strategy, raw_rows=entity_strategy)
def test_spark_windows_agree_with_oracle(
    raw_events: list[tuple[int, int, float | None, str | None]],
    raw_rows: list[tuple[int, int]],
    spark_engine: object,
    spark_options: dict[str, object],
) -> None:
    check_against_oracle(raw_events, raw_rows, offline=dict(spark_options))


def test_spark_hashes_doubles_like_duckdb_and_the_tiles(
    tmp_path: Path, spark_engine: object, spark_options: dict[str, object]
) -> None:
    check_float_sketch(tmp_path, offline=dict(spark_options))
