"""Benchmark: stream ingestion from Kafka (noida-db) into Redis (issue 6, "Performance").

Starts its own noida-db broker and redis-server on free loopback ports and stops them at the end.
A producer process publishes Avro records (schemaless binary, 5 features, about 40 bytes) for
``DRIVERS`` drivers to a 4-partition topic. Then:

(a) **Throughput.** ``BULK_RECORDS`` records are published first; then one consumer process runs
    ``Client.start_stream_to_online_ingestion`` (default batch settings) into Redis, in a fresh
    consumer group each run, with Redis flushed, and the rate is counted from its first record
    to its last: ``records consumed / seconds``. Once without and once with the offline log
    (date-partitioned Parquet in a temporary directory). The floor is the broker's own consume
    rate in the same run: a bare confluent-kafka consumer process reading the same records
    (``consume(10000)`` in a loop, no decoding, no commit).
(b) **Freshness.** A producer process publishes ``STEADY_RATE`` records/s for
    ``STEADY_SECONDS`` seconds, each stamped with its produce time as its event time; one
    consumer process (default batch settings) writes them to Redis and, as each write returns
    (from then on the values are readable online), records write time minus event time per
    record. p50 and p99 over every record after a 2-second warm-up.

Each measurement runs ``--runs`` times (default 3) in fresh processes; the figures are medians.

Usage::

    .venv/bin/python benchmarks/stream.py              # ~3 minutes
    .venv/bin/python benchmarks/stream.py --runs 5 --bulk-records 1000000

Writes ``benchmarks/results/stream.json`` and ``benchmarks/results/stream.md``.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import provender as pv

RESULTS = Path(__file__).resolve().parent / "results"
DRIVERS = 100_000
BULK_RECORDS = 500_000
STEADY_RATE = 5_000
STEADY_SECONDS = 20
WARMUP_SECONDS = 2.0
PARTITIONS = 4
TARGET_RATE = 50_000
TARGET_P99_MS = 100.0
HOST = "127.0.0.1"
SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "DriverTrip",
    "fields": [
        {"name": "driver_id", "type": "long"},
        {"name": "trips_today", "type": "int"},
        {"name": "conv_rate", "type": "float"},
        {"name": "acc_rate", "type": "float"},
        {"name": "avg_daily_trips", "type": "int"},
        {"name": "rating", "type": "double"},
        {"name": "event_ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    ],
}


# --------------------------------------------------------------------------- services


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited at startup")
        try:
            socket.create_connection((HOST, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not start")


@contextmanager
def services(workdir: Path) -> Iterator[tuple[str, str]]:
    """A noida-db broker and a redis-server on free ports; yields (bootstrap, redis url)."""
    import noida_db  # type: ignore[import-untyped]

    noida = os.path.join(os.path.dirname(noida_db.__file__ or ""), "noida-db")
    kafka_port, redis_port = free_port(), free_port()
    data_dir = ["--data-dir", str(workdir / "kafka")]
    redis_opts = ["--save", "", "--appendonly", "no", "--dir", str(workdir)]
    kafka = subprocess.Popen(
        [noida, "start", "--only", "kafka", "--host", HOST, "--kafka-port", str(kafka_port), *data_dir],
        stdout=(workdir / "kafka.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    redis_server = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(redis_port), "--bind", HOST, *redis_opts],
        stdout=(workdir / "redis.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_port(kafka_port, kafka, "noida-db")
        wait_port(redis_port, redis_server, "redis-server")
        yield f"{HOST}:{kafka_port}", f"redis://{HOST}:{redis_port}/0"
    finally:
        for proc in (kafka, redis_server):
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def create_topic(bootstrap: str, name: str) -> None:
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)])[name].result(30)


# --------------------------------------------------------------------------- roles (child processes)


def role_produce(bootstrap: str, topic: str, records: int, rate: float) -> dict[str, Any]:
    """Publish ``records`` Avro records for DRIVERS drivers (event time = produce time); ``rate`` 0 = flat out."""
    import random

    import fastavro
    from confluent_kafka import Producer

    parsed = fastavro.parse_schema(SCHEMA, named_schemas={})
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
    rng = random.Random(6)
    started = time.monotonic()
    buffer = io.BytesIO()
    for i in range(records):
        record = {
            "driver_id": i % DRIVERS,
            "trips_today": i // DRIVERS,
            "conv_rate": rng.random(),
            "acc_rate": rng.random(),
            "avg_daily_trips": rng.randrange(1000),
            "rating": rng.random() * 5,
            "event_ts": time.time_ns() // 1000,
        }
        buffer.seek(0)
        buffer.truncate()
        fastavro.schemaless_writer(buffer, parsed, record)
        while True:
            try:
                producer.produce(topic, buffer.getvalue())
                break
            except BufferError:
                producer.poll(0.01)
        if rate and i % 25 == 24:  # 25 records every 5 ms at 5,000/s
            producer.poll(0)
            time.sleep(max(0.0, started + (i + 1) / rate - time.monotonic()))
        elif i % 10_000 == 9_999:
            producer.poll(0)
    producer.flush(60)
    return {"records": records, "seconds": time.monotonic() - started}


def role_floor(bootstrap: str, topic: str, records: int) -> dict[str, Any]:
    """The broker's own consume rate: a bare consumer reading ``records`` messages, no work per message."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"floor-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen, first_at, first_batch = 0, 0.0, 0
    while seen < records:
        batch = consumer.consume(10_000, 1.0)
        if batch and not first_batch:
            first_at, first_batch = time.monotonic(), len(batch)  # count from the first batch's arrival
        seen += len(batch)
    seconds = time.monotonic() - first_at
    consumer.close()
    return {"rate": (seen - first_batch) / seconds, "seconds": seconds}


