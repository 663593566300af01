"""The UI's freshness of online values over a real Redis server that goes down and comes back."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from provender.online.redis import RedisStore
from provender.registry.sqlite import SQLiteRegistry
from provender.registry.store import RegistryChange
from provender.ui.data import UiData
from tests.support.online import DRIVER, DRIVER_STATS, batch
from tests.support.services import Services

pytestmark = pytest.mark.service


def test_an_unreachable_store_is_reported_and_not_asked_again_until_the_retry_time(
    services: Services, tmp_path: Path
) -> None:
    server = services.start_redis(f"redis-ui-{time.monotonic_ns()}")
    options = {"store": "redis", "url": server.url, "retries": 0, "connect_timeout_seconds": 0.5}
    registry = SQLiteRegistry.from_url(f"sqlite:///{tmp_path / 'r.db'}", base_dir=tmp_path)
    registry.update("fleet", lambda _s: RegistryChange(put=(DRIVER, DRIVER_STATS)), actor="alice")
    writer = RedisStore.from_options(options, base_dir=tmp_path, project="fleet")
    writer.write(DRIVER_STATS, batch(DRIVER_STATS, [{"driver_id": 1, "trips": 1}]))
    opened: list[RedisStore] = []

    def open_online(project: str) -> RedisStore:
        opened.append(RedisStore.from_options(options, base_dir=tmp_path, project=project))
        return opened[-1]

    data = UiData(registry, open_online=open_online, online_retry_seconds=1.0)
    try:
        assert set(data.online_freshness("fleet", ["driver_stats"]).tables) == {"driver_stats"}
        server.stop()
        down = data.online_freshness("fleet", ["driver_stats"])
        assert down.problem.startswith("cannot read the online store: Redis online store") and not down.tables
        assert "tried again after 1 s" in down.problem
        server.start()  # back (empty: it keeps nothing on disk), with a value written again
        writer.write(DRIVER_STATS, batch(DRIVER_STATS, [{"driver_id": 1, "trips": 2}]))
        assert data.online_freshness("fleet", ["driver_stats"]) == down  # within the retry time: not asked
        time.sleep(1.1)
        assert set(data.online_freshness("fleet", ["driver_stats"]).tables) == {"driver_stats"}
        assert len(opened) == 1  # one store per project, reused across the outage
    finally:
        data.close()
        writer.close()
        registry.close()
        server.stop()
