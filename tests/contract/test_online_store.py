"""The online store contract, run against every registered store (and Redis Cluster).

Stores come from the ``provender.online_stores`` entry points; each needs a provisioner below
that says how to give it a place to live (a file, a real Redis server). Tests that need more
than the contract select stores by ``capabilities``, never by name.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import random
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import provender as pv
from provender import backends
from provender.online.keys import KeyEncoder
from provender.online.store import AsyncReads, OnlineStore, ReadRequest
from tests.support.online import (
    ALL_TYPES_TABLE,
    BASE_TIME,
    DRIVER_STATS,
    SOURCE,
    at,
    batch,
    same,
)

Options = dict[str, object]
Provisioner = Callable[[pytest.FixtureRequest, Path], Options]


def _redis_url(request: pytest.FixtureRequest, tmp_path: Path) -> Options:
    return {"url": request.getfixturevalue("redis_server").url}


def _cluster_url(request: pytest.FixtureRequest, tmp_path: Path) -> Options:
    return {"url": request.getfixturevalue("redis_cluster").url, "cluster": True}


# How to give each registered store a place to live; variants run a store in another mode.
PROVISIONERS: dict[str, Provisioner] = {
    "memory": lambda request, tmp_path: {},
    "sqlite": lambda request, tmp_path: {"path": str(tmp_path / "online.db")},
    "redis": _redis_url,
}
VARIANTS: dict[str, tuple[str, Provisioner]] = {"redis-cluster": ("redis", _cluster_url)}
NEEDS_SERVER = {"redis", "redis-cluster"}


def _cases() -> list[Any]:
    names = sorted(backends.available(backends.Role.ONLINE_STORE))
    cases = [*names, *(variant for variant, (base, _) in VARIANTS.items() if base in names)]
    return [pytest.param(case, id=case, marks=[pytest.mark.service] if case in NEEDS_SERVER else []) for case in cases]


@dataclass(frozen=True)
class StoreCase:
    """A store under test: its backend and options; ``open`` gives a store for a project."""

    backend: str
    options: Options
    base_dir: Path
    opened: list[OnlineStore]

    @property
    def cls(self) -> type[OnlineStore]:
        store_cls: type[OnlineStore] = backends.load_backend(backends.Role.ONLINE_STORE, self.backend)
        return store_cls

    def open(self, project: str | None = None, **extra: object) -> OnlineStore:
        store = self.cls.from_options(
            {**self.options, **extra}, base_dir=self.base_dir, project=project or fresh_project()
        )
        self.opened.append(store)
        return store


def fresh_project() -> str:
    """A project name no other test uses (the Redis servers are shared by the session)."""
    return "p" + uuid.uuid4().hex[:12]


@pytest.fixture(params=_cases())
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreCase]:
    name = request.param
    backend, provision = VARIANTS.get(name, (name, PROVISIONERS.get(name)))
    if provision is None:
        pytest.fail(f"online store {name!r} is registered but has no provisioner in {__name__}.PROVISIONERS")
    opened: list[OnlineStore] = []
    yield StoreCase(backend=backend, options=provision(request, tmp_path), base_dir=tmp_path, opened=opened)
    for store in opened:
        store.close()


@pytest.fixture
def store(case: StoreCase) -> OnlineStore:
    return case.open()


_ids = itertools.count(1)


def next_ids(n: int) -> list[int]:
    """Driver ids not used before in this process (so Hypothesis examples never collide)."""
    return [next(_ids) for _ in range(n)]


def keys_of(*ids: int) -> list[bytes]:
    return KeyEncoder([("driver_id", pv.ValueType.INT64)]).encode_rows([{"driver_id": i} for i in ids])


def read_one(store: OnlineStore, table: pv.FeatureTable, ids: list[int]) -> list[list[object] | None]:
    [rows] = store.read([ReadRequest(table, keys_of(*ids))])
    return [None if row is None else row.values for row in rows]


# ----------------------------------------------------------------------------- round trips

_FLOAT32 = st.floats(width=32)
_SCALARS: dict[pv.ValueType, st.SearchStrategy[Any]] = {
    pv.ValueType.BOOL: st.booleans(),
    pv.ValueType.INT32: st.integers(-(2**31), 2**31 - 1),
    pv.ValueType.INT64: st.integers(-(2**63), 2**63 - 1),
    pv.ValueType.FLOAT: _FLOAT32,
    pv.ValueType.DOUBLE: st.floats(),
    pv.ValueType.STRING: st.text(),
    pv.ValueType.BYTES: st.binary(),
    pv.ValueType.UNIX_TIMESTAMP: st.datetimes(timezones=st.just(UTC)),
}


def value_strategy(value_type: pv.ValueType) -> st.SearchStrategy[Any]:
    if value_type.is_list:
        return st.none() | st.lists(st.none() | _SCALARS[value_type.element], max_size=4)
    return st.none() | _SCALARS[value_type]


ALL_TYPES_ROW = st.fixed_dictionaries({f.name: value_strategy(f.value_type) for f in ALL_TYPES_TABLE.features})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(ALL_TYPES_ROW, min_size=1, max_size=8))
def test_every_value_type_round_trips_exactly(store: OnlineStore, rows: list[dict[str, object]]) -> None:
    ids = next_ids(len(rows))
    data = batch(ALL_TYPES_TABLE, [{**row, "driver_id": i} for row, i in zip(rows, ids, strict=True)])
    expected = [[data.column(f.name)[n].as_py() for f in ALL_TYPES_TABLE.features] for n in range(len(rows))]

    assert store.write(ALL_TYPES_TABLE, data) == len(rows)

    got = read_one(store, ALL_TYPES_TABLE, ids)
    assert all(row is not None for row in got)
    for want, have in zip(expected, got, strict=True):
        assert have is not None
        assert all(same(w, h) for w, h in zip(want, have, strict=True)), (want, have)


def test_timestamps_come_back_utc_aware(store: OnlineStore) -> None:
    [i] = next_ids(1)
    when = at(0.000001)
    store.write(ALL_TYPES_TABLE, batch(ALL_TYPES_TABLE, [{"driver_id": i, "f_unix_timestamp": when}]))
    [values] = read_one(store, ALL_TYPES_TABLE, [i])
    assert values is not None
    stamp = values[ALL_TYPES_TABLE.feature_names.index("f_unix_timestamp")]
    assert isinstance(stamp, datetime)
    assert stamp == when and stamp.tzinfo is not None and stamp.utcoffset() == timedelta(0)


KEY_TYPES = (pv.ValueType.INT32, pv.ValueType.INT64, pv.ValueType.STRING, pv.ValueType.BYTES, pv.ValueType.BOOL)
COMPOSITE_ENTITIES = {f"k_{t.lower()}": pv.Entity(name=f"k_{t.lower()}", value_type=t) for t in KEY_TYPES}
COMPOSITE_TABLE = pv.FeatureTable(
    name="composite",
    entities=list(reversed(COMPOSITE_ENTITIES)),  # declaration order differs from key order
    features=[pv.Feature("value", pv.ValueType.INT64)],
    batch_source=SOURCE,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    keys=st.lists(
        st.fixed_dictionaries(
            {
                "k_int32": st.integers(-(2**31), 2**31 - 1),
                "k_int64": st.integers(-(2**63), 2**63 - 1),
                "k_string": st.text(),
                "k_bytes": st.binary(),
                "k_bool": st.booleans(),
            }
        ),
        min_size=1,
        max_size=6,
        unique_by=lambda k: tuple(k.values()),
    )
)
def test_composite_keys_of_every_key_type_find_their_rows(store: OnlineStore, keys: list[dict[str, Any]]) -> None:
    project_store = store
    values = next_ids(len(keys))  # fresh values: keys may repeat across examples
    rows = [{**key, "value": value} for key, value in zip(keys, values, strict=True)]
    project_store.write(COMPOSITE_TABLE, batch(COMPOSITE_TABLE, rows, entities=COMPOSITE_ENTITIES))

    encoder = KeyEncoder([(e.name, e.value_type) for e in COMPOSITE_ENTITIES.values()])
    [got] = project_store.read([ReadRequest(COMPOSITE_TABLE, encoder.encode_rows(keys))])
    assert [None if row is None else row.values for row in got] == [[v] for v in values]


# ----------------------------------------------------------------------------- the event-time guard


def write_stats(store: OnlineStore, i: int, trips: int, event_s: float, created_s: float | None = None) -> int:
    row: dict[str, object] = {"driver_id": i, "trips": trips, "event_timestamp": at(event_s)}
    if created_s is not None:
        row["created_timestamp"] = at(created_s)
    return store.write(DRIVER_STATS, batch(DRIVER_STATS, [row]))


def trips_of(store: OnlineStore, i: int) -> object:
    [values] = read_one(store, DRIVER_STATS, [i])
    return None if values is None else values[2]


def test_an_older_write_never_replaces_a_newer_value(store: OnlineStore) -> None:
    [i] = next_ids(1)
    assert write_stats(store, i, trips=2, event_s=20) == 1
    assert write_stats(store, i, trips=1, event_s=10) == 0
    assert trips_of(store, i) == 2
    assert write_stats(store, i, trips=3, event_s=30) == 1
    assert trips_of(store, i) == 3


def test_equal_event_times_are_ordered_by_created_time(store: OnlineStore) -> None:
    [i, j] = next_ids(2)
    write_stats(store, i, trips=2, event_s=10, created_s=12)
    assert write_stats(store, i, trips=1, event_s=10, created_s=11) == 0
    assert write_stats(store, i, trips=0, event_s=10, created_s=None) == 0  # a missing created time ranks lowest
    assert trips_of(store, i) == 2
    write_stats(store, j, trips=1, event_s=10, created_s=None)
    assert write_stats(store, j, trips=2, event_s=10, created_s=5) == 1
    assert trips_of(store, j) == 2


def test_an_equal_version_is_overwritten(store: OnlineStore) -> None:
    [i] = next_ids(1)
    write_stats(store, i, trips=1, event_s=10, created_s=10)
    assert write_stats(store, i, trips=2, event_s=10, created_s=10) == 1
    assert trips_of(store, i) == 2


def test_within_a_batch_the_newest_row_per_key_wins(store: OnlineStore) -> None:
    [i, j] = next_ids(2)
    rows = [
        {"driver_id": i, "trips": 1, "event_timestamp": at(10)},
        {"driver_id": j, "trips": 10, "event_timestamp": at(5), "created_timestamp": at(9)},
        {"driver_id": i, "trips": 3, "event_timestamp": at(30)},
        {"driver_id": j, "trips": 11, "event_timestamp": at(5), "created_timestamp": at(8)},
        {"driver_id": i, "trips": 2, "event_timestamp": at(20)},
        {"driver_id": j, "trips": 12, "event_timestamp": at(5)},
    ]
    assert store.write(DRIVER_STATS, batch(DRIVER_STATS, rows)) == 2
    assert [trips_of(store, i), trips_of(store, j)] == [3, 10]


def test_identical_versions_in_a_batch_keep_the_last(store: OnlineStore) -> None:
    [i] = next_ids(1)
    rows = [{"driver_id": i, "trips": n, "event_timestamp": at(10)} for n in range(5)]
    store.write(DRIVER_STATS, batch(DRIVER_STATS, rows))
    assert trips_of(store, i) == 4


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    versions=st.lists(st.tuples(st.integers(0, 5), st.none() | st.integers(0, 3)), min_size=1, max_size=12),
    batch_size=st.integers(1, 4),
)
def test_any_order_of_writes_converges_to_the_newest(
    store: OnlineStore, versions: list[tuple[int, int | None]], batch_size: int
) -> None:
    [i] = next_ids(1)
    rows = [
        {
            "driver_id": i,
            "trips": n,
            "event_timestamp": at(event),
            **({} if created is None else {"created_timestamp": at(created)}),
        }
        for n, (event, created) in enumerate(versions)
    ]
    for start in range(0, len(rows), batch_size):
        store.write(DRIVER_STATS, batch(DRIVER_STATS, rows[start : start + batch_size]))
    rank = [(event, -1 if created is None else created, n) for n, (event, created) in enumerate(versions)]
    assert trips_of(store, i) == max(rank)[2]


# ----------------------------------------------------------------------------- reads


def test_one_read_serves_several_tables_missing_keys_and_duplicates(store: OnlineStore) -> None:
    [a, b, missing] = next_ids(3)
    store.write(DRIVER_STATS, batch(DRIVER_STATS, [{"driver_id": a, "trips": 1}, {"driver_id": b, "trips": 2}]))
    store.write(ALL_TYPES_TABLE, batch(ALL_TYPES_TABLE, [{"driver_id": b, "f_int64": 7}]))

    stats, types = store.read(
        [ReadRequest(DRIVER_STATS, keys_of(b, missing, a, b)), ReadRequest(ALL_TYPES_TABLE, keys_of(a, b))]
    )
    assert [None if r is None else r.values[2] for r in stats] == [2, None, 1, 2]
    assert types[0] is None
    assert types[1] is not None and types[1].values[ALL_TYPES_TABLE.feature_names.index("f_int64")] == 7
    assert stats[0] is not None and stats[0].event_us == int(BASE_TIME.timestamp()) * 1_000_000
    assert store.read([]) == []
    assert store.read([ReadRequest(DRIVER_STATS, [])]) == [[]]


@pytest.mark.parametrize("count", [2, 3, 5, 100, 127, 2047, 2048, 2049, 4500])
def test_a_read_of_any_size_answers_every_key_in_order(store: OnlineStore, count: int) -> None:
    """Sizes around the SQLite store's statement buckets and query chunks, with repeats and misses."""
    ids = next_ids(count)
    store.write(DRIVER_STATS, batch(DRIVER_STATS, [{"driver_id": i, "trips": i} for i in ids[::2]]))
    order = random.Random(count).sample(ids, count)
    asked = [*order[: count // 2], *order[: count // 4], *order[count // 2 :]][:count]  # repeats, then the rest
    [stats] = store.read([ReadRequest(DRIVER_STATS, keys_of(*asked))])
    stored = set(ids[::2])
    assert [None if r is None else r.values[2] for r in stats] == [i if i in stored else None for i in asked]


def test_an_async_read_answers_exactly_what_the_blocking_read_does(store: OnlineStore) -> None:
    if not store.capabilities.async_reads:
        pytest.skip("this store has no async_reads capability")
    ids = next_ids(3000)
    store.write(DRIVER_STATS, batch(DRIVER_STATS, [{"driver_id": i, "trips": i} for i in ids[:2500:2]]))
    store.write(ALL_TYPES_TABLE, batch(ALL_TYPES_TABLE, [{"driver_id": ids[1], "f_int64": 7}]))
    requests = [ReadRequest(DRIVER_STATS, keys_of(*ids)), ReadRequest(ALL_TYPES_TABLE, keys_of(ids[1], ids[0]))]
    reader = cast(AsyncReads, store)
    expected = store.read(requests)
    assert [None if r is None else r.values[2] for r in expected[0]][:4] == [ids[0], None, ids[2], None]

    async def check() -> None:
        # More keys than one MGET takes, and several reads in flight on one connection.
        answers = await asyncio.gather(*(reader.read_async(requests[i % 2 :]) for i in range(6)))
        for number, answer in enumerate(answers):
            assert answer == expected[number % 2 :]
        assert await reader.read_async([ReadRequest(DRIVER_STATS, [])]) == [[]]
        store.close()  # on the loop: its connection belongs to it

    asyncio.run(check())


def test_projects_are_separate(case: StoreCase) -> None:
    project = fresh_project()
    first, same_project, other = case.open(project), case.open(project), case.open()
    [i] = next_ids(1)
    write_stats(first, i, trips=1, event_s=1)
    if first.capabilities.is_shared:
        assert trips_of(same_project, i) == 1
    assert trips_of(other, i) is None


def test_a_row_written_under_another_schema_reads_as_missing(store: OnlineStore) -> None:
    [i] = next_ids(1)
    write_stats(store, i, trips=1, event_s=1)
    changed = pv.FeatureTable(
        name=DRIVER_STATS.name,
        entities=["driver_id"],
        features=[*DRIVER_STATS.features, pv.Feature("rating", pv.ValueType.DOUBLE)],
        batch_source=SOURCE,
    )
    assert read_one(store, changed, [i]) == [None]


def test_delete_table_removes_only_that_table(store: OnlineStore) -> None:
    [i] = next_ids(1)
    write_stats(store, i, trips=1, event_s=1)
    store.write(ALL_TYPES_TABLE, batch(ALL_TYPES_TABLE, [{"driver_id": i}]))
    assert store.delete_table(DRIVER_STATS) >= 1
    assert trips_of(store, i) is None
    assert read_one(store, ALL_TYPES_TABLE, [i]) != [None]


# ----------------------------------------------------------------------------- freshness


def test_freshness_is_the_newest_event_written_and_the_last_write(case: StoreCase) -> None:
    project = fresh_project()
    store, other = case.open(project), case.open()
    assert store.freshness(["driver_stats", "all_types"]) == {}
    [i, j] = next_ids(2)
    before = datetime.now(UTC)
    rows = [
        {"driver_id": i, "trips": 1, "event_timestamp": at(20)},
        {"driver_id": j, "trips": 2, "event_timestamp": at(5)},
    ]
    store.write(DRIVER_STATS, batch(DRIVER_STATS, rows))
    first = store.freshness(["driver_stats", "all_types", "driver_stats"])
    assert set(first) == {"driver_stats"} and first["driver_stats"].newest_event == at(20)
    assert before <= first["driver_stats"].written_at <= datetime.now(UTC)

    write_stats(store, j, trips=3, event_s=10)  # an older batch: the newest event stays, the write time moves
    second = store.freshness(["driver_stats"])["driver_stats"]
    assert second.newest_event == at(20) and second.written_at >= first["driver_stats"].written_at
    write_stats(store, j, trips=4, event_s=30.000001)
    assert store.freshness(["driver_stats"])["driver_stats"].newest_event == at(30.000001)
    store.write(ALL_TYPES_TABLE, batch(ALL_TYPES_TABLE, [{"driver_id": i, "event_timestamp": at(-86400 * 365 * 60)}]))
    assert store.freshness(["all_types"])["all_types"].newest_event == at(-86400 * 365 * 60)  # before 1970
    if store.capabilities.is_shared:
        assert case.open(project).freshness(["driver_stats"])["driver_stats"].newest_event == at(30.000001)
    assert other.freshness(["driver_stats", "all_types"]) == {}  # projects are separate

    store.delete_table(DRIVER_STATS)
    assert set(store.freshness(["driver_stats", "all_types"])) == {"all_types"}
    assert store.freshness([]) == {}


def test_freshness_of_many_tables_is_one_cheap_read(store: OnlineStore) -> None:
    names = [f"t{n:04d}" for n in range(2500)]  # more than one SQL IN (...) chunk
    [i] = next_ids(1)
    for n in (0, 2499):
        table = pv.FeatureTable(
            name=names[n], entities=["driver_id"], features=DRIVER_STATS.features, batch_source=SOURCE
        )
        store.write(table, batch(table, [{"driver_id": i, "trips": n, "event_timestamp": at(n)}]))
    found = store.freshness(names)
    assert {name: f.newest_event for name, f in found.items()} == {"t0000": at(0), "t2499": at(2499)}


def test_values_survive_reopening_when_the_store_is_persistent(case: StoreCase) -> None:
    project = fresh_project()
    first = case.open(project)
    if not first.capabilities.is_persistent:
        pytest.skip(f"{case.backend} keeps values only while it is open")
    [i] = next_ids(1)
    write_stats(first, i, trips=4, event_s=1)
    first.close()
    case.opened.remove(first)
    assert trips_of(case.open(project), i) == 4


def test_ping(store: OnlineStore) -> None:
    store.ping()


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.drop_columns(["trips"]), "lack the column 'trips'"),
        (lambda t: t.drop_columns(["driver_id"]), "entity column 'driver_id'"),
        (lambda t: t.drop_columns(["event_timestamp"]), "'event_timestamp'"),
        (
            lambda t: t.set_column(0, "driver_id", pa.array([1, None], pa.int64())),
            "null in 1 row(s), the first at row 1",
        ),
        (lambda t: t.set_column(3, "trips", pa.array(["x", "y"])), "column 'trips'"),
        (
            lambda t: t.set_column(4, "event_timestamp", pa.array([None, BASE_TIME], pa.timestamp("us", "UTC"))),
            "the first at row 0",
        ),
    ],
)
def test_bad_batches_fail_naming_the_problem_and_write_nothing(
    store: OnlineStore, change: Callable[[pa.Table], pa.Table], message: str
) -> None:
    [i, j] = next_ids(2)
    good = batch(DRIVER_STATS, [{"driver_id": i, "trips": 1}, {"driver_id": j, "trips": 2}])
    with pytest.raises(pv.DataError, match=_escape(message)):
        store.write(DRIVER_STATS, change(good))
    assert read_one(store, DRIVER_STATS, [i, j]) == [None, None]


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def test_castable_column_types_are_accepted(store: OnlineStore) -> None:
    [i] = next_ids(1)
    data = batch(DRIVER_STATS, [{"driver_id": i, "trips": 5}])
    data = data.set_column(0, "driver_id", pa.array([i], pa.int32()))
    data = data.set_column(3, "trips", pa.array([5], pa.int32()))
    data = data.set_column(4, "event_timestamp", pa.array([BASE_TIME.replace(tzinfo=None)], pa.timestamp("ns")))
    data = data.drop_columns(["created_timestamp"])
    assert store.write(DRIVER_STATS, data) == 1
    assert trips_of(store, i) == 5