def bench_project(workdir: Path, bootstrap: str, topic: str, redis_url: str) -> pv.Client:
    """A project in ``workdir`` with the driver_trips table applied; returns its Client."""
    import yaml

    import provender as pv

    workdir.mkdir(parents=True, exist_ok=True)
    config = {"project": "bench", "registry": "sqlite:///registry.db", "online": {"store": "redis", "url": redis_url}}
    (workdir / "provender.yaml").write_text(yaml.safe_dump(config))
    client = pv.Client(config=workdir / "provender.yaml")
    driver = pv.Entity(name="driver_id", value_type=pv.ValueType.INT64)
    table = pv.FeatureTable(
        name="driver_trips",
        entities=["driver_id"],
        features=[
            pv.Feature("trips_today", pv.ValueType.INT32),
            pv.Feature("conv_rate", pv.ValueType.FLOAT),
            pv.Feature("acc_rate", pv.ValueType.FLOAT),
            pv.Feature("avg_daily_trips", pv.ValueType.INT32),
            pv.Feature("rating", pv.ValueType.DOUBLE),
        ],
        stream_source=pv.KafkaSource(
            bootstrap_servers=bootstrap,
            topic=topic,
            message_format=pv.AvroFormat(json.dumps(SCHEMA)),
            event_timestamp_column="event_ts",
        ),
    )
    client.apply([driver, table])
    return client


def role_consume(
    bootstrap: str, topic: str, redis_url: str, records: int, workdir: str, offline_log: bool
) -> dict[str, Any]:
    """Run the stream job (default settings) until ``records`` are consumed; rate from the first record."""
    client = bench_project(Path(workdir), bootstrap, topic, redis_url)
    log_dir = Path(workdir) / "offline_log" if offline_log else None
    job = client.start_stream_to_online_ingestion(
        "driver_trips", group_id=f"bench-{uuid.uuid4().hex}", offline_log=log_dir
    )
    gc.freeze()  # as `provender ingest-stream` does once its job runs
    first_at = first_count = None
    first_cpu = 0.0
    while job.records_consumed < records:
        if job.is_done:
            job.wait()
        if first_at is None and job.records_consumed:
            first_at, first_count, first_cpu = time.monotonic(), job.records_consumed, cpu_seconds()
        time.sleep(0.002)
    ended, cpu = time.monotonic(), cpu_seconds() - first_cpu
    job.stop()
    assert first_at is not None and first_count is not None
    return {
        "rate": (job.records_consumed - first_count) / (ended - first_at),
        "records_per_cpu_second": (job.records_consumed - first_count) / cpu,
        "seconds": ended - first_at,
        "written": job.records_written,
        "dead_letters": job.records_dead_lettered,
        "batches": job.batches,
        "cpu_seconds": cpu,
        "offline_log_files": sum(1 for _ in log_dir.rglob("*.parquet")) if log_dir else 0,
    }


