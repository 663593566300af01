"""The stream loop without a broker: batching, commit-after-write, retries, dead letters, rebalances, offline log.

``MemoryStream`` is a real :class:`StreamSource` over in-memory partitions, so these tests check
the loop's own rules; ``tests/integration/test_stream_kafka.py`` checks the same against Kafka.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

import provender as pv
from provender.config import StreamSection
from provender.ingestion.batch import JobStatus
from provender.ingestion.formats import JsonDecoder
from provender.ingestion.offline_log import OfflineLog
from provender.ingestion.rows import RowBuilder
from provender.ingestion.stream import StreamIngestionJob
from provender.ingestion.stream_loop import StreamLoop
from provender.online.keys import encode_arrow_keys
from provender.online.memory import MemoryStore
from provender.online.store import ReadRequest
from tests.support.builders import DRIVER, make_client
from tests.support.streams import MemoryStream

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
TABLE = pv.FeatureTable(
    name="trips",
    entities=["driver_id"],
    features=[pv.Feature("trips_today", pv.ValueType.INT64)],
    stream_source=pv.KafkaSource(
        bootstrap_servers="unused:9092", topic="trips", message_format=pv.JsonFormat(), event_timestamp_column="ts"
    ),
)


# Commits while consuming, every 50 ms here (a job's default is 5 s): tests wait for them.
FAST_COMMITS = {"commit_interval_seconds": 0.05}


class Harness:
    def __init__(
        self,
        *,
        options: StreamSection | None = None,
        offline_log: OfflineLog | None = None,
        table: pv.FeatureTable = TABLE,
    ) -> None:
        self.table = table
        self.source = MemoryStream()
        self.store = MemoryStore()
        self.writes: list[int] = []
        self.fail_writes: list[Exception] = []
        self.job = StreamIngestionJob(table="trips", topic="trips", group_id="g")
        assert TABLE.stream_source is not None
        self.loop = StreamLoop(
            job=self.job,
            source=self.source,
            decoder=JsonDecoder(),
            builder=RowBuilder(table, TABLE.stream_source, {"driver_id": pv.ValueType.INT64}),
            write=self.write,
            options=_commit_often(options or StreamSection(linger_ms=5)),
            offline_log=offline_log,
        )

    def write(self, rows: pa.Table) -> int:
        if self.fail_writes:
            raise self.fail_writes.pop(0)
        self.writes.append(rows.num_rows)
        return self.store.write(self.table, rows)

    def start(self) -> StreamIngestionJob:
        return self.job.start(lambda _: self.loop.run())  # type: ignore[return-value]

    def values(self, ids: Sequence[int]) -> list[object]:
        keys = encode_arrow_keys(pa.table({"driver_id": pa.array(ids, pa.int64())}), ["driver_id"])
        stored = self.store.read([ReadRequest(TABLE, keys)])[0]
        return [None if row is None else row.values[0] for row in stored]


def _commit_often(options: StreamSection) -> StreamSection:
    """``options`` with :data:`FAST_COMMITS`, unless a test sets its own interval."""
    if "commit_interval_seconds" in options.model_fields_set:
        return options
    return options.model_copy(update=FAST_COMMITS)


def trip(driver: int, trips: int, seconds: float = 0) -> dict[str, object]:
    return {"driver_id": driver, "trips_today": trips, "ts": (T0 + timedelta(seconds=seconds)).isoformat()}


def test_records_are_written_and_committed_after_the_write() -> None:
    h = Harness()
    for i in range(50):
        h.source.produce(trip(i, i), partition=i % 2)
    job = h.start()
    assert job.wait_until(lambda j: j.records_written == 50, 10)
    assert h.values(range(50)) == list(range(50))
    assert job.wait_until(lambda j: h.source.committed == {0: 25, 1: 25}, 5)
    job.stop()
    assert job.status is JobStatus.SUCCEEDED
    assert (job.records_consumed, job.records_dead_lettered, job.rows_written) == (50, 0, 50)
    assert h.source.closed


def test_written_offsets_wait_for_the_commit_interval_and_a_stop_commits_them() -> None:
    h = Harness(options=StreamSection(linger_ms=5, commit_interval_seconds=60))
    polls: list[int] = []
    h.source.before_poll = lambda: polls.append(1)
    job = h.start()
    assert job.wait_until(lambda j: len(polls) >= 2, 10)  # the first step (and its commit, of nothing) is over
    for i in range(10):
        h.source.produce(trip(i, i))
    assert job.wait_until(lambda j: j.records_written == 10, 10)
    time.sleep(0.3)
    assert h.source.committed == {}  # written, but the next commit is a minute away
    job.stop()
    assert h.source.committed == {0: 10}


def test_a_micro_batch_is_written_within_its_linger() -> None:
    h = Harness(options=StreamSection(batch_rows=10_000, linger_ms=30))
    job = h.start()
    time.sleep(0.2)
    produced = time.monotonic()
    h.source.produce(trip(1, 1))
    assert job.wait_until(lambda j: j.records_written == 1, 5)
    assert time.monotonic() - produced < 0.3
    job.stop()


def test_batches_hold_at_most_batch_rows() -> None:
    h = Harness(options=StreamSection(batch_rows=7, linger_ms=1000))
    for i in range(30):
        h.source.produce(trip(i, i))
    job = h.start()
    assert job.wait_until(lambda j: j.records_written == 30, 10)
    job.stop()
    assert max(h.writes) <= 7


def test_a_failed_write_commits_nothing_and_fails_the_job() -> None:
    h = Harness()
    h.fail_writes.append(pv.BackendError("disk on fire", retryable=False))
    h.source.produce(trip(1, 1))
    job = h.start()
    assert job.wait_done(10)
    assert job.status is JobStatus.FAILED
    assert h.source.committed == {}
    with pytest.raises(pv.BackendError, match="disk on fire"):
        job.wait()


def test_a_retryable_write_failure_is_retried_before_committing() -> None:
    h = Harness()
    h.fail_writes.extend([pv.BackendError("redis down", retryable=True)] * 2)
    h.source.produce(trip(1, 1))
    job = h.start()
    assert job.wait_until(lambda j: h.source.committed == {0: 1}, 10)
    assert h.values([1]) == [1]
    job.stop()
    assert job.status is JobStatus.SUCCEEDED


def test_bad_records_go_to_dead_letters_and_never_block_the_partition() -> None:
    h = Harness()
    h.source.produce(trip(1, 1))
    h.source.produce(b"\x00garbage")
    h.source.produce({"trips_today": 3, "ts": T0.isoformat()})
    h.source.produce({"driver_id": 4, "trips_today": "four", "ts": T0.isoformat()})
    h.source.produce({"driver_id": 5, "trips_today": 5, "ts": "last tuesday"})
    h.source.produce(trip(6, 6))
    job = h.start()
    assert job.wait_until(lambda j: h.source.committed == {0: 6}, 10)
    job.stop()
    assert h.values([1, 6]) == [1, 6]
    letters = {(letter.offset, letter.reason) for letter in h.source.dead_letters}
    assert letters == {(1, "undecodable"), (2, "missing_entity_key"), (3, "wrong_type"), (4, "bad_timestamp")}
    assert h.source.dead_letters[0].value == b"\x00garbage"
    assert job.records_dead_lettered == 4
    assert job.dead_letters_by_reason == {
        "undecodable": 1,
        "missing_entity_key": 1,
        "wrong_type": 1,
        "bad_timestamp": 1,
    }


def test_out_of_order_records_never_move_a_value_back() -> None:
    h = Harness(options=StreamSection(batch_rows=1, linger_ms=0))
    h.source.produce(trip(1, 10, seconds=10))
    h.source.produce(trip(1, 5, seconds=5), partition=1)
    h.source.produce(trip(1, 7, seconds=7))
    job = h.start()
    assert job.wait_until(lambda j: j.records_consumed == 3, 10)
    job.stop()
    assert h.values([1]) == [10]


def test_a_revoke_writes_and_commits_the_pending_batch_first() -> None:
    h = Harness(options=StreamSection(batch_rows=1000, linger_ms=60_000))
    for i in range(5):
        h.source.produce(trip(i, i))
    revoked = threading.Event()
    held: list[int] = []

    def revoke_once() -> None:
        if h.job.records_consumed == 0 and h.loop._pending.values and not revoked.is_set():
            held.extend(h.loop._pending.offsets)
            h.source.revoke()
            revoked.set()

    h.source.before_poll = revoke_once
    job = h.start()
    assert revoked.wait(10)
    assert held and h.source.committed == {0: len(held)}
    assert h.values(range(len(held))) == list(range(len(held)))
    job.stop()
    assert h.values(range(5)) == list(range(5))


def test_lost_partitions_drop_their_pending_records_uncommitted() -> None:
    h = Harness(options=StreamSection(batch_rows=1000, linger_ms=60_000))
    for i in range(5):
        h.source.produce(trip(i, i))
    lost = threading.Event()

    def lose_once() -> None:
        if h.loop._pending.values and not lost.is_set():
            h.source.revoke(lost=True)
            lost.set()

    h.source.before_poll = lose_once
    job = h.start()
    assert lost.wait(10)
    job.stop()  # the records are re-read after the reset and written at the stop
    assert h.values(range(5)) == list(range(5))
    assert h.source.committed == {0: 5}


def test_with_an_offline_log_offsets_wait_for_the_parquet_file(tmp_path: Path) -> None:
    log = OfflineLog(tmp_path / "log", max_rows=1_000_000, max_seconds=3600)
    h = Harness(offline_log=log)
    for i in range(10):
        h.source.produce(trip(i, i, seconds=i * 3600 * 3))  # spans two dates
    job = h.start()
    assert job.wait_until(lambda j: j.records_written == 10, 10)
    time.sleep(0.1)
    assert h.source.committed == {}  # written online, but not yet in a file
    job.stop()
    assert h.source.committed == {0: 10}
    dates = sorted(p.name for p in (tmp_path / "log").iterdir())
    assert dates == ["date=2026-03-01", "date=2026-03-02"]
    assert not list((tmp_path / "log").rglob(".*"))  # no temporary files left


def test_offline_log_files_serve_historical_retrieval(tmp_path: Path) -> None:
    log = OfflineLog(tmp_path / "log", max_rows=4)
    h = Harness(offline_log=log)
    for i in range(1, 4):
        h.source.produce(trip(1, i, seconds=i * 3600))
        h.source.produce(trip(2, 10 * i, seconds=i * 3600 * 10))
    job = h.start()
    assert job.wait_until(lambda j: j.records_written == 6, 10)
    job.stop()
    assert log.files_written >= 2
    logged = TABLE.__class__(
        name="trips",
        entities=["driver_id"],
        features=TABLE.features,
        stream_source=TABLE.stream_source,
        batch_source=pv.FileSource(
            path=str(tmp_path / "log"),
            event_timestamp_column="event_timestamp",
            created_timestamp_column="created_timestamp",
            date_partition_column="date",
        ),
    )
    with make_client(tmp_path / "project") as client:
        client.apply([DRIVER, logged])
        entity_rows = pa.table(
            {
                "driver_id": [1, 1, 2, 2],
                "event_timestamp": pa.array(
                    [T0 + timedelta(hours=h) for h in (0.5, 2.5, 15, 40)], pa.timestamp("us", tz="UTC")
                ),
            }
        )
        result = client.get_historical_features(["trips:trips_today"], entity_rows).to_arrow()
    assert result.column("trips__trips_today").to_pylist() == [None, 2, 10, 30]


def test_records_violating_an_expectation_go_to_dead_letters_naming_it() -> None:
    checked = dataclasses.replace(
        TABLE,
        features=[
            pv.Feature("trips_today", pv.ValueType.INT64, expect=[pv.expect.not_null(), pv.expect.between(0, 100)])
        ],
    )
    h = Harness(table=checked)
    h.source.produce(trip(1, 1))
    h.source.produce(trip(2, 500))
    h.source.produce({"driver_id": 3, "trips_today": None, "ts": T0.isoformat()})
    h.source.produce(trip(4, 4))
    job = h.start()
    assert job.wait_until(lambda j: h.source.committed == {0: 4}, 10)
    job.stop()
    assert h.values([1, 2, 3, 4]) == [1, None, None, 4]
    letters = {(letter.offset, letter.reason, letter.error) for letter in h.source.dead_letters}
    assert letters == {
        (1, "violated_expectation", "expectation trips_today: between(0, 100)"),
        (2, "violated_expectation", "expectation trips_today: not_null"),
    }
    assert job.dead_letters_by_reason == {"violated_expectation": 2}
