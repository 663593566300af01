"""How an S3 object opened for DuckDB's Parquet reader is fetched (provender/offline/object_reads.py).

The client here is an in-memory stand-in for deltalake's object_store handle (the fetching
rules are the unit under test; tests/integration/test_s3_sources.py counts the same reads on a
real S3 server).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import pytest

from provender.offline.object_reads import FOOTER, MIN_FETCH, WHOLE_OBJECT, FetchedRanges, ObjectFile


class Objects:
    """Objects in memory; every fetch (a seek, then a read) is recorded as ``(key, start, length)``."""

    def __init__(self, **objects: bytes) -> None:
        self.objects = objects
        self.fetches: list[tuple[str, int, int]] = []
        self.delay = 0.0

    def opener(self, key: str) -> Callable[[], object]:
        objects = self

        class Handle:
            position = 0

            def seek(self, position: int) -> int:
                self.position = position
                return position

            def read(self, size: int) -> bytes:
                objects.fetches.append((key, self.position, size))
                time.sleep(objects.delay)
                return objects.objects[key][self.position : self.position + size]

            def close(self) -> None:
                pass

        return Handle

    def open(self, key: str, ranges: FetchedRanges) -> ObjectFile:
        return ObjectFile(self.opener(key), key, len(self.objects[key]), ranges)


def data(size: int) -> bytes:
    return random.Random(size).randbytes(size)


def read_at(file: ObjectFile, start: int, size: int) -> bytes:
    file.seek(start)
    return file.read(size)


def test_a_small_object_is_fetched_once_whole_for_every_handle_and_read() -> None:
    store, ranges = Objects(a=data(300_000)), FetchedRanges()
    footer = [read_at(store.open("a", ranges), 300_000 - 16_384, 16_384) for _ in range(4)]  # four binds
    scan = store.open("a", ranges)
    chunks = [read_at(scan, start, 14_000) for start in range(4, 280_000, 14_000)]
    assert store.fetches == [("a", 0, 300_000)]
    assert footer[0] == store.objects["a"][-16_384:] and all(f == footer[0] for f in footer)
    assert b"".join(chunks) == store.objects["a"][4 : 4 + 14_000 * len(chunks)]


def test_a_large_object_fetches_its_footer_then_small_reads_in_one_mebibyte_ranges() -> None:
    size = 4 * WHOLE_OBJECT
    store, ranges = Objects(a=data(size)), FetchedRanges()
    file = store.open("a", ranges)
    assert read_at(file, size - 8, 8) == store.objects["a"][-8:]
    assert read_at(file, size - 30_000, 22_000) == store.objects["a"][size - 30_000 : size - 8_000]
    assert store.fetches == [("a", size - FOOTER, FOOTER)]  # the metadata read after came from it
    # A narrow projection: 1 KB chunks 100 KB apart, one request per mebibyte, not one each.
    for start in range(0, 4 * MIN_FETCH, 100_000):
        assert read_at(file, start, 1_000) == store.objects["a"][start : start + 1_000]
    assert len(store.fetches) == 1 + 4
    # A large read is fetched as asked.
    assert read_at(file, 5 * MIN_FETCH, 2 * MIN_FETCH) == store.objects["a"][5 * MIN_FETCH : 7 * MIN_FETCH]
    assert store.fetches[-1] == ("a", 5 * MIN_FETCH, 2 * MIN_FETCH)


def test_reads_end_at_the_object_end_and_positions_are_per_thread() -> None:
    store, ranges = Objects(a=data(5_000)), FetchedRanges()
    file = store.open("a", ranges)
    assert read_at(file, 4_990, 100) == store.objects["a"][4_990:]
    assert file.read(10) == b""
    assert file.seek(-10, 2) == 4_990 and file.tell() == 4_990
    other: list[int] = []
    thread = threading.Thread(target=lambda: other.append(file.tell()))
    thread.start()
    thread.join()
    assert other == [0]  # another thread's position is its own


def test_concurrent_first_reads_of_an_object_share_one_fetch() -> None:
    store, ranges = Objects(a=data(400_000)), FetchedRanges()
    store.delay = 0.05
    file = store.open("a", ranges)
    results: dict[int, bytes] = {}

    def scan(start: int) -> None:
        results[start] = read_at(file, start, 10_000)

    threads = [threading.Thread(target=scan, args=(start,)) for start in range(0, 400_000, 40_000)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.fetches == [("a", 0, 400_000)]
    assert all(results[s] == store.objects["a"][s : s + 10_000] for s in results)


@pytest.mark.parametrize("seed", range(5))
def test_random_reads_return_the_object_bytes(seed: int) -> None:
    rng = random.Random(seed)
    objects = {"small": data(50_000), "large": data(WHOLE_OBJECT + 700_000)}
    store, ranges = Objects(**objects), FetchedRanges(limit=3 * MIN_FETCH)
    files = {key: store.open(key, ranges) for key in objects}
    for _ in range(300):
        key = rng.choice(list(objects))
        start = rng.randrange(len(objects[key]))
        size = rng.choice([1, 100, 10_000, 300_000, 2 * MIN_FETCH])
        assert read_at(files[key], start, size) == objects[key][start : start + size]


def test_kept_ranges_stay_within_the_limit() -> None:
    store, ranges = Objects(**{f"o{i}": data(100_000 + i) for i in range(10)}), FetchedRanges(limit=350_000)
    for key in store.objects:
        read_at(store.open(key, ranges), 0, 10)
    assert len(store.fetches) == 10
    read_at(store.open("o9", ranges), 0, 10)  # recent: still kept
    assert len(store.fetches) == 10
    read_at(store.open("o0", ranges), 50_000, 10)  # dropped long ago: fetched again (its footer)
    assert len(store.fetches) == 11


def test_past_half_the_limit_a_read_fetches_footers_first_and_a_forgotten_read_is_dropped() -> None:
    objects = {f"r/o{i}": data(100_000 + i) for i in range(6)}
    store, ranges = Objects(**objects), FetchedRanges(limit=500_000)
    for key in objects:  # binding: the footers
        read_at(store.open(key, ranges), len(objects[key]) - 1_000, 1_000)
    whole = [f for f in store.fetches if f[1] == 0]
    assert len(whole) == 3  # 300,000 bytes fetched whole: half the limit reached
    assert all(f[2] == FOOTER for f in store.fetches if f[1] != 0)  # then only the footers
    for key in objects:  # the scan: the rest comes whole, none twice of what is kept
        assert read_at(store.open(key, ranges), 10, 20_000) == objects[key][10:20_010]
    assert len(store.fetches) == 6 + 3
    ranges.forget("r")
    read_at(store.open("r/o5", ranges), 10, 10)
    assert store.fetches[-1] == ("r/o5", 0, len(objects["r/o5"]))  # a new first fetch: whole again