def role_group_member(bootstrap: str, topic: str, redis_url: str, workdir: str, group_id: str) -> dict[str, Any]:
    """One of several processes of one consumer group: consume until no record came for 2 s."""
    client = bench_project(Path(workdir), bootstrap, topic, redis_url)
    job = client.start_stream_to_online_ingestion("driver_trips", group_id=group_id)
    gc.freeze()
    started = time.time()
    first_at = last_at = None
    first_count = last_count = 0
    first_cpu = 0.0
    while True:
        now, count = time.time(), job.records_consumed
        if job.is_done:
            job.wait()
        if count != last_count:
            if first_at is None:
                first_at, first_count, first_cpu = now, count, cpu_seconds()
            last_at, last_count = now, count
        elif (first_at is not None and last_at is not None and now - last_at > 2.0) or (
            first_at is None and now - started > 60  # never assigned a partition
        ):
            break
        time.sleep(0.002)
    cpu = cpu_seconds() - first_cpu
    job.stop()
    return {
        "first_at": first_at,
        "last_at": last_at,
        "records": last_count - first_count,
        "all_records": last_count,
        "cpu_seconds": cpu if first_at is not None else 0.0,
    }


def group_scaling(args: argparse.Namespace) -> dict[str, Any]:
    """Records/s into Redis of 1, 2 and 4 processes in one consumer group (4 partitions), medians of runs."""
    workdir = Path(tempfile.mkdtemp(prefix="provender-bench-stream-group-"))
    figures: dict[str, list[dict[str, Any]]] = {}
    load_before = os.getloadavg()
    try:
        with services(workdir) as (bootstrap, redis_url):
            bulk = f"bulk-{uuid.uuid4().hex[:6]}"
            create_topic(bootstrap, bulk)
            result_of(child("produce", bootstrap, bulk, str(args.bulk_records), "0"))
            for run_index in range(args.runs):
                for processes in (1, 2, 4):
                    flush_redis(redis_url)
                    group = f"bench-group-{uuid.uuid4().hex[:8]}"
                    members = [
                        child(
                            "group-member",
                            bootstrap,
                            bulk,
                            redis_url,
                            str(workdir / f"g{run_index}-{processes}-{n}"),
                            group,
                        )
                        for n in range(processes)
                    ]
                    results = [result_of(member) for member in members]
                    active = [r for r in results if r["first_at"] is not None]
                    seconds = max(r["last_at"] for r in active) - min(r["first_at"] for r in active)
                    records = sum(r["records"] for r in active)
                    point = {
                        "processes": processes,
                        "active": len(active),
                        "rate": records / seconds,
                        "records": sum(r["all_records"] for r in results),
                        "records_per_cpu_second": records / max(sum(r["cpu_seconds"] for r in active), 1e-9),
                    }
                    figures.setdefault(str(processes), []).append(point)
                    print(f"run {run_index + 1}: {processes} process(es): {point}", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "bulk_records": args.bulk_records,
        "partitions": PARTITIONS,
        "summary": {
            n: {"rate": median(runs, "rate"), "records_per_cpu_second": median(runs, "records_per_cpu_second")}
            for n, runs in figures.items()
        },
        "runs": figures,
    }


def group_markdown(result: dict[str, Any]) -> str:
    one = result["summary"]["1"]["rate"]
    lines = [
        "# Stream ingestion: processes in one consumer group",
        "",
        f"`python benchmarks/stream.py --group-scaling`, {result['date']}: {result['cpus']} CPUs shared with "
        f"other work (load average {result['load_before'][0]} before, {result['load_after'][0]} after). "
        f"{result['bulk_records']:,} records on a {result['partitions']}-partition topic, consumed into Redis "
        "by 1, 2 and 4 `ingest-stream` processes of one group (a fresh group each time); the rate is all "
        "records counted from the group's first record to its last. Medians of the runs.",
        "",
        "| processes | records/s | x one process | records per CPU-second |",
        "|---:|---:|---:|---:|",
    ]
    for n, figures in result["summary"].items():
        lines.append(
            f"| {n} | {figures['rate']:,.0f} | {figures['rate'] / one:.2f} | {figures['records_per_cpu_second']:,.0f} |"
        )
    lines += [
        "",
        "The processes, the broker and Redis share the machine's 2 cores: more processes than free cores cannot "
        "add throughput here. Per CPU-second, a process's rate is what one core gives (docs/scaling.md). With "
        "several processes the group rebalances as they join, and records consumed before a rebalance's commit "
        "are read again (`records` in the JSON counts them).",
        "",
    ]
    return "\n".join(lines)


