"""The Redis online store against real servers: round trips, outages, expiry, auth, cluster slots."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

import provender as pv
from provender.online.keys import KeyEncoder
from provender.online.redis import RedisStore
from provender.online.store import ReadRequest
from tests.support.online import CUSTOMER, DRIVER, SOURCE, batch
from tests.support.registries import registry_url
from tests.support.services import (
    RedisCluster,
    RedisServer,
    Services,
    free_port,
    require_binary,
    require_module,
    run_checked,
)

if TYPE_CHECKING:
    from redis import Redis

pytestmark = pytest.mark.service
redis = require_module("redis", "redis")

STATS = pv.FeatureTable(
    name="driver_stats",
    entities=["driver_id"],
    features=[pv.Feature("trips", pv.ValueType.INT64), pv.Feature("rate", pv.ValueType.FLOAT)],
    batch_source=SOURCE,
    max_age=timedelta(seconds=30),
)
PAIRS = pv.FeatureTable(
    name="pairs",
    entities=["driver_id", "customer_id"],
    features=[pv.Feature("together", pv.ValueType.INT64)],
    batch_source=SOURCE,
)
FOREVER = pv.FeatureTable(
    name="forever", entities=["driver_id"], features=[pv.Feature("x", pv.ValueType.INT64)], batch_source=SOURCE
)
KEYS = KeyEncoder([("driver_id", pv.ValueType.INT64)])


def project() -> str:
    return f"t{time.monotonic_ns()}"


@pytest.fixture
def open_store(tmp_path: Path) -> Iterator[Callable[..., RedisStore]]:
    opened: list[RedisStore] = []

    def open_(url: str, **options: object) -> RedisStore:
        store = RedisStore.from_options({"url": url, **options}, base_dir=tmp_path, project=project())
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


# ----------------------------------------------------------------------------- one round trip


def command_stats(admin: Redis) -> dict[str, int]:
    stats = admin.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def test_a_read_of_several_tables_and_many_rows_is_one_round_trip(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("PROVENDER_"):
            monkeypatch.delenv(name)
    (tmp_path / "provender.yaml").write_text(
        yaml.safe_dump({"registry": registry_url(tmp_path), "online": {"store": "redis", "url": redis_server.url}})
    )
    now = datetime.now(UTC)
    with pv.Client(config=tmp_path / "provender.yaml", project=project()) as client:
        client.apply([DRIVER, CUSTOMER, STATS, PAIRS])
        client._online_store.write(
            STATS, batch(STATS, [{"driver_id": i, "trips": i, "event_timestamp": now} for i in range(5000)])
        )
        client._online_store.write(PAIRS, batch(PAIRS, [{"driver_id": 1, "customer_id": 2, "together": 3}]))
        rows = [{"driver_id": i % 6000, "customer_id": 2} for i in range(10_000)]
        refs = ["driver_stats", "pairs:together"]
        client.get_online_features(refs, rows[:1])  # connect, load the registry

        sends: list[int] = []
        original = redis.connection.AbstractConnection.send_packed_command

        def counting(self: object, command: object, check_health: bool = True) -> None:
            sends.append(1)
            original(self, command, check_health)

        with redis.Redis.from_url(redis_server.url) as admin:
            before = command_stats(admin)
            monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
            response = client.get_online_features(refs, rows)
            monkeypatch.undo()
            after = command_stats(admin)

    assert len(sends) == 1
    changed = {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}
    assert changed.pop("info") == 1  # the `before` probe itself
    assert set(changed) == {"mget"}  # nothing but MGET, split in chunks written back-to-back
    assert changed["mget"] == -(-20_000 // 2048)
    values = response.to_dict()
    assert values["driver_stats__trips"] == [i % 6000 if i % 6000 < 5000 else None for i in range(10_000)]
    assert values["pairs__together"] == [3 if i % 6000 == 1 else None for i in range(10_000)]


def test_freshness_rides_on_the_write_round_trip_and_is_read_with_one_hmget(
    redis_server: RedisServer, open_store: Callable[..., RedisStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(redis_server.url)
    tables = [pv.FeatureTable(name=f"t{i:04d}", entities=["driver_id"], features=STATS.features, batch_source=SOURCE)
              for i in range(1000)]  # fmt: skip
    store.write(STATS, batch(STATS, [{"driver_id": 0, "trips": 0}]))  # connect
    sends: list[int] = []
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self: object, command: object, check_health: bool = True) -> None:
        sends.append(1)
        original(self, command, check_health)

    now = datetime.now(UTC).replace(microsecond=0)
    with redis.Redis.from_url(redis_server.url) as admin:
        before = command_stats(admin)
        monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
        assert store.write(tables[7], batch(tables[7], [{"driver_id": i, "event_timestamp": now} for i in range(300)]))
        monkeypatch.undo()
        middle = command_stats(admin)
        found = store.freshness([t.name for t in tables])
        after = command_stats(admin)
    assert len(sends) == 1  # the rows' script calls and the freshness script: one round trip
    wrote = {name: middle[name] - before.get(name, 0) for name in middle if middle[name] != before.get(name, 0)}
    # 300 keys in 2 script calls (a GET and a SET per key), and the freshness call (HGET, 2 HSET)
    assert wrote == {"info": 1, "eval": 3, "get": 300, "set": 300, "hget": 1, "hset": 2}
    read = {name: after[name] - middle.get(name, 0) for name in after if after[name] != middle.get(name, 0)}
    assert read == {"info": 1, "hmget": 1}  # 1,000 tables' freshness: one command, no scan
    assert set(found) == {"t0007"} and found["t0007"].newest_event == now


# ----------------------------------------------------------------------------- outages


@pytest.fixture
def own_server(services: Services) -> RedisServer:
    """A server this test may stop and start without disturbing others."""
    return services.start_redis(f"redis-outage-{time.monotonic_ns()}")


def test_an_outage_is_a_retryable_backend_error_and_recovery_is_automatic(
    own_server: RedisServer, open_store: Callable[..., RedisStore]
) -> None:
    store = open_store(own_server.url, retries=0, connect_timeout_seconds=0.5)
    store.write(STATS, batch(STATS, [{"driver_id": 1, "trips": 1}]))
    own_server.stop()
    try:
        with pytest.raises(pv.BackendError, match=r"read failed: ConnectionError.*safe to retry") as read_error:
            store.read([ReadRequest(STATS, KEYS.encode_rows([{"driver_id": 1}]))])
        assert read_error.value.retryable
        assert re.search(rf"127\.0\.0\.1:{own_server.port}", str(read_error.value))
        with pytest.raises(pv.BackendError, match="write to feature table 'driver_stats' failed") as write_error:
            store.write(STATS, batch(STATS, [{"driver_id": 1, "trips": 2}]))
        assert write_error.value.retryable
        with pytest.raises(pv.BackendError):
            store.ping()
    finally:
        own_server.start()
    [[row]] = store.read([ReadRequest(STATS, KEYS.encode_rows([{"driver_id": 1}]))])
    assert row is None  # the restarted server is empty (no persistence), but the store works again
    assert store.write(STATS, batch(STATS, [{"driver_id": 1, "trips": 3}])) == 1


# ----------------------------------------------------------------------------- expiry


def test_rows_expire_max_age_after_their_event_time(
    redis_server: RedisServer, open_store: Callable[..., RedisStore]
) -> None:
    store = open_store(redis_server.url, key_ttl_from_max_age=True)
    assert store.capabilities.supports_key_expiry
    now = datetime.now(UTC)
    event = now.replace(microsecond=123_000)
    store.write(
        STATS,
        batch(
            STATS,
            [
                {"driver_id": 1, "trips": 1, "event_timestamp": event},
                {"driver_id": 2, "trips": 2, "event_timestamp": now - timedelta(minutes=5)},
            ],
        ),
    )
    store.write(FOREVER, batch(FOREVER, [{"driver_id": 1, "x": 1}]))
    with redis.Redis.from_url(redis_server.url) as admin:
        [key_1, key_2] = [store.key_of(STATS, key) for key in KEYS.encode_rows([{"driver_id": 1}, {"driver_id": 2}])]
        expected_ms = int(event.timestamp() * 1000) + 30_000
        assert admin.pexpiretime(key_1) == expected_ms
        assert not admin.exists(key_2)  # already past its max_age: gone at once
        assert admin.pttl(store.key_of(FOREVER, KEYS.encode_rows([{"driver_id": 1}])[0])) == -1
    rows = store.read([ReadRequest(STATS, KEYS.encode_rows([{"driver_id": 1}, {"driver_id": 2}]))])
    assert [None if r is None else r.values[0] for r in rows[0]] == [1, None]


def test_without_the_option_rows_never_expire(redis_server: RedisServer, open_store: Callable[..., RedisStore]) -> None:
    store = open_store(redis_server.url)
    assert not store.capabilities.supports_key_expiry
    old = datetime.now(UTC) - timedelta(days=9)
    store.write(STATS, batch(STATS, [{"driver_id": 1, "trips": 1, "event_timestamp": old}]))
    with redis.Redis.from_url(redis_server.url) as admin:
        assert admin.pttl(store.key_of(STATS, KEYS.encode_rows([{"driver_id": 1}])[0])) == -1


# ----------------------------------------------------------------------------- auth and config


def test_password_option_and_secrets_kept_out_of_messages(
    services: Services, open_store: Callable[..., RedisStore]
) -> None:
    server = services.start_redis(f"redis-auth-{time.monotonic_ns()}")
    with redis.Redis.from_url(server.url) as admin:  # set after start: the readiness probe sends no password
        admin.config_set("requirepass", "s3cret")
    good = open_store(server.url, password="s3cret")
    assert good.write(STATS, batch(STATS, [{"driver_id": 1, "trips": 1}])) == 1
    in_url = open_store(f"redis://:s3cret@127.0.0.1:{server.port}/0")
    in_url.ping()
    for bad in (
        open_store(server.url, password="wrong", retries=0),
        open_store(f"redis://:wrong@127.0.0.1:{server.port}/0", retries=0),
    ):
        with pytest.raises(pv.BackendError, match="authentication") as error:
            bad.ping()
        assert not error.value.retryable
        assert "wrong" not in str(error.value)


def make_certificates(directory: Path) -> None:
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl)."""
    openssl = require_binary("openssl", "openssl")
    run = [openssl, "req", "-nodes", "-newkey", "rsa:2048", "-subj"]
    run_checked(
        [*run, "/CN=test-ca", "-x509", "-days", "1", "-keyout", f"{directory}/ca.key", "-out", f"{directory}/ca.crt"],
        "openssl ca",
    )
    run_checked(
        [*run, "/CN=127.0.0.1", "-keyout", f"{directory}/server.key", "-out", f"{directory}/server.csr"], "openssl csr"
    )
    (directory / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run_checked(
        [
            openssl,
            "x509",
            "-req",
            "-in",
            f"{directory}/server.csr",
            "-CA",
            f"{directory}/ca.crt",
            "-CAkey",
            f"{directory}/ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            f"{directory}/server.crt",
            "-extfile",
            f"{directory}/ext.cnf",
        ],
        "openssl sign",
    )


def test_tls(services: Services, tmp_path: Path, open_store: Callable[..., RedisStore]) -> None:
    make_certificates(tmp_path)
    tls_port = free_port()
    services.start_redis(
        f"redis-tls-{time.monotonic_ns()}",
        [
            "--tls-port",
            str(tls_port),
            "--tls-cert-file",
            str(tmp_path / "server.crt"),
            "--tls-key-file",
            str(tmp_path / "server.key"),
            "--tls-ca-cert-file",
            str(tmp_path / "ca.crt"),
            "--tls-auth-clients",
            "no",
        ],
    )
    url = f"redis://127.0.0.1:{tls_port}/0"
    store = open_store(url, ssl=True, ssl_ca_certs="ca.crt")  # relative to the config file's directory
    assert store.write(STATS, batch(STATS, [{"driver_id": 1, "trips": 1}])) == 1
    open_store(f"rediss://127.0.0.1:{tls_port}/0", ssl_ca_certs=str(tmp_path / "ca.crt")).ping()
    with pytest.raises(pv.BackendError):
        open_store(url, retries=0, socket_timeout_seconds=1).ping()  # plain text to a TLS port
    with pytest.raises(pv.BackendError, match="certificate verify failed"):
        open_store(url, ssl=True, retries=0).ping()  # the server's CA is not trusted


def test_settings_from_the_environment(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("PROVENDER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PROVENDER_ONLINE__STORE", "redis")
    monkeypatch.setenv("PROVENDER_ONLINE__URL", redis_server.url)
    monkeypatch.setenv("PROVENDER_ONLINE__KEY_TTL_FROM_MAX_AGE", "true")
    monkeypatch.setenv("PROVENDER_REGISTRY", registry_url(tmp_path, f"sqlite:///{tmp_path / 'registry.db'}"))
    with pv.Client() as client:
        store = client._online_store
        assert isinstance(store, RedisStore)
        assert store.config.key_ttl_from_max_age is True
        assert store.config.url == redis_server.url


def test_a_misspelt_option_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(pv.ConfigError, match=r"online\.clustr.*Did you mean 'cluster'"):
        RedisStore.from_options({"url": "redis://127.0.0.1:1/0", "clustr": True}, base_dir=tmp_path)


# ----------------------------------------------------------------------------- cluster


def test_one_entitys_tables_share_a_cluster_slot(
    redis_cluster: RedisCluster, open_store: Callable[..., RedisStore]
) -> None:
    from redis.crc import key_slot

    store = open_store(redis_cluster.url, cluster=True)
    keys = KEYS.encode_rows([{"driver_id": i} for i in range(200)])
    strings = KeyEncoder([("user", pv.ValueType.STRING)]).encode_rows([{"user": "a}b{c"}, {"user": "{x}"}])
    for key in [*keys, *strings]:
        assert key_slot(store.key_of(STATS, key)) == key_slot(store.key_of(FOREVER, key))
    assert len({key_slot(store.key_of(STATS, key)) for key in keys}) > 150  # spread over slots
    store.write(STATS, batch(STATS, [{"driver_id": i, "trips": i} for i in range(200)]))
    store.write(FOREVER, batch(FOREVER, [{"driver_id": i, "x": -i} for i in range(200)]))
    stats, forever = store.read([ReadRequest(STATS, keys[:200]), ReadRequest(FOREVER, keys[:200])])
    assert [r.values[0] for r in stats if r] == list(range(200))
    assert [r.values[0] for r in forever if r] == [-i for i in range(200)]
    # Not RedisCluster.from_url: its node pools survive close() (redis-py 8) and leak sockets.
    host, port = redis_cluster.addresses[0]
    with redis.cluster.RedisCluster(host=host, port=port) as admin:
        nodes = admin.get_primaries()
        assert sum(1 for node in nodes if admin.dbsize(target_nodes=node) > 0) == 3
