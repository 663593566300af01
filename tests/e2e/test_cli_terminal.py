"""The command line in a real terminal: output that only exists when stderr is a tty (progress lines).

Each test runs the installed console script under a pseudo-terminal in a project written by
``provender init``, as a user following the README would.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.terminal import init_project, run_in_terminal


@pytest.fixture(scope="module")
def generated_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ``init`` project with its sample data generated and its definitions applied."""
    return init_project(tmp_path_factory.mktemp("terminal") / "driver_project")


def test_ingest_in_a_terminal_draws_progress_without_a_traceback(generated_project: Path) -> None:
    result = run_in_terminal("ingest", "--table", "driver_statistics", "--start", "2020-01-01", cwd=generated_project)
    assert result.returncode == 0, result.output
    assert "Traceback" not in result.output
    assert "Error" not in result.output
    assert "ingesting driver_statistics:" in result.output  # the progress line was drawn
    assert "\r\x1b[K" in result.output  # ...and cleared before the summary
    # the summary says what was written from what: one latest row per key, of the 1,680 source rows
    assert "Ingested driver_statistics: 10 entity keys written (the latest of 1,680 source rows with" in result.output
    assert re.search(r"UTC, [\d,]+ source rows/s\) in [\d.]+ s\.", result.output), result.output


def test_retrieve_in_a_terminal_draws_progress_without_a_traceback(generated_project: Path) -> None:
    import pandas as pd

    pd.DataFrame(
        {"driver_id": [1001, 1002], "event_timestamp": pd.to_datetime(["2020-01-01", "2020-01-02"], utc=True)}
    ).to_parquet(generated_project / "rows.parquet")
    result = run_in_terminal(
        "retrieve",
        "-f",
        "driver_statistics:conv_rate",
        "--entities",
        "rows.parquet",
        "--out",
        "training.parquet",
        cwd=generated_project,
    )
    assert result.returncode == 0, result.output
    assert "Traceback" not in result.output
    assert "retrieving" in result.output
    assert "Wrote 2 rows" in result.output