def cpu_seconds() -> float:
    """User plus system CPU seconds of this process so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def role_fresh_floor(bootstrap: str, topic: str, records: int) -> dict[str, Any]:
    """The broker's own latency: produce time to a bare consumer's receipt, per record, beside the job."""
    import fastavro
    import numpy as np
    from confluent_kafka import Consumer

    from provender.ingestion.formats import strip_timestamp_logical_types

    parsed = fastavro.parse_schema(strip_timestamp_logical_types(SCHEMA)[0], named_schemas={})  # event_ts: int us
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"fresh-floor-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
        }
    )
    consumer.subscribe([topic])
    print(json.dumps({"ready": True}), flush=True)
    samples: list[tuple[float, float]] = []
    while len(samples) < records:
        message = consumer.poll(0.1)
        if message is None or message.error() is not None:
            continue
        now_us = time.time_ns() // 1000
        event = fastavro.schemaless_reader(io.BytesIO(message.value() or b""), parsed, None)
        assert isinstance(event, dict)
        event_us: int = event["event_ts"]
        samples.append((time.monotonic(), (now_us - event_us) / 1000.0))
    consumer.close()
    start = samples[0][0] + WARMUP_SECONDS
    values = np.array([ms for at, ms in samples if at >= start])
    return {"p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99))}


def role_fresh(bootstrap: str, topic: str, redis_url: str, records: int, workdir: str) -> dict[str, Any]:
    """Run the stream job (default settings) and record write time minus event time per record."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from provender.ingestion.stream import StreamJobSpec, start_stream_job

    client = bench_project(Path(workdir), bootstrap, topic, redis_url)
    table = client.get_feature_table("driver_trips")
    store = client._online_store  # the same store the client's own job writes to
    samples: list[tuple[float, Any]] = []

    def write(rows: pa.Table) -> int:
        written = store.write(table, rows)
        now_us = time.time_ns() // 1000  # the write has returned: the values are readable online
        event_us = pc.cast(rows.column("event_timestamp"), pa.int64()).to_numpy()
        samples.append((time.monotonic(), (now_us - event_us) / 1000.0))
        return written

    spec = StreamJobSpec(
        table=table,
        entity_types={"driver_id": client.get_entity("driver_id").value_type},
        group_id=f"fresh-{uuid.uuid4().hex}",
        options=client.settings.stream,
    )
    job = start_stream_job(spec, write)
    gc.freeze()  # as `provender ingest-stream` does once its job runs
    print(json.dumps({"ready": True}), flush=True)  # the parent starts the producer now
    while job.records_consumed < records:
        if job.is_done:
            job.wait()
        time.sleep(0.01)
    job.stop()
    start = samples[0][0] + WARMUP_SECONDS
    values = np.concatenate([ms for at, ms in samples if at >= start])
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p99_ms": float(np.percentile(values, 99)),
        "max_ms": float(values.max()),
        "records_measured": int(values.size),
        "batches": job.batches,
        "mean_batch_records": job.records_written / max(job.batches, 1),
    }


# --------------------------------------------------------------------------- orchestration


def child(role: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "--role", role, *args],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent,
    )


def result_of(proc: subprocess.Popen[str], timeout: float = 600) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"child {proc.args!r} failed with {proc.returncode}:\n{out}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line or not json.loads(line).get("ready"):
        raise RuntimeError(f"child {proc.args!r} did not get ready: {line!r}")


