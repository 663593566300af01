"""Historical retrieval on the DuckDB engine: its own settings (``offline:`` in ``provender.yaml``).

What every engine must do (the point-in-time rule, entity sources, results, types, CSV,
``field_mapping``, partition pruning, bad sources, ``read_latest``) is the engine contract,
``tests/contract/test_offline_engine*.py``, which runs on DuckDB and Spark alike.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import provender as pv
from provender.offline.duckdb import DuckDBEngine
from tests.support.builders import DRIVER, ENTITIES, make_client, write_table
from tests.support.retrieval import driver_rows, driver_stats, entity_frame


def test_memory_limit_from_provender_yaml(tmp_path: Path) -> None:
    table = write_table(driver_stats(), driver_rows(), entities=ENTITIES, root=tmp_path / "data")
    offline = {"engine": "duckdb", "memory_limit": "200MB"}
    with make_client(tmp_path / "project", offline=offline) as client:
        assert client.settings.offline.model_dump() == offline
        client.apply([DRIVER, table])
        result = client.get_historical_features(["driver_stats"], entity_frame()).to_arrow()
        assert result.num_rows == 5
        engine = DuckDBEngine.from_options(client.settings.offline.model_dump(), base_dir=client.settings.base_dir)
    try:
        memory, temp = (
            engine.cursor()
            .execute("SELECT current_setting('memory_limit'), current_setting('temp_directory')")
            .fetchall()[0]
        )
    finally:
        engine.close()
    assert memory.endswith("MiB") and 180 <= float(memory.split()[0]) <= 200
    assert Path(temp).is_relative_to(tmp_path / "project" / ".provender")


def test_an_unknown_offline_setting_is_named_when_the_client_starts(tmp_path: Path) -> None:
    with pytest.raises(pv.ConfigError, match=r"offline\.memory_limt.*memory_limit"):
        make_client(tmp_path / "project", offline={"engine": "duckdb", "memory_limt": "1GB"})
