"""The Redis store's event-loop reads (``read_async``) against real servers: failures, auth, databases."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import provender as pv
from provender.online.keys import KeyEncoder
from provender.online.redis import RedisStore
from provender.online.store import ReadRequest
from tests.support.online import SOURCE, batch
from tests.support.services import RedisServer, Services, require_module

pytestmark = pytest.mark.service
redis = require_module("redis", "redis")

STATS = pv.FeatureTable(
    name="driver_stats",
    entities=["driver_id"],
    features=[pv.Feature("trips", pv.ValueType.INT64)],
    batch_source=SOURCE,
)
KEYS = KeyEncoder([("driver_id", pv.ValueType.INT64)])


def request(*ids: int) -> list[ReadRequest]:
    return [ReadRequest(STATS, KEYS.encode_rows([{"driver_id": i} for i in ids]))]


def trips(store: RedisStore, *ids: int) -> list[object]:
    """Read on a fresh event loop, closing the loop's connection before it ends."""

    async def read() -> list[object]:
        try:
            [rows] = await store.read_async(request(*ids))
        finally:
            store.close()
        return [None if row is None else row.values[0] for row in rows]

    return asyncio.run(read())


@pytest.fixture
def open_store(tmp_path: Path) -> Iterator[Callable[..., RedisStore]]:
    opened: list[RedisStore] = []

    def open_(url: str, project: str | None = None, **options: object) -> RedisStore:
        project = project or f"a{time.monotonic_ns()}"
        store = RedisStore.from_options({"url": url, **options}, base_dir=tmp_path, project=project)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def own_server(services: Services) -> RedisServer:
    """A server this test may stop, start and pause without disturbing others."""
    return services.start_redis(f"redis-async-{time.monotonic_ns()}")


def test_an_outage_fails_the_reads_in_flight_retryably_and_the_next_read_reconnects(
    own_server: RedisServer, open_store: Callable[..., RedisStore]
) -> None:
    store = open_store(own_server.url, connect_timeout_seconds=0.5)
    store.write(STATS, batch(STATS, [{"driver_id": 1, "trips": 1}]))

    async def scenario() -> None:
        try:
            [[row]] = await store.read_async(request(1))
            assert row is not None and row.values[0] == 1
            own_server.stop()
            try:
                for _ in range(2):  # the connection is gone, then connecting is refused
                    with pytest.raises(pv.BackendError, match=r"read failed: ConnectionError.*safe to retry") as error:
                        await store.read_async(request(1))
                    assert error.value.retryable
                    assert f"127.0.0.1:{own_server.port}" in str(error.value)
            finally:
                own_server.start()
            [[row]] = await store.read_async(request(1))
            assert row is None  # the restarted server is empty (no persistence), but reads work again
        finally:
            store.close()

    asyncio.run(scenario())


def test_a_server_that_stops_answering_times_out_retryably(
    own_server: RedisServer, open_store: Callable[..., RedisStore]
) -> None:
    store = open_store(own_server.url, socket_timeout_seconds=0.3)
    assert trips(store, 1) == [None]  # connected and answering
    with redis.Redis.from_url(own_server.url) as admin:
        admin.execute_command("CLIENT", "PAUSE", "1500", "ALL")

        async def paused() -> None:
            started = time.monotonic()
            try:
                with pytest.raises(pv.BackendError, match=r"TimeoutError: Redis did not answer within 0.3 s") as error:
                    await asyncio.gather(*(store.read_async(request(i)) for i in range(3)))
            finally:
                store.close()
            assert error.value.retryable
            assert time.monotonic() - started < 1.4  # the timeout, not the pause, ended the wait

        asyncio.run(paused())
        admin.execute_command("CLIENT", "UNPAUSE")
    assert trips(store, 1) == [None]


def test_password_and_database_are_sent_on_connect(services: Services, open_store: Callable[..., RedisStore]) -> None:
    server = services.start_redis(f"redis-async-auth-{time.monotonic_ns()}")
    with redis.Redis.from_url(server.url) as admin:
        admin.config_set("requirepass", "s3cret")
    in_db_3 = open_store(f"redis://:s3cret@127.0.0.1:{server.port}/3", project="p")
    in_db_3.write(STATS, batch(STATS, [{"driver_id": 7, "trips": 70}]))
    assert trips(in_db_3, 7, 8) == [70, None]
    with_option = open_store(f"redis://127.0.0.1:{server.port}/3", project="p", password="s3cret")
    assert trips(with_option, 7) == [70]
    other_db = open_store(f"redis://127.0.0.1:{server.port}/0", project="p", password="s3cret")
    assert trips(other_db, 7) == [None]
    wrong = open_store(server.url, password="wrong")
    with pytest.raises(pv.BackendError, match="authentication") as error:
        trips(wrong, 7)
    assert not error.value.retryable
    assert "wrong" not in str(error.value)


def test_tls_and_cluster_stores_read_on_threads_only(tmp_path: Path) -> None:
    for options in ({"url": "rediss://127.0.0.1:1/0"}, {"url": "redis://127.0.0.1:1/0", "ssl": True}):
        store = RedisStore.from_options(options, base_dir=tmp_path)
        assert not store.capabilities.async_reads

        async def refused(store: RedisStore = store) -> None:
            with pytest.raises(TypeError, match="cannot read asynchronously"):
                await store.read_async(request(1))

        asyncio.run(refused())
        store.close()
    assert RedisStore.from_options({"url": "redis://127.0.0.1:1/0"}, base_dir=tmp_path).capabilities.async_reads
