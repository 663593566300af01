"""Stream ingestion keeps windowed aggregations fresh in tiles: online at T equals historical at T.

* Random event streams (out of order, some later than the allowed lateness, random micro-batch
  sizes) through the real stream loop (in-memory source) into real SQLite and Redis stores, with
  an offline log: the tiles read at many times equal the oracle over the accepted events, the job
  reports the too-late ones, and historical retrieval over the offline log counts them all.
* Through the real Kafka-protocol broker (noida-db) and ``Client``: ``get_online_features``
  at the wall clock equals ``get_historical_features`` at the same time, on Redis.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
import yaml
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import provender as pv
from provender.config import StreamSection, load_settings
from provender.ingestion.formats import JsonDecoder
from provender.ingestion.offline_log import OfflineLog
from provender.ingestion.rows import RowBuilder
from provender.ingestion.stream import StreamIngestionJob
from provender.ingestion.stream_loop import StreamLoop
from provender.online import tiles
from provender.online.keys import encode_arrow_keys
from provender.online.read import OnlineReader, OnlineResponse
from provender.online.redis import RedisStore
from provender.online.sqlite import SQLiteStore
from provender.online.store import OnlineStore
from provender.online.tile_writer import TileWriter
from tests.support import window_oracle
from tests.support.services import KafkaBroker, RedisServer
from tests.support.stream_windows import (
    AGGREGATIONS,
    BASE,
    LATENESS,
    RIDER,
    accepted,
    assert_matches_oracle,
    events_strategy,
    make_events,
    message,
    read_times,
    trips_table,
)
from tests.support.streams import MemoryStream


def _micros(at: datetime) -> int:
    return (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def run_stream(
    store: OnlineStore, table: pv.FeatureTable, events: list[dict[str, Any]], log_path: Path, batch_rows: int
) -> StreamIngestionJob:
    """Ingest ``events`` (arrival order; partition by rider) through the stream loop; stop when done."""
    assert table.stream_source is not None
    source = MemoryStream(partitions=2)
    for event in events:
        source.produce(message(event), partition=event["rider"] % 2)
    job = StreamIngestionJob(table="trips", topic="trips", group_id="g")
    loop = StreamLoop(
        job=job,
        source=source,
        decoder=JsonDecoder(),
        builder=RowBuilder(table, table.stream_source, {"rider": pv.ValueType.INT64}),
        write=lambda rows: store.write(table, rows),
        options=StreamSection(linger_ms=1, batch_rows=batch_rows),
        offline_log=OfflineLog(log_path, max_rows=10_000, max_seconds=60),
        tiles=TileWriter(store, table, allowed_lateness=LATENESS),
    )
    job.start(lambda _: loop.run())
    assert job.wait_until(lambda j: j.records_consumed == len(events), 20), job.error
    job.stop()
    assert job.error is None
    return job


@pytest.fixture(scope="module", params=["sqlite", pytest.param("redis", marks=pytest.mark.service)])
def stores(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Makes a fresh store (its own project) per call."""
    made: list[OnlineStore] = []
    with tempfile.TemporaryDirectory() as tmp:

        def make() -> OnlineStore:
            project = f"p{uuid.uuid4().hex[:10]}"
            store: OnlineStore
            if request.param == "redis":
                server: RedisServer = request.getfixturevalue("redis_server")
                store = RedisStore.from_options({"url": server.url}, base_dir=Path(tmp), project=project)
            else:
                store = SQLiteStore(Path(tmp) / "online.db", project=project)
            made.append(store)
            return store

        yield make
        for store in made:
            store.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=events_strategy, batch_rows=st.integers(1, 25))
def test_stream_tiles_equal_the_oracle_at_any_read_time(
    stores: Any, raw: list[tuple[int, int, int, float | None, str | None]], batch_rows: int
) -> None:
    events = make_events(raw)
    store = stores()
    with tempfile.TemporaryDirectory() as tmp:
        table = trips_table(str(Path(tmp) / "log"))
        job = run_stream(store, table, events, Path(tmp) / "log", batch_rows)
    kept, late = accepted(events)
    assert job.records_too_late == late
    assert job.records_written == len(events)
    for rider in (1, 2, 3):
        keys = encode_arrow_keys(pa.table({"rider": pa.array([rider], pa.int64())}), ["rider"])
        for at in read_times(kept, rider):
            found = tiles.read_values(store, table, keys, _micros(at))[0]
            if not any(e["rider"] == rider for e in kept):
                assert found is None
            else:
                assert found is not None
                assert_matches_oracle(found, kept, rider, at)