def flush_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushall()


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="provender-bench-stream-"))
    load_before = os.getloadavg()
    figures: dict[str, list[dict[str, Any]]] = {
        "floor": [],
        "redis": [],
        "redis+offline_log": [],
        "freshness": [],
        "freshness_floor": [],
    }
    try:
        with services(workdir) as (bootstrap, redis_url):
            bulk = f"bulk-{uuid.uuid4().hex[:6]}"
            create_topic(bootstrap, bulk)
            produced = result_of(child("produce", bootstrap, bulk, str(args.bulk_records), "0"))
            print(f"produced {args.bulk_records:,} records in {produced['seconds']:.1f} s", flush=True)
            for run_index in range(args.runs):
                figures["floor"].append(result_of(child("floor", bootstrap, bulk, str(args.bulk_records))))
                variants = [("redis", "0"), ("redis+offline_log", "1")]
                for name, log in variants if run_index % 2 == 0 else variants[::-1]:  # no order bias
                    flush_redis(redis_url)
                    directory = str(workdir / f"{name}-{run_index}")
                    proc = child("consume", bootstrap, bulk, redis_url, str(args.bulk_records), directory, log)
                    figures[name].append(result_of(proc))
                print(
                    f"run {run_index + 1}: floor {figures['floor'][-1]['rate']:,.0f}/s, "
                    f"redis {figures['redis'][-1]['rate']:,.0f}/s, "
                    f"redis+offline_log {figures['redis+offline_log'][-1]['rate']:,.0f}/s",
                    flush=True,
                )
            for run_index in range(args.runs):
                steady = f"steady-{uuid.uuid4().hex[:6]}"
                create_topic(bootstrap, steady)
                flush_redis(redis_url)
                records = STEADY_RATE * args.steady_seconds
                consumer = child(
                    "fresh", bootstrap, steady, redis_url, str(records), str(workdir / f"fresh-{run_index}")
                )
                floor = child("fresh-floor", bootstrap, steady, str(records))  # same records, same time
                wait_ready(consumer)
                wait_ready(floor)
                time.sleep(1.5)  # the consumers join their groups and are assigned the partitions
                producer = child("produce", bootstrap, steady, str(records), str(STEADY_RATE))
                result_of(producer)
                figures["freshness"].append(result_of(consumer))
                figures["freshness_floor"].append(result_of(floor))
                last, bare = figures["freshness"][-1], figures["freshness_floor"][-1]
                print(
                    f"freshness run {run_index + 1}: p50 {last['p50_ms']:.1f} ms, p99 {last['p99_ms']:.1f} ms "
                    f"(bare consumer: p50 {bare['p50_ms']:.1f} ms, p99 {bare['p99_ms']:.1f} ms)",
                    flush=True,
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return summarize(args, figures, load_before)


def median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def summarize(
    args: argparse.Namespace, figures: dict[str, list[dict[str, Any]]], load: tuple[float, ...]
) -> dict[str, Any]:
    from importlib.metadata import version

    import confluent_kafka

    from provender.config import StreamSection

    defaults = StreamSection()
    summary = {
        "floor_rate": median(figures["floor"], "rate"),
        "redis_rate": median(figures["redis"], "rate"),
        "redis_offline_log_rate": median(figures["redis+offline_log"], "rate"),
        "redis_records_per_cpu_second": median(figures["redis"], "records_per_cpu_second"),
        "redis_offline_log_records_per_cpu_second": median(figures["redis+offline_log"], "records_per_cpu_second"),
        "freshness_p50_ms": median(figures["freshness"], "p50_ms"),
        "freshness_p99_ms": median(figures["freshness"], "p99_ms"),
        "floor_freshness_p50_ms": median(figures["freshness_floor"], "p50_ms"),
        "floor_freshness_p99_ms": median(figures["freshness_floor"], "p99_ms"),
    }
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python benchmarks/stream.py " + " ".join(sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "confluent_kafka": confluent_kafka.version()[0],
            "librdkafka": confluent_kafka.libversion()[0],
            "noida_db": version("noida-db"),
            "load_before": [round(x, 2) for x in load],
            "load_after": [round(x, 2) for x in os.getloadavg()],
        },
        "settings": {
            "drivers": DRIVERS,
            "partitions": PARTITIONS,
            "bulk_records": args.bulk_records,
            "steady_rate": STEADY_RATE,
            "steady_seconds": args.steady_seconds,
            "runs": args.runs,
            "batch": f"stream.batch_rows={defaults.batch_rows}, stream.linger_ms={defaults.linger_ms}",
        },
        "targets": {"rate": TARGET_RATE, "freshness_p99_ms": TARGET_P99_MS},
        "summary": summary,
        "runs": figures,
    }


