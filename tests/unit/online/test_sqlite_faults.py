"""SQLite stores (online store and registry) name the real cause of a storage fault, and keep what was stored.

A full disk is SQLite's own ``SQLITE_FULL``, made real by capping the database's pages
(``PRAGMA max_page_count``) on the store's connection; batches and definitions of several sizes
are then written. A folder that cannot hold the database is a path under a regular file, or a
database path that is a folder.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import provender as pv
from provender.errors import BackendError
from provender.online.keys import KeyEncoder
from provender.online.sqlite import SQLiteStore
from provender.online.store import ReadRequest
from provender.registry.sqlite import SQLiteRegistry
from tests.support.online import DRIVER, DRIVER_STATS, batch


def _cap_pages(connection: sqlite3.Connection) -> None:
    pages = connection.execute("PRAGMA page_count").fetchone()[0]
    connection.execute(f"PRAGMA max_page_count = {pages}")


def _read(store: SQLiteStore, ids: list[int]) -> list[object]:
    keys = KeyEncoder([("driver_id", DRIVER.value_type)]).encode_rows([{"driver_id": i} for i in ids])
    [rows] = store.read([ReadRequest(DRIVER_STATS, keys)])
    return [None if row is None else row.values[2] for row in rows]


@pytest.mark.parametrize("rows", [2_000, 20_000])
def test_a_full_disk_under_the_online_store_is_reported_as_such_and_loses_nothing(tmp_path: Path, rows: int) -> None:
    store = SQLiteStore(tmp_path / "online.db")
    try:
        store.write(DRIVER_STATS, batch(DRIVER_STATS, [{"driver_id": i, "trips": i} for i in range(10)]))
        _cap_pages(store._connection())
        bigger = batch(DRIVER_STATS, [{"driver_id": i, "trips": -i, "conv_rate": 0.5} for i in range(rows)])
        with pytest.raises(BackendError) as info:
            store.write(DRIVER_STATS, bigger)
        message = str(info.value)
        assert "full" in message and "rollback" not in message.lower(), message
        assert _read(store, list(range(10))) == list(range(10))  # the batch is all or nothing
        store._connection().execute("PRAGMA max_page_count = 1073741823")
        assert store.write(DRIVER_STATS, bigger) == rows  # and the store works once there is room
    finally:
        store.close()


@pytest.mark.parametrize("tables", [3, 40])
def test_a_full_disk_under_the_registry_is_reported_as_such_and_changes_nothing(tmp_path: Path, tables: int) -> None:
    with pv.Client(settings=pv.Settings(registry=f"sqlite:///{tmp_path}/registry.db", base_dir=tmp_path)) as client:
        client.apply([DRIVER, DRIVER_STATS])
        version = client.registry_version()
        registry = client._registry
        assert isinstance(registry, SQLiteRegistry)
        _cap_pages(registry._conn)
        many = [
            pv.FeatureTable(
                name=f"table_{i}",
                entities=["driver_id"],
                features=[
                    pv.Feature(f"f{j}_{'x' * 200}", pv.ValueType.DOUBLE, description="d" * 2000) for j in range(20)
                ],
                batch_source=DRIVER_STATS.batch_source,
            )
            for i in range(tables)
        ]
        with pytest.raises(BackendError) as info:
            client.apply(many)
        message = str(info.value)
        assert "full" in message and "rollback" not in message.lower(), message
        assert client.registry_version() == version
        assert [t.name for t in client.list_feature_tables()] == ["driver_stats"]


@pytest.mark.parametrize("kind", ["parent is a file", "database is a folder"])
def test_a_store_folder_that_cannot_hold_the_database_is_named(tmp_path: Path, kind: str) -> None:
    if kind == "parent is a file":
        (tmp_path / "state").write_text("x")
        path = tmp_path / "state" / "online.db"
    else:
        path = tmp_path / "online.db"
        path.mkdir()
    with pytest.raises(BackendError) as info:
        SQLiteStore(path)
    assert str(path.parent) in str(info.value), info.value
    with pytest.raises(BackendError, match="SQLite registry at"):
        SQLiteRegistry(path)
