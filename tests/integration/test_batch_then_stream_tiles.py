"""Batch ingestion rebuilds the tiles, so a stream going on after it serves the batch's history too.

Before: a stream applied events of the keys (some at or before ``end``, also in the batch source;
some after ``end``). Batch ingestion at ``end`` rebuilds each key's tiles from the batch source's
events up to ``end`` and keeps the stream's events after it; the stream then goes on (an event
at or before ``end`` is skipped and reported too late). At many times *T* >= ``end``, the online
value from the tiles equals historical retrieval at *T* over the batch source plus the stream's
later events, and the brute-force oracle: DuckDB engine on SQLite and Redis; Spark engine (local
mode) on Redis with its executors rebuilding the tiles, and on SQLite and Redis through the
driver (a table with an expectation: its rows, and events, pass through the job's process).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

import provender as pv
from provender.online import tiles
from provender.online.keys import encode_arrow_keys
from provender.online.tile_writer import TileWriter
from tests.support.builders import make_client, write_parquet
from tests.support.stream_windows import AGGREGATIONS, BASE, RIDER, SCHEMA, assert_matches_oracle, trips_table

END = BASE + timedelta(hours=2)


SPARK = [pytest.mark.service, pytest.mark.slow]


@pytest.fixture(
    params=[
        "duckdb-sqlite",
        pytest.param("duckdb-redis", marks=pytest.mark.service),
        pytest.param("spark-redis", marks=SPARK),  # the executors write the rows and rebuild the tiles
        pytest.param("spark-sqlite-driver", marks=SPARK),  # validated: rows and events through the driver
        pytest.param("spark-redis-driver", marks=SPARK),
    ]
)
def setup(request: pytest.FixtureRequest) -> str:
    """The offline engine, the online store and (``-driver``) whether the table declares an expectation."""
    return str(request.param)


@pytest.fixture
def client(setup: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[pv.Client]:
    online = {"store": "redis", "url": request.getfixturevalue("redis_server").url} if "redis" in setup else None
    offline = None
    if setup.startswith("spark"):
        request.getfixturevalue("spark_engine")  # the session every local-mode test shares
        offline = dict(request.getfixturevalue("spark_options"))
    with make_client(tmp_path / "project", offline=offline, online=online, project=f"p{tmp_path.name[-12:]}") as c:
        yield c


def _event(rng: random.Random, n: int, at: Any) -> dict[str, Any]:
    fare = None if n % 9 == 0 else float(rng.randrange(1, 40))
    return {
        "rider": rng.choice([1, 2, 3]),
        "fare": fare,
        "city": rng.choice(["a", "b", "c", None]),
        "event_timestamp": at,
        "created_timestamp": BASE + timedelta(microseconds=n),
    }


def _micros(at: datetime) -> int:
    return (at - BASE) // timedelta(microseconds=1) + int(BASE.timestamp()) * 1_000_000


def test_online_after_batch_ingestion_then_stream_equals_historical(
    client: pv.Client, setup: str, tmp_path: Path
) -> None:
    rng = random.Random(7)
    # the batch source: events over the 2 hours before END (END itself included), times on the minute often
    history = [
        _event(rng, n, END - timedelta(seconds=rng.choice([0, 60, 300, 1200, rng.randrange(0, 7200)])))
        for n in range(120)
    ]
    # a stream before the job: 5 events also in the batch source (at or before END), 6 after END
    early = [dict(e) for e in history[-5:]]
    early += [_event(rng, 1000 + n, END + timedelta(seconds=rng.randrange(1, 600))) for n in range(6)]
    # the stream after the job: later events (out of order within the lateness), and one at END - 1 s
    later = [_event(rng, 2000 + n, END + timedelta(seconds=rng.randrange(1, 3000))) for n in range(40)]
    stale = _event(rng, 3000, END - timedelta(seconds=1))
    offline = history + early[5:] + later  # what the offline source holds in the end
    path = write_parquet(pa.Table.from_pylist(history, schema=SCHEMA), tmp_path / "trips" / "part-0.parquet")
    table = trips_table(str(path.parent))
    if setup.endswith("-driver"):
        table = dataclasses.replace(table, expect=[pv.expect.row_count_between(max=1_000)])
    client.apply([RIDER, table])
    store = client._online_store
    lateness = timedelta(seconds=client.settings.stream.allowed_lateness_seconds)
    stream = TileWriter(store, table, allowed_lateness=lateness)
    assert (
        stream.apply(pa.Table.from_pylist(early, schema=SCHEMA), [0] * len(early), list(range(len(early)))).applied
        == 11
    )

    job = client.start_offline_to_online_ingestion("trips", start=END - timedelta(hours=3), end=END).wait()
    assert (job.validation is not None) is setup.endswith("-driver")

    after = [*later[:20], stale, *later[20:]]
    report = stream.apply(
        pa.Table.from_pylist(after, schema=SCHEMA), [0] * len(after), list(range(11, 11 + len(after)))
    )
    assert (report.applied, report.too_late, report.replayed) == (40, 1, 0)

    write_parquet(pa.Table.from_pylist(offline, schema=SCHEMA), tmp_path / "trips" / "part-0.parquet")
    refs = [f"trips:{a.name}" for a in AGGREGATIONS]
    times = [END, END + timedelta(minutes=3), END + timedelta(minutes=17), END + timedelta(minutes=30),
             END + timedelta(minutes=52), END + timedelta(minutes=80)]  # fmt: skip
    riders = [1, 2, 3]
    frame = pd.DataFrame(
        {"rider": [r for _ in times for r in riders], "event_timestamp": [t for t in times for _ in riders]}
    )
    historical = client.get_historical_features(refs, frame).to_arrow().to_pylist()
    for n, (at, rider) in enumerate((t, r) for t in times for r in riders):
        keys = encode_arrow_keys(pa.table({"rider": pa.array([rider], pa.int64())}), ["rider"])
        online = tiles.read_values(store, table, keys, _micros(at))[0]
        assert online is not None
        assert_matches_oracle(online, offline, rider, at)
        expected = [historical[n][f"trips__{a.name}"] for a in AGGREGATIONS]
        assert online == pytest.approx(expected), f"rider {rider} at {at}"