def test_historical_over_the_offline_log_counts_late_events_that_online_leaves_out(stores: Any) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    raw = [(1, 600 + 60 * n, 0, float(n), "abc"[n % 3]) for n in range(12)]  # rider 1: minutes 10..21
    raw += [(1, 300, 0, 100.0, "z")]  # 16 minutes behind rider 1's watermark: too late (lateness 10 min)
    raw += [(2, 60 * n, 0, 1.0, "a") for n in (5, 3, 4, 1)]  # rider 2: out of order, within lateness
    events = make_events(raw)
    store = stores()
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "log"
        table = trips_table(str(log_path))
        job = run_stream(store, table, events, log_path, batch_rows=4)
        assert job.records_too_late == 1
        at = base + timedelta(minutes=21)
        with _client(Path(tmp)) as client:
            client.apply([RIDER, table])
            refs = [f"trips:{a.name}" for a in AGGREGATIONS]
            frame = pd.DataFrame({"rider": [1, 2], "event_timestamp": [at, at]})
            historical = client.get_historical_features(refs, frame).to_arrow().to_pylist()
    for n, rider in enumerate((1, 2)):
        keys = encode_arrow_keys(pa.table({"rider": pa.array([rider], pa.int64())}), ["rider"])
        online = tiles.read_values(store, table, keys, _micros(at))[0]
        assert online is not None
        offline = [historical[n][f"trips__{a.name}"] for a in AGGREGATIONS]
        assert_matches_oracle(offline, events, rider, at)  # the offline log has every event
        kept, _ = accepted(events)
        assert_matches_oracle(online, kept, rider, at)
        if rider == 2:
            assert online == offline  # no late event: online equals historical
    sum_20m = next(i for i, a in enumerate(AGGREGATIONS) if a.name == "fare_sum_20m")
    assert historical[0][f"trips__{AGGREGATIONS[sum_20m].name}"] == sum(range(12)) + 100.0


def _client(root: Path) -> pv.Client:
    directory = root / "project"
    directory.mkdir()
    config = {"project": "p", "registry": "sqlite:///.provender/registry.db", "online": {"store": "memory"}}
    (directory / "provender.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return pv.Client(settings=load_settings(directory / "provender.yaml", environ={}))


@pytest.mark.service
@pytest.mark.timeout(120)
def test_through_kafka_online_at_now_equals_historical_at_now(
    kafka_broker: KafkaBroker, redis_server: RedisServer, tmp_path: Path
) -> None:
    topic = f"trips-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap_servers})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(10)
    directory = tmp_path / "project"
    directory.mkdir()
    config = {
        "project": f"p{uuid.uuid4().hex[:8]}",
        "registry": "sqlite:///.provender/registry.db",
        "online": {"store": "redis", "url": redis_server.url},
        "stream": {"linger_ms": 10, "allowed_lateness_seconds": 600},
    }
    (directory / "provender.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    now = datetime.now(UTC)
    # Event times kept a minute away from every window bound, so the few seconds between the
    # online read and the historical time cannot move an event across one.
    offsets = [2, 3.5, 7, 11, 16, 23, 31, 40, 55, 70, 90, 95]
    events = []
    for n, minutes in enumerate(offsets):
        for rider in (1, 2, 3):
            if (n + rider) % 4:
                events.append(
                    {"rider": rider, "fare": float(n + rider), "city": "abcd"[(n * rider) % 4],
                     "event_timestamp": now - timedelta(minutes=minutes), "created_timestamp": now}
                )  # fmt: skip
    events.sort(key=lambda e: e["event_timestamp"])  # in time order...
    events.append(dict(events[0], fare=1000.0))  # ...then one 95 minutes behind: later than 10 minutes
    late_rider = events[0]["rider"]
    aggregations = [
        pv.Aggregation(column="fare", function="sum", window=timedelta(minutes=30), name="fare_sum_30m"),
        pv.Aggregation(column="fare", function="count", window=timedelta(hours=2), name="fare_count_2h"),
        pv.Aggregation(column="fare", function="mean", window=timedelta(hours=1), name="fare_mean_1h"),
        pv.Aggregation(column="city", function="count_distinct", window=timedelta(hours=2), name="cities_2h"),
        pv.Aggregation(column="fare", function="last", window=timedelta(minutes=5), name="fare_last_5m"),
    ]
    table = trips_table(
        str(directory / "log"), aggregations=aggregations, topic=topic, bootstrap_servers=kafka_broker.bootstrap_servers
    )
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap_servers})
    for event in events:
        producer.produce(topic, json.dumps(message(event)).encode(), key=str(event["rider"]).encode())
    producer.flush(10)
    with pv.Client(settings=load_settings(directory / "provender.yaml", environ={})) as client:
        client.apply([RIDER, table])
        job = client.start_stream_to_online_ingestion("trips", offline_log="log")
        assert job.wait_until(lambda j: j.records_consumed == len(events), 60), job.error
        job.stop()
        assert job.records_too_late == 1
        refs = [f"trips:{a.name}" for a in aggregations]
        riders = [{"rider": r} for r in (1, 2, 3, 4)]
        at = datetime.now(UTC)
        online = client.get_online_features(refs, riders)
        frame = pd.DataFrame({"rider": [1, 2, 3, 4], "event_timestamp": [at] * 4})
        historical = client.get_historical_features(refs, frame).to_arrow().to_pylist()
    values = online.to_dict()
    assert time.time() - at.timestamp() < 30
    kept = events[:-1]
    for n, rider in enumerate((1, 2, 3, 4)):
        for aggregation in aggregations:
            column = f"trips__{aggregation.name}"
            where = f"rider {rider} {aggregation.name}"
            expected_online = window_oracle.aggregate(kept, aggregation, key={"rider": rider}, at=at)
            expected_offline = window_oracle.aggregate(events, aggregation, key={"rider": rider}, at=at)
            assert historical[n][column] == pytest.approx(expected_offline), where
            if rider == 4:  # no events: no tiles, nothing stored: counts 0, the rest null, as historical
                assert values[column][n] == expected_online == historical[n][column], where
                continue
            assert values[column][n] == pytest.approx(expected_online), where
            if rider != late_rider or aggregation.window < timedelta(minutes=95):
                assert values[column][n] == pytest.approx(historical[n][column]), where
    assert online.statuses()["trips__fare_sum_30m"][:3] == ["PRESENT"] * 3


