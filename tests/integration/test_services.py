"""Smoke tests proving that each real-service fixture starts a working server."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.support.services import KafkaBroker, PostgresServer, RedisCluster, RedisServer, require_module

pytestmark = pytest.mark.service


def test_redis_set_get_and_outage(redis_server: RedisServer) -> None:
    """SET/GET works; stop() makes connections fail; start() brings the server back (empty)."""
    require_module("redis", "redis")
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    def client() -> redis.Redis:
        # No retries: redis-py 8 retries a failed connection 10 times with backoff by default.
        return redis.Redis.from_url(redis_server.url, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))

    with client() as r:
        assert r.set("provender:smoke", "42")
        assert r.get("provender:smoke") == b"42"

    pid = redis_server.pid
    redis_server.stop()
    try:
        assert not redis_server.running
        with client() as r, pytest.raises(redis.exceptions.ConnectionError):
            r.ping()
    finally:
        redis_server.start()

    assert redis_server.pid != pid
    with client() as r:
        assert r.ping()
        assert r.get("provender:smoke") is None  # --save '' and no AOF: a restart loses data


def test_redis_cluster_round_trip(redis_cluster: RedisCluster) -> None:
    """100 keys spread over 3 masters can be written and read back through RedisCluster."""
    require_module("redis", "redis")
    from redis.cluster import RedisCluster as Client

    host, port = redis_cluster.addresses[0]
    # Built from host and port: redis-py 8 leaves from_url()'s node connections open on close().
    with Client(host=host, port=port) as rc:
        masters = rc.get_primaries()
        assert len(masters) == 3
        assert {node.port for node in masters} == {port for _, port in redis_cluster.addresses}
        for i in range(100):
            rc.set(f"provender:{i}", i)
        assert [rc.get(f"provender:{i}") for i in range(100)] == [str(i).encode() for i in range(100)]
        per_node = [rc.dbsize(target_nodes=node) for node in masters]
        assert sum(per_node) >= 100
        assert all(count > 0 for count in per_node)


def test_postgres_create_insert_select(postgres_server: PostgresServer) -> None:
    """A table can be created, filled and queried in the provender_test database."""
    require_module("psycopg", "psycopg[binary]")
    import psycopg

    with psycopg.connect(postgres_server.dsn) as conn:
        conn.execute("create table smoke (id int primary key, name text not null)")
        with conn.cursor() as cur:
            cur.executemany("insert into smoke values (%s, %s)", [(1, "a"), (2, "b")])
        rows = conn.execute("select id, name from smoke order by id").fetchall()
        assert conn.execute("select current_database()").fetchone() == ("provender_test",)
        conn.execute("drop table smoke")
    assert rows == [(1, "a"), (2, "b")]


def test_kafka_topic_produce_consume_commit(kafka_broker: KafkaBroker) -> None:
    """A 4-partition topic takes 10 messages, which a consumer group reads back and commits."""
    require_module("confluent_kafka", "confluent-kafka")
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    bootstrap: dict[str, str | int | float | bool] = {"bootstrap.servers": kafka_broker.bootstrap_servers}
    topic, group = f"smoke-{uuid.uuid4().hex[:8]}", f"smoke-group-{uuid.uuid4().hex[:8]}"

    admin = AdminClient(bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])[topic].result(timeout=30)
    assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == 4

    producer = Producer({**bootstrap, "acks": "all"})
    for i in range(10):
        producer.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
    assert producer.flush(30) == 0

    consumer = Consumer({**bootstrap, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.subscribe([topic])
        values: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(values) < 10 and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            value = msg.value()
            assert msg.error() is None and value is not None, msg.error()
            values.append(value)
        consumer.commit(asynchronous=False)
        committed = consumer.committed([TopicPartition(topic, p) for p in range(4)], timeout=10)
    finally:
        consumer.close()

    assert sorted(values) == sorted(f"v{i}".encode() for i in range(10))
    assert sum(tp.offset for tp in committed if tp.offset >= 0) == 10
