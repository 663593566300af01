"""Stream ingestion against the real Kafka-protocol broker (noida-db), Redis and SQLite.

Avro (plain and wire format) and JSON topics, out-of-order events, dead letters, stream and
batch converging, the offline log in historical retrieval, and, with ``provender ingest-stream``
running as real processes: a ``kill -9`` and restart, and a rebalance between two processes.
Every produced record has its own driver id, so "nothing lost" means every id is in the store.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

import provender as pv
from provender.config import load_settings
from provender.ingestion.batch import JobStatus
from provender.online.read import FeatureStatus
from tests.support.registries import registry_url
from tests.support.services import KafkaBroker, RedisServer, free_port
from tests.unit.ingestion.test_stream_formats import Registry

pytestmark = [pytest.mark.service, pytest.mark.timeout(120)]

DRIVER = pv.Entity(name="driver_id", value_type=pv.ValueType.INT64)
NOW = datetime.now(UTC).replace(microsecond=0)
CONSOLE_SCRIPT = Path(sys.executable).parent / "provender"
AVRO_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Trip",
    "fields": [
        {"name": "driver", "type": "long"},
        {"name": "trips_today", "type": "long"},
        {"name": "rating", "type": ["null", "double"], "default": None},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "created", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}


# --------------------------------------------------------------------------- helpers


def make_topic(broker: KafkaBroker, partitions: int = 4) -> str:
    name = f"trips-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(10)
    return name


def trips_table(
    broker: KafkaBroker, topic: str, message_format: pv.AvroFormat | pv.JsonFormat, **extra: Any
) -> pv.FeatureTable:
    avro = isinstance(message_format, pv.AvroFormat)
    return pv.FeatureTable(
        name="trips",
        entities=["driver_id"],
        features=[pv.Feature("trips_today", pv.ValueType.INT64), pv.Feature("rating", pv.ValueType.DOUBLE)],
        stream_source=pv.KafkaSource(
            bootstrap_servers=broker.bootstrap_servers,
            topic=topic,
            message_format=message_format,
            event_timestamp_column="ts",
            created_timestamp_column="created" if avro else None,
            field_mapping={"driver": "driver_id"},
        ),
        **extra,
    )


def project(tmp_path: Path, online: dict[str, Any], **stream: Any) -> Path:
    """A project directory with a provender.yaml: its own project name, the given online store."""
    directory = tmp_path / "project"
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "project": f"p{uuid.uuid4().hex[:8]}",
        "registry": registry_url(directory, "sqlite:///.provender/registry.db"),
        "online": online,
        "stream": {"linger_ms": 10, **stream},
    }
    (directory / "provender.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return directory


def open_client(directory: Path) -> pv.Client:
    return pv.Client(settings=load_settings(directory / "provender.yaml", environ={}))


def redis_online(server: RedisServer) -> dict[str, Any]:
    return {"store": "redis", "url": server.url}


SQLITE_ONLINE = {"store": "sqlite", "path": ".provender/online.db"}


def avro_bytes(record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, PARSED_AVRO, record)
    return out.getvalue()


PARSED_AVRO = fastavro.parse_schema(AVRO_SCHEMA, named_schemas={})


def json_bytes(driver: int, trips: int, at: datetime) -> bytes:
    return json.dumps({"driver": driver, "trips_today": trips, "rating": trips / 2, "ts": at.isoformat()}).encode()


def produce(broker: KafkaBroker, topic: str, values: list[bytes], partition: int | None = None) -> None:
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "linger.ms": 5})
    for value in values:
        if partition is None:
            producer.produce(topic, value)
        else:
            producer.produce(topic, value, partition=partition)
        producer.poll(0)
    assert producer.flush(30) == 0


def online(client: pv.Client, ids: range | list[int]) -> dict[str, list[Any]]:
    return client.get_online_features(["trips"], [{"driver_id": i} for i in ids]).to_dict()


def present(client: pv.Client, ids: range) -> int:
    statuses = client.get_online_features(["trips:trips_today"], [{"driver_id": i} for i in ids]).statuses()
    return statuses["trips__trips_today"].count(FeatureStatus.PRESENT)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


# --------------------------------------------------------------------------- in-process jobs


def test_avro_topic_lands_in_redis_with_the_newest_value_per_key(
    kafka_broker: KafkaBroker, redis_server: RedisServer, tmp_path: Path
) -> None:
    topic = make_topic(kafka_broker)
    table = trips_table(kafka_broker, topic, pv.AvroFormat(json.dumps(AVRO_SCHEMA)))
    records = [
        {
            "driver": i % 500,
            "trips_today": i,
            "rating": None if i % 7 == 0 else i / 4,
            "ts": NOW - timedelta(minutes=3000 - i // 500),
            "created": NOW,
        }
        for i in range(3000)
    ]
    produce(kafka_broker, topic, [avro_bytes(r) for r in records])
    with open_client(project(tmp_path, redis_online(redis_server))) as client:
        client.apply([DRIVER, table])
        job = client.start_stream_to_online_ingestion("trips")
        assert job.wait_until(lambda j: j.records_consumed >= 3000, 60), job
        job.stop()
        assert job.status is JobStatus.SUCCEEDED
        assert (job.records_written, job.records_dead_lettered) == (3000, 0)
        got = online(client, range(500))
    newest = {r["driver"]: r for r in records[-500:]}
    assert got["trips__trips_today"] == [newest[i]["trips_today"] for i in range(500)]
    assert got["trips__rating"] == [newest[i]["rating"] for i in range(500)]


def test_wire_format_avro_through_a_schema_registry(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    registry = Registry({42: AVRO_SCHEMA})
    try:
        topic = make_topic(kafka_broker)
        table = trips_table(kafka_broker, topic, pv.AvroFormat(json.dumps(AVRO_SCHEMA)))
        record = {"driver": 1, "trips_today": 9, "rating": 4.5, "ts": NOW, "created": NOW}
        produce(kafka_broker, topic, [b"\x00" + (42).to_bytes(4, "big") + avro_bytes(record), avro_bytes(record)])
        with open_client(project(tmp_path, SQLITE_ONLINE, schema_registry_url=registry.url)) as client:
            client.apply([DRIVER, table])
            job = client.start_stream_to_online_ingestion("trips")
            assert job.wait_until(lambda j: j.records_consumed >= 2, 60), job
            job.stop()
            assert online(client, [1])["trips__trips_today"] == [9]
        assert job.dead_letters_by_reason == {"undecodable": 1}  # the plain record has no wire header
        assert registry.requests == 1
    finally:
        registry.close()


def test_json_topic_and_out_of_order_events_never_move_a_value_back(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    topic = make_topic(kafka_broker)
    table = trips_table(kafka_broker, topic, pv.JsonFormat())
    with open_client(project(tmp_path, SQLITE_ONLINE)) as client:
        client.apply([DRIVER, table])
        job = client.start_stream_to_online_ingestion("trips", batch_rows=1)
        produce(kafka_broker, topic, [json_bytes(d, 10, NOW) for d in range(20)], partition=0)
        assert job.wait_until(lambda j: j.records_written >= 20, 60), job
        # Older events for the same drivers, later and on other partitions: they must not win.
        produce(kafka_broker, topic, [json_bytes(d, 5, NOW - timedelta(minutes=5)) for d in range(20)], partition=1)
        produce(kafka_broker, topic, [json_bytes(d, 20, NOW + timedelta(minutes=5)) for d in range(10)], partition=2)
        assert job.wait_until(lambda j: j.records_written >= 50, 60), job
        job.stop()
        got = online(client, range(20))
    assert got["trips__trips_today"] == [20] * 10 + [10] * 10
    assert got["trips__rating"] == [10.0] * 10 + [5.0] * 10


def test_dead_letters_carry_their_reason_and_origin_and_do_not_block(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    topic = make_topic(kafka_broker, partitions=1)
    table = trips_table(kafka_broker, topic, pv.JsonFormat())
    bad = [
        b"\x00\x01 not json",
        b'{"trips_today": 1, "ts": "2026-01-01T00:00:00"}',
        b'{"driver": 2, "trips_today": "two", "ts": "2026-01-01T00:00:00"}',
        b'{"driver": 3, "trips_today": 3, "ts": "the day after tomorrow"}',
    ]
    produce(kafka_broker, topic, [json_bytes(1, 1, NOW), *bad, json_bytes(4, 4, NOW)])
    with open_client(project(tmp_path, SQLITE_ONLINE)) as client:
        client.apply([DRIVER, table])
        job = client.start_stream_to_online_ingestion("trips")
        assert job.wait_until(lambda j: j.records_consumed >= 6, 60), job
        job.stop()
        assert online(client, [1, 4])["trips__trips_today"] == [1, 4]
    assert job.records_dead_lettered == 4
    letters = consume_all(kafka_broker, f"{topic}.dlq", 4)
    headers = [dict(m.headers() or []) for m in letters]
    assert [h["provender.reason"] for h in headers] == [
        b"undecodable",
        b"missing_entity_key",
        b"wrong_type",
        b"bad_timestamp",
    ]
    assert [h["provender.offset"] for h in headers] == [b"1", b"2", b"3", b"4"]
    assert {h["provender.partition"] for h in headers} == {b"0"}
    assert {h["provender.topic"] for h in headers} == {topic.encode()}
    assert b"'trips_today'" in headers[2]["provender.error"]
    assert [m.value() for m in letters] == bad


def consume_all(broker: KafkaBroker, topic: str, count: int) -> list[Any]:
    consumer = Consumer(
        {"bootstrap.servers": broker.bootstrap_servers, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    messages: list[Any] = []
    deadline = time.monotonic() + 30
    try:
        while len(messages) < count and time.monotonic() < deadline:
            messages.extend(m for m in consumer.consume(count, 0.5) if m.error() is None)
    finally:
        consumer.close()
    return sorted(messages, key=lambda m: m.offset())


def test_stream_and_batch_ingestion_converge_to_the_newer_value(
    kafka_broker: KafkaBroker, redis_server: RedisServer, tmp_path: Path
) -> None:
    topic = make_topic(kafka_broker)
    source_dir = tmp_path / "batch"
    source_dir.mkdir()
    older, newer = NOW - timedelta(hours=2), NOW - timedelta(hours=1)
    # Drivers 1 and 3: the batch row is newer. Drivers 2 and 4: the stream record is newer.
    batch_at = {1: newer, 2: older, 3: newer, 4: older}
    stream_at = {1: older, 2: newer, 3: older, 4: newer}
    pq.write_table(
        pa.table(
            {
                "driver": pa.array([1, 2, 3, 4], pa.int64()),
                "trips_today": pa.array([100, 200, 300, 400], pa.int64()),
                "rating": [1.0, 2.0, 3.0, 4.0],
                "ts": pa.array([batch_at[d] for d in (1, 2, 3, 4)], pa.timestamp("us", tz="UTC")),
            }
        ),
        source_dir / "part-0.parquet",
    )
    table = trips_table(
        kafka_broker,
        topic,
        pv.JsonFormat(),
        batch_source=pv.FileSource(
            path=str(source_dir), event_timestamp_column="ts", field_mapping={"driver": "driver_id"}
        ),
    )
    with open_client(project(tmp_path, redis_online(redis_server))) as client:
        client.apply([DRIVER, table])
        job = client.start_stream_to_online_ingestion("trips")
        # Drivers 1, 2: the stream first, then the batch job. Drivers 3, 4: the other way round.
        produce(kafka_broker, topic, [json_bytes(d, d, stream_at[d]) for d in (1, 2)])
        assert job.wait_until(lambda j: j.records_written >= 2, 60), job
        client.start_offline_to_online_ingestion("trips", start=NOW - timedelta(days=1), end=NOW).wait(60)
        produce(kafka_broker, topic, [json_bytes(d, d, stream_at[d]) for d in (3, 4)])
        assert job.wait_until(lambda j: j.records_written >= 4, 60), job
        job.stop()
        got = online(client, [1, 2, 3, 4])
    assert got["trips__trips_today"] == [100, 2, 300, 4]


def test_offline_log_makes_stream_features_retrievable_historically(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    topic = make_topic(kafka_broker)
    day = datetime(2026, 3, 1, tzinfo=UTC)
    events = [(d, h, d * 100 + h) for d in (1, 2) for h in (6, 18, 30)]  # 30 h: the next day's partition
    produce(kafka_broker, topic, [json_bytes(d, value, day + timedelta(hours=h)) for d, h, value in events])
    log_dir = tmp_path / "offline_log"
    stream_only = trips_table(kafka_broker, topic, pv.JsonFormat())
    with open_client(project(tmp_path, SQLITE_ONLINE)) as client:
        client.apply([DRIVER, stream_only])
        job = client.start_stream_to_online_ingestion("trips", offline_log=log_dir)
        assert job.wait_until(lambda j: j.records_written >= 6, 60), job
        job.stop()
        assert sorted(p.name for p in log_dir.iterdir()) == ["date=2026-03-01", "date=2026-03-02"]
        logged = trips_table(
            kafka_broker,
            topic,
            pv.JsonFormat(),
            batch_source=pv.FileSource(
                path=str(log_dir),
                event_timestamp_column="event_timestamp",
                created_timestamp_column="created_timestamp",
                date_partition_column="date",
            ),
        )
        client.apply([logged])
        entity_rows = pa.table(
            {
                "driver_id": [1, 1, 2, 2, 2],
                "event_timestamp": pa.array(
                    [day + timedelta(hours=h) for h in (5, 20, 7, 29, 31)], pa.timestamp("us", tz="UTC")
                ),
            }
        )
        training = client.get_historical_features(["trips:trips_today"], entity_rows).to_arrow()
    assert training.column("trips__trips_today").to_pylist() == [None, 118, 206, 218, 230]


# --------------------------------------------------------------------------- real processes


class Ingester:
    """``provender ingest-stream`` running as a separate process."""

    def __init__(self, directory: Path, group: str, *extra: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROVENDER_")}
        self.log = directory / f"ingest-{uuid.uuid4().hex[:6]}.log"
        argv = [str(CONSOLE_SCRIPT), "--config", str(directory / "provender.yaml"), "ingest-stream", "--table", "trips"]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*argv, "--group", group, "--status-interval", "0.5", *extra],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def written(self) -> int:
        """Records written, from the summary line printed at a clean stop."""
        found = re.search(r"Stopped trips: ([\d,]+) records written", self.output())
        assert found, self.output()
        return int(found.group(1).replace(",", ""))

    def progress(self) -> int:
        """Records written so far, from the last status line."""
        found = re.findall(r"\| written ([\d,]+) \|", self.output())
        return int(found[-1].replace(",", "")) if found else 0

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(30) == 0, self.output()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def ingesters() -> Iterator[list[Ingester]]:
    started: list[Ingester] = []
    yield started
    for ingester in started:
        if ingester.proc.poll() is None:
            ingester.kill()


class SteadyProducer(threading.Thread):
    """Publishes one JSON record per driver id, ``rate`` records a second, in the background."""

    def __init__(
        self, broker: KafkaBroker, topic: str, count: int, rate: float, holds: dict[int, threading.Event] | None = None
    ) -> None:
        super().__init__(daemon=True)
        self.broker, self.topic, self.count, self.rate = broker, topic, count, rate
        self.holds = holds or {}  # before record i, wait until holds[i] is set (the test's steps, not the clock)
        self.sent = 0

    def run(self) -> None:
        producer = Producer({"bootstrap.servers": self.broker.bootstrap_servers, "linger.ms": 5})
        started = time.monotonic()
        for i in range(self.count):
            if i in self.holds:
                producer.flush(30)
                waited = time.monotonic()
                self.holds[i].wait(180)
                started += time.monotonic() - waited
            producer.produce(self.topic, json_bytes(i, i * 3, NOW))
            self.sent = i + 1
            if i % 100 == 99:
                producer.poll(0)
                time.sleep(max(0.0, started + (i + 1) / self.rate - time.monotonic()))
        assert producer.flush(30) == 0


def expect_all(client: pv.Client, count: int, timeout: float) -> None:
    wait_for(lambda: present(client, range(count)) == count, timeout, f"all {count} records in the store")
    assert online(client, range(count))["trips__trips_today"] == [i * 3 for i in range(count)]


def test_kill_9_mid_stream_and_restart_loses_nothing(
    kafka_broker: KafkaBroker, redis_server: RedisServer, tmp_path: Path, ingesters: list[Ingester]
) -> None:
    count = 20_000
    topic = make_topic(kafka_broker)
    directory = project(tmp_path, redis_online(redis_server))
    with open_client(directory) as client:
        client.apply([DRIVER, trips_table(kafka_broker, topic, pv.JsonFormat())])
        ingesters.append(first := Ingester(directory, "crashy", "--instance-id", "ingester-0"))
        wait_for(lambda: "lag p" in first.output(), 90, "the first process to join the group")
        producer = SteadyProducer(kafka_broker, topic, count, rate=2000)
        producer.start()
        wait_for(lambda: present(client, range(count)) >= 2000, 60, "the first process to write 2,000 records")
        first.kill()
        assert producer.sent < count, "the kill should come mid-stream"
        at_kill = present(client, range(count))
        assert at_kill < count
        ingesters.append(second := Ingester(directory, "crashy", "--instance-id", "ingester-0"))
        producer.join(30)
        expect_all(client, count, timeout=60)
        second.terminate()
    assert second.written() >= count - at_kill


def test_a_rebalance_between_two_processes_loses_nothing(
    kafka_broker: KafkaBroker, redis_server: RedisServer, tmp_path: Path, ingesters: list[Ingester]
) -> None:
    count = 30_000
    topic = make_topic(kafka_broker)
    directory = project(tmp_path, redis_online(redis_server))
    with open_client(directory) as client:
        client.apply([DRIVER, trips_table(kafka_broker, topic, pv.JsonFormat())])
        ingesters.append(first := Ingester(directory, "shared"))
        wait_for(lambda: "lag p" in first.output(), 90, "the first process to join the group")
        # The producer pauses at the test's steps, so the rebalances come mid-stream however slowly
        # the processes start on a loaded machine: the second joins while 10,000 records wait, and
        # the first leaves while 10,000 more are still to come.
        second_joined, first_left = threading.Event(), threading.Event()
        producer = SteadyProducer(
            kafka_broker, topic, count, rate=2000, holds={10_000: second_joined, 20_000: first_left}
        )
        producer.start()
        wait_for(lambda: present(client, range(count)) >= 1000, 60, "the first process to write")
        metrics_port = free_port()
        ingesters.append(second := Ingester(directory, "shared", "--metrics-port", str(metrics_port)))  # 1 -> 2
        wait_for(lambda: "lag p" in second.output(), 90, "the second process to get partitions")
        second_joined.set()
        wait_for(lambda: second.progress() > 0, 60, "the second process to write")
        wanted = [
            r'provender_stream_records_written_total\{table="trips"\} [1-9]',
            r'provender_stream_lag_records\{partition="\d",table="trips",topic=',  # set once a second
            r'provender_stream_freshness_seconds_bucket\{le="0.1",table="trips"\}',
        ]

        def exposed() -> bool:
            text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
            return all(re.search(pattern, text) for pattern in wanted)

        wait_for(exposed, 10, "the second process's metrics")
        first.terminate()  # 2 -> 1: the second takes every partition
        assert producer.sent < count, "the rebalance should come mid-stream"
        first_left.set()
        producer.join(60)
        expect_all(client, count, timeout=60)
        second.terminate()
    assert first.written() > 0 and second.written() > 0, (first.output(), second.output())
    assert first.written() + second.written() >= count


def test_a_stream_job_is_recorded_and_can_be_cancelled_through_its_record(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    from provender.registry.jobs import JobKind, JobStatus

    topic = make_topic(kafka_broker)
    table = trips_table(kafka_broker, topic, pv.JsonFormat())
    with open_client(project(tmp_path, SQLITE_ONLINE, linger_ms=10)) as client:
        client.apply([DRIVER, table])
        job = client.start_stream_to_online_ingestion("trips", batch_rows=1)
        produce(kafka_broker, topic, [json_bytes(d, 10, NOW) for d in range(5)], partition=0)
        assert job.wait_until(lambda j: j.records_written >= 5, 60), job
        [recorded] = client.list_jobs("trips")
        assert (recorded.record.kind, recorded.status) == (JobKind.STREAM_TO_ONLINE, JobStatus.RUNNING)
        wait_for(lambda: client.get_job(recorded.id).rows_written == 5, 30, "the heartbeat records progress")
        recorded.cancel()  # as another process would: through the record
        assert job.wait_done(60)
        wait_for(lambda: client.get_job(recorded.id).status is JobStatus.CANCELLED, 30, "the job ends CANCELLED")
        assert client.list_jobs() == []