def test_an_empty_batch_writes_nothing(store: OnlineStore) -> None:
    assert store.write(DRIVER_STATS, batch(DRIVER_STATS, [])) == 0


def test_unknown_options_fail_with_a_hint(case: StoreCase) -> None:
    with pytest.raises(pv.ConfigError, match=r"online\.pathh"):
        case.cls.from_options({**case.options, "pathh": "x"}, base_dir=case.base_dir)


# ----------------------------------------------------------------------------- racing processes

RACE_KEYS = 200
RACE_ROUNDS = 30


def race_writer(
    backend: str, options: Mapping[str, object], base_dir: str, project: str, seed: int, start: Any
) -> None:
    """Write every key RACE_ROUNDS times with random versions, in random order (runs in a child)."""
    store_cls: type[OnlineStore] = backends.load_backend(backends.Role.ONLINE_STORE, backend)
    store = store_cls.from_options(options, base_dir=Path(base_dir), project=project)
    rng = random.Random(seed)
    start.wait()
    try:
        for _ in range(RACE_ROUNDS):
            ids = list(range(1, RACE_KEYS + 1))
            rng.shuffle(ids)
            rows = [_race_row(i, rng.randrange(1000), seed) for i in ids[: RACE_KEYS // 2]]
            store.write(DRIVER_STATS, batch(DRIVER_STATS, rows))
    finally:
        store.close()


def _race_row(i: int, event: int, seed: int) -> dict[str, object]:
    # The value records who wrote which version, so the winner can be checked exactly.
    return {"driver_id": i, "trips": event * 10 + seed, "event_timestamp": at(event), "created_timestamp": at(seed)}


def test_two_processes_racing_converge_to_the_newest_values(case: StoreCase) -> None:
    if not case.open().capabilities.is_shared:
        pytest.skip(f"{case.backend} is not shared between processes")
    project = fresh_project()
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    seeds = (1, 2)
    writers = [
        context.Process(target=race_writer, args=(case.backend, case.options, str(case.base_dir), project, seed, start))
        for seed in seeds
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0

    # Replay both writers' random choices to know every version written per key.
    best: dict[int, tuple[int, int]] = {}
    for seed in seeds:
        rng = random.Random(seed)
        for _ in range(RACE_ROUNDS):
            ids = list(range(1, RACE_KEYS + 1))
            rng.shuffle(ids)
            for i in ids[: RACE_KEYS // 2]:
                version = (rng.randrange(1000), seed)
                best[i] = max(best.get(i, version), version)
    store = case.open(project)
    got = read_one(store, DRIVER_STATS, sorted(best))
    assert [None if v is None else v[2] for v in got] == [
        event * 10 + seed for _, (event, seed) in sorted(best.items())
    ]