class _Catalog:
    def __init__(self, table: pv.FeatureTable) -> None:
        self.project, self.version = "p", 1
        self.entities = {"rider": RIDER}
        self.feature_tables = {table.name: table}
        self.on_demand_features: dict[str, object] = {}


def test_the_reader_serves_tile_aggregates_at_its_time_sync_and_async(stores: Any) -> None:
    events = make_events([(1, 60 * n, 0, float(n), "ab"[n % 2]) for n in (4, 1, 3, 9, 7)] + [(2, 30, 0, None, "c")])
    store = stores()
    with tempfile.TemporaryDirectory() as tmp:
        table = trips_table(str(Path(tmp) / "log"))
        run_stream(store, table, events, Path(tmp) / "log", batch_rows=2)
    reader = OnlineReader(store, load_catalog=lambda: _Catalog(table))  # type: ignore[arg-type, return-value]
    refs = [f"trips:{a.name}" for a in AGGREGATIONS]
    rows = [{"rider": 1}, {"rider": 2}, {"rider": 3}]
    for at in (BASE + timedelta(minutes=9), BASE + timedelta(minutes=12, microseconds=1), BASE + timedelta(hours=1)):
        response = reader.read(refs, rows, now_us=_micros(at))
        values = response.to_dict()
        for n, rider in enumerate((1, 2)):
            found = [values[f"trips__{a.name}"][n] for a in AGGREGATIONS]
            assert_matches_oracle(found, events, rider, at)
        # Rider 3 has no tiles nor row: its counts are 0 (as historical retrieval gives), the rest null.
        assert [values[f"trips__{a.name}"][2] for a in AGGREGATIONS] == [0 if a.counts else None for a in AGGREGATIONS]
        assert_matches_oracle([values[f"trips__{a.name}"][2] for a in AGGREGATIONS], events, 3, at)
        statuses = response.statuses()
        assert statuses["trips__fare_count_5m"] == ["PRESENT", "PRESENT", "NOT_FOUND"]
        assert statuses["trips__fare_min_5m"][1] == "NULL_VALUE"  # rider 2's only fare is null
        if reader.reads_async:

            async def read_async(at: datetime = at) -> OnlineResponse:
                try:
                    return await reader.read_async(refs, rows, now_us=_micros(at))
                finally:
                    store.close()  # on the loop: its connection belongs to it (the store reopens)

            assert asyncio.run(read_async()).to_dict() == values


