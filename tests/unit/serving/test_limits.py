"""The request limits and the byte-bounded plan cache, over several sizes and shapes."""

from __future__ import annotations

import pytest

from provender.config import ServingSection
from provender.errors import RequestTooLargeError
from provender.online.read import PlanCache
from provender.serving.limits import RequestLimits

LIMITS = RequestLimits.of(
    ServingSection(max_feature_refs=3, max_entity_rows=4, max_entity_columns=2, max_value_depth=3)
)


def nested(depth: int, *, mapping: bool) -> object:
    value: object = "x"
    for _ in range(depth):
        value = {"k": value} if mapping else [value]
    return value


def test_requests_within_the_limits_pass() -> None:
    LIMITS.check(["a:b"] * 3, {"id": [1, 2, 3, 4], "note": [nested(3, mapping=True), [1], {}, None]})


@pytest.mark.parametrize("count", [4, 50, 100_000])
def test_refs_are_counted(count: int) -> None:
    with pytest.raises(RequestTooLargeError, match=rf"{count} feature refs.*serving\.max_feature_refs"):
        LIMITS.check(["t:f"] * count, {"id": [1]})


@pytest.mark.parametrize("rows", [5, 999])
@pytest.mark.parametrize("column", [0, 1])
def test_rows_are_counted_in_every_column(rows: int, column: int) -> None:
    entities: dict[str, list[object]] = {"a": [1], "b": [1]}
    entities["ab"[column]] = list(range(rows))
    with pytest.raises(RequestTooLargeError, match=r"serving\.max_entity_rows"):
        LIMITS.check(["t"], entities)


@pytest.mark.parametrize("columns", [3, 40])
def test_columns_are_counted(columns: int) -> None:
    with pytest.raises(RequestTooLargeError, match=r"serving\.max_entity_columns"):
        LIMITS.check(["t"], {f"c{i}": [1] for i in range(columns)})


@pytest.mark.parametrize("depth", [4, 30, 5000])
@pytest.mark.parametrize("mapping", [False, True])
def test_depth_is_bounded_without_recursion(depth: int, mapping: bool) -> None:
    with pytest.raises(RequestTooLargeError, match=r"serving\.max_value_depth"):
        LIMITS.check(["t"], {"id": [1, nested(depth, mapping=mapping)]})


@pytest.mark.parametrize("ref_length", [10, 1000, 100_000])
def test_plan_cache_is_bounded_by_bytes(ref_length: int) -> None:
    cache: PlanCache[int] = PlanCache(max_bytes=64 * 1024)
    for version in range(500):
        cache.put((version, ("r" * ref_length, f"t:{version}")), version)
        assert cache.size <= cache.max_bytes
    if ref_length * 4 > cache.max_bytes:
        assert len(cache) == 0  # too large to cache at all
    else:
        assert cache.get((499, ("r" * ref_length, "t:499"))) == 499


def test_many_refs_are_not_cached() -> None:
    cache: PlanCache[str] = PlanCache(max_bytes=64 * 1024)
    cache.put((1, ("driver_stats:trips",) * 100_000), "plan")
    assert len(cache) == 0 and cache.size == 0
