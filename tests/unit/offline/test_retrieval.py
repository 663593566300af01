"""Historical retrieval on the DuckDB engine: its own settings (``offline:`` in ``provender.yaml``).

What every engine must do (the point-in-time rule, entity sources, results, types, CSV,
``field_mapping``, partition pruning, bad sources, ``read_latest``) is the engine contract,
``tests/contract/test_offline_engine*.py``, which runs on DuckDB and Spark alike.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import provender as pv
from provender.offline.duckdb import DuckDBEngine
from tests.support import pit_oracle
from tests.support.builders import DRIVER, ENTITIES, make_client, write_table
from tests.support.retrieval import DAY0, driver_rows, driver_stats, entity_frame


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


# Integer keys are matched narrowed to the entity rows' range (DuckDBEngine, compile_retrieval):
# spans that fit 8, 16 and 32 bits, one that does not, negative keys, source rows outside the
# range, a null key, and created-time ties, each checked against the oracle.
_WIDE = 1 << 40


@pytest.mark.parametrize(
    "keys",
    [
        pytest.param([1, 3], id="8-bit span"),
        pytest.param([-5, 70_000], id="negative, 32-bit span"),
        pytest.param([-(2**62), 2**62], id="64-bit span, not narrowed"),
        pytest.param([_WIDE, _WIDE + 300], id="16-bit span far from zero"),
    ],
)
@pytest.mark.parametrize("entity_as", ["arrow", "parquet"])
def test_integer_keys_match_on_any_range(tmp_path: Path, keys: list[int], entity_as: str) -> None:
    low, high = keys
    day = DAY0
    rows = [
        {
            "driver_id": key,
            "trips": n * 10 + i,
            "rate": n * 0.5,
            "event_ts": day + n * timedelta(hours=6),
            "created": day + n * timedelta(hours=6),
        }
        for i, key in enumerate([low - 1, low, high, high + 1, (low + high) // 2])
        for n in range(6)
    ]
    # A created-time tie at the event the entity rows ask for: the later created row wins.
    rows.append(
        {
            "driver_id": high,
            "trips": -7,
            "rate": 9.0,
            "event_ts": day + timedelta(hours=6),
            "created": day + timedelta(hours=7),
        }
    )
    table = write_table(driver_stats(), rows, entities=ENTITIES, root=tmp_path / "data")
    asked: list[dict[str, object]] = [
        {"driver_id": low, "event_timestamp": day + timedelta(hours=13)},
        {"driver_id": high, "event_timestamp": day + timedelta(hours=6)},
        {"driver_id": high, "event_timestamp": day - timedelta(hours=1)},
        {"driver_id": (low + high) // 2, "event_timestamp": day + timedelta(hours=31)},
        {"driver_id": None, "event_timestamp": day + timedelta(hours=13)},
    ]
    entity = pa.Table.from_pylist(
        asked, schema=pa.schema([("driver_id", pa.int64()), ("event_timestamp", pa.timestamp("us", tz="UTC"))])
    )
    source: object = entity
    if entity_as == "parquet":
        pq.write_table(entity, tmp_path / "entity.parquet")
        source = str(tmp_path / "entity.parquet")
    with make_client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        result = client.get_historical_features(["driver_stats"], source).to_arrow()
    expected = pit_oracle.retrieve(asked, [pit_oracle.SourceData(table, rows)], ["driver_stats"])
    pit_oracle.assert_matches(result, expected)
    assert result.column("driver_stats__trips").to_pylist() == [21, -7, None, 54, None]