def test_racing_writers_of_the_same_keys_lose_no_event(stores: Any) -> None:
    """Two writers (two stores, as two processes would have) add events of the same keys at once."""
    first, second = stores(), stores()
    if isinstance(first, SQLiteStore) and isinstance(second, SQLiteStore):  # the same file, as two processes share it
        second.close()
        second = SQLiteStore(first.path, project=first.project)
    elif isinstance(first, RedisStore) and isinstance(second, RedisStore):
        second.close()
        second = RedisStore.from_options({"url": first.config.url}, base_dir=Path("."), project=first.project)
    table = trips_table("unused")
    events = make_events([(1 + n % 3, 60 * (n % 30) + n % 7, 0, float(n % 11), "abc"[n % 3]) for n in range(600)])
    calls = {"merges": 0}
    writers = []
    for store in (first, second):
        writer = TileWriter(store, table, allowed_lateness=timedelta(hours=2))
        merge_of = store.update_tiles

        def counted(*args: Any, merge_of: Any = merge_of) -> None:
            table_, layout, keys, fields, merge = args

            def merge_counted(i: int, values: list[bytes | None]) -> Any:
                calls["merges"] += 1
                return merge(i, values)

            merge_of(table_, layout, keys, fields, merge_counted)

        store.update_tiles = counted
        append_of = getattr(store, "append_tiles", None)
        if append_of is not None:  # Redis applies most keys without a read: count those too

            def appended(*args: Any, append_of: Any = append_of) -> Any:
                statuses = append_of(*args)
                calls["merges"] += sum(1 for status in statuses if status != 0)
                return statuses

            store.append_tiles = appended
        writers.append(writer)
    rows = pa.Table.from_pylist(
        [{k: e[k] for k in ("rider", "fare", "city", "event_timestamp", "created_timestamp")} for e in events]
    )

    def run(part: int) -> None:
        for start in range(part * 10, len(events), 20):  # each writer its own partition, batches of 10
            batch = list(range(start, min(start + 10, len(events))))
            writers[part].apply(rows.take(batch), [part] * len(batch), batch)

    threads = [threading.Thread(target=run, args=(part,)) for part in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    at = max(e["event_timestamp"] for e in events)
    for rider in (1, 2, 3):
        keys = encode_arrow_keys(pa.table({"rider": pa.array([rider], pa.int64())}), ["rider"])
        found = tiles.read_values(first, table, keys, _micros(at))[0]
        assert found is not None
        assert_matches_oracle(found, events, rider, at)
    assert calls["merges"] >= 3 * len(range(0, len(events), 10))  # every batch merged its 3 keys (or more: retries)
    second.close()


@pytest.mark.service
def test_redis_compare_and_set_merges_again_when_another_writer_came_between(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writer B changes the key between writer A's read and A's write: A's change is refused and re-merged."""
    project = f"p{uuid.uuid4().hex[:10]}"
    stores = [RedisStore.from_options({"url": redis_server.url}, base_dir=Path("."), project=project) for _ in "ab"]
    table = trips_table("unused")
    events = make_events([(1, 60, 0, 1.0, "a"), (1, 120, 0, 2.0, "b"), (1, 180, 0, 4.0, "c")])
    rows = pa.Table.from_pylist(
        [{k: e[k] for k in ("rider", "fare", "city", "event_timestamp", "created_timestamp")} for e in events]
    )
    a, b = (TileWriter(s, table, allowed_lateness=LATENESS) for s in stores)
    update_a = stores[0].update_tiles
    merges = []

    def update_with_a_writer_between(
        table_: pv.FeatureTable,
        layout: tiles.TileLayout,
        keys: Sequence[bytes],
        fields: Sequence[Sequence[bytes]],
        merge: tiles.TileMerge,
    ) -> None:
        def merge_then_interfere(i: int, values: list[bytes | None]) -> tiles.TileUpdate | None:
            merges.append(i)
            change = merge(i, values)
            if len(merges) == 1:  # after A read the key, B writes it
                b.apply(rows.slice(2, 1), [1], [0])
            return change

        update_a(table_, layout, keys, fields, merge_then_interfere)

    monkeypatch.setattr(stores[0], "update_tiles", update_with_a_writer_between)
    monkeypatch.setattr(stores[0], "append_tiles", None)  # A reads and merges (as a refused append does)
    report = a.apply(rows.slice(0, 2), [0, 0], [0, 1])
    assert report.applied == 2 and len(merges) == 2  # merged twice: the first change was refused
    keys = encode_arrow_keys(pa.table({"rider": pa.array([1], pa.int64())}), ["rider"])
    at = events[-1]["event_timestamp"]
    found = tiles.read_values(stores[1], table, keys, _micros(at))[0]
    assert found is not None
    assert_matches_oracle(found, events, 1, at)  # all three events, each once
    for store in stores:
        store.close()