def markdown(result: dict[str, Any]) -> str:
    s, m, t = result["summary"], result["machine"], result["targets"]
    runs = result["runs"]

    def rates(name: str) -> str:
        return ", ".join(f"{r['rate']:,.0f}" for r in runs[name])

    def verdict(ok: bool, missed: str) -> str:
        return "met" if ok else f"MISSED ({missed})"

    lines = [
        "# Stream ingestion (Kafka -> Redis)",
        "",
        f"Run {result['date']} on {m['cpus']} CPUs ({m['cpu']}), Python {m['python']}, confluent-kafka "
        f"{m['confluent_kafka']} (librdkafka {m['librdkafka']}), noida-db {m['noida_db']}; load average "
        f"{m['load_before'][0]} before, {m['load_after'][0]} after (a shared machine). Medians of "
        f"{result['settings']['runs']} runs. Command: `{result['command'].strip()}`.",
        "",
        f"Records: Avro, 5 features, {result['settings']['drivers']:,} drivers, {PARTITIONS}-partition topic; "
        f"default batch settings ({result['settings']['batch']}).",
        "",
        "| measurement | median | runs | target |",
        "|---|---:|---|---|",
        f"| broker floor: bare consumer, records/s | {s['floor_rate']:,.0f} | {rates('floor')} | |",
        f"| one process into Redis, records/s | {s['redis_rate']:,.0f} | {rates('redis')} | >= {t['rate']:,} |",
        f"| one process into Redis + offline log, records/s | {s['redis_offline_log_rate']:,.0f} | "
        f"{rates('redis+offline_log')} | |",
        f"| into Redis, records per CPU-second of the consumer process | {s['redis_records_per_cpu_second']:,.0f} | "
        + ", ".join(f"{r['records_per_cpu_second']:,.0f}" for r in runs["redis"])
        + " | |",
        "| into Redis + offline log, records per CPU-second | "
        f"{s['redis_offline_log_records_per_cpu_second']:,.0f} | "
        + ", ".join(f"{r['records_per_cpu_second']:,.0f}" for r in runs["redis+offline_log"])
        + " | |",
        f"| freshness p50 at {STEADY_RATE:,}/s, ms | {s['freshness_p50_ms']:.1f} | "
        + ", ".join(f"{r['p50_ms']:.1f}" for r in runs["freshness"])
        + " | |",
        f"| freshness p99 at {STEADY_RATE:,}/s, ms | {s['freshness_p99_ms']:.1f} | "
        + ", ".join(f"{r['p99_ms']:.1f}" for r in runs["freshness"])
        + f" | <= {t['freshness_p99_ms']:.0f} |",
        f"| floor: bare consumer's receipt, p50 / p99 ms | {s['floor_freshness_p50_ms']:.1f} / "
        f"{s['floor_freshness_p99_ms']:.1f} | "
        + ", ".join(f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f}" for r in runs["freshness_floor"])
        + " | |",
        "",
        "Targets:",
        "",
        f"- throughput into Redis: {s['redis_rate']:,.0f} records/s vs {t['rate']:,}: "
        + verdict(s["redis_rate"] >= t["rate"], f"{t['rate'] / s['redis_rate']:.2f}x short"),
        f"- freshness p99 at {STEADY_RATE:,}/s: {s['freshness_p99_ms']:.1f} ms vs {t['freshness_p99_ms']:.0f} ms: "
        + verdict(
            s["freshness_p99_ms"] <= t["freshness_p99_ms"], f"{s['freshness_p99_ms'] / t['freshness_p99_ms']:.2f}x"
        ),
        f"- Redis rate / broker floor: {s['redis_rate'] / s['floor_rate']:.2f}; with the offline log: "
        f"{s['redis_offline_log_rate'] / s['floor_rate']:.2f}",
        "",
        "Throughput is counted from the consumer's first record to its last (the group join is excluded); "
        "freshness is produce time (the event time the producer stamps) to the return of the Redis write, "
        "after which the values are readable online, for every record after a 2 s warm-up. The consumer "
        "processes run the job as `provender ingest-stream` does (including its `gc.freeze()` after start-up).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--bulk-records", type=int, default=BULK_RECORDS)
    parser.add_argument("--steady-seconds", type=int, default=STEADY_SECONDS)
    parser.add_argument(
        "--group-scaling", action="store_true", help="measure 1, 2 and 4 processes in one group (stream_group.*)"
    )
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("params", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        p = args.params
        roles = {
            "produce": lambda: role_produce(p[0], p[1], int(p[2]), float(p[3])),
            "floor": lambda: role_floor(p[0], p[1], int(p[2])),
            "consume": lambda: role_consume(p[0], p[1], p[2], int(p[3]), p[4], p[5] == "1"),
            "fresh": lambda: role_fresh(p[0], p[1], p[2], int(p[3]), p[4]),
            "fresh-floor": lambda: role_fresh_floor(p[0], p[1], int(p[2])),
            "group-member": lambda: role_group_member(p[0], p[1], p[2], p[3], p[4]),
        }
        print(json.dumps(roles[args.role]()), flush=True)
        return
    if args.group_scaling:
        group = group_scaling(args)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "stream_group.json").write_text(json.dumps(group, indent=2) + "\n")
        (RESULTS / "stream_group.md").write_text(group_markdown(group))
        print(group_markdown(group))
        return
    result = run(args)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stream.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (RESULTS / "stream.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
