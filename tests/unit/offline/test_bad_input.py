"""Bad input to ``get_historical_features``: a clear error naming the culprit, before any engine runs.

Bad sources, and entity rows only the engine reads, are in the engine contract
(``tests/contract/test_offline_engine_sources.py``). Every error here is raised by
``get_historical_features`` itself, never later by ``to_arrow()`` (the join runs only there),
and before any source is read: the tests point the feature tables at a path that does not
exist, so reaching the sources would raise a different error.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

import provender as pv
from tests.support.builders import CUSTOMER, DRIVER, make_client, with_source_path
from tests.support.retrieval import AT, PAIRS, STATS, entities


@pytest.fixture
def sourceless(tmp_path: Path) -> Iterator[pv.Client]:
    """A project whose tables' sources do not exist: reaching them would raise 'does not exist'."""
    tables = [with_source_path(t, str(tmp_path / "missing" / t.name)) for t in (STATS, PAIRS)]
    with make_client(tmp_path / "project") as client:
        client.apply([DRIVER, CUSTOMER, *tables])
        yield client


# -- refs ------------------------------------------------------------------------------------------


def test_unknown_table_suggests_the_closest(sourceless: pv.Client) -> None:
    with pytest.raises(pv.FeatureTableNotFoundError, match=r"'driver_stat'.*Did you mean 'driver_stats'\?") as info:
        sourceless.get_historical_features(["driver_stat:trips"], entities())
    assert info.value.name == "driver_stat"
    assert isinstance(info.value, LookupError)


def test_unknown_table_without_a_close_name(sourceless: pv.Client) -> None:
    with pytest.raises(pv.FeatureTableNotFoundError, match="'weather'"):
        sourceless.get_historical_features(["weather"], entities())


def test_unknown_feature_suggests_the_closest(sourceless: pv.Client) -> None:
    with pytest.raises(pv.FeatureRefError, match=r"'driver_stats:trip'.*no feature 'trip'.*Did you mean 'trips'"):
        sourceless.get_historical_features(["driver_stats:trip"], entities())


def test_unknown_feature_lists_the_features(sourceless: pv.Client) -> None:
    with pytest.raises(pv.FeatureRefError, match="Its features: trips, conv_rate"):
        sourceless.get_historical_features(["driver_stats:weather"], entities())


@pytest.mark.parametrize("ref", ["a:b:c", "driver_stats:", ":trips", "", " driver_stats:trips", "driver_stats::trips"])
def test_malformed_ref(sourceless: pv.Client, ref: str) -> None:
    with pytest.raises(pv.FeatureRefError) as info:
        sourceless.get_historical_features(["driver_stats:trips", ref], entities())
    assert info.value.ref == ref
    assert repr(ref) in str(info.value)


@pytest.mark.parametrize("refs", ["driver_stats:trips", [], ()], ids=["a string", "empty list", "empty tuple"])
def test_refs_must_be_a_non_empty_list(sourceless: pv.Client, refs: object) -> None:
    with pytest.raises(pv.FeatureRefError, match="non-empty list"):
        sourceless.get_historical_features(refs, entities())  # type: ignore[arg-type]


def test_a_feature_requested_twice(sourceless: pv.Client) -> None:
    with pytest.raises(pv.FeatureRefError, match="'driver_stats:trips': requested twice"):
        sourceless.get_historical_features(["driver_stats", "driver_stats:trips"], entities())


# -- entity rows -----------------------------------------------------------------------------------


def test_missing_entity_column(sourceless: pv.Client) -> None:
    with pytest.raises(pv.DataError, match=r"no column 'customer_id'.*'pair_stats'"):
        sourceless.get_historical_features(["driver_stats:trips", "pair_stats:score"], entities(customer_id=None))


def test_missing_event_timestamp(sourceless: pv.Client) -> None:
    frame = entities(event_timestamp=None, ts=[AT, AT])
    with pytest.raises(pv.DataError, match=r"no 'event_timestamp' column \(columns: driver_id, customer_id, ts\)"):
        sourceless.get_historical_features(["driver_stats:trips"], frame)


def test_event_timestamp_of_the_wrong_type(sourceless: pv.Client) -> None:
    with pytest.raises(pv.DataError, match="'event_timestamp' column has type string; expected a timestamp"):
        sourceless.get_historical_features(["driver_stats:trips"], entities(event_timestamp=["2024-03-02"] * 2))


@pytest.mark.parametrize(
    ("column", "values", "found"),
    [
        ("driver_id", ["1", "2"], "string"),
        ("driver_id", [1.0, 2.0], "double"),
        ("driver_id", pd.array([1, 2], dtype="uint64"), "uint64"),
        ("customer_id", [1, 2], "int64"),
    ],
)
def test_entity_key_of_the_wrong_type(sourceless: pv.Client, column: str, values: object, found: str) -> None:
    with pytest.raises(
        pv.DataError,
        match=rf"Column '{column}' of the entity source has type {found}, but entity "
        rf"'{column}' is",
    ):
        sourceless.get_historical_features(["pair_stats:score"], entities(**{column: values}))


def test_an_entity_column_named_like_a_result_column(sourceless: pv.Client) -> None:
    with pytest.raises(pv.DataError, match="'driver_stats__trips'; rename them"):
        sourceless.get_historical_features(["driver_stats:trips"], entities(driver_stats__trips=[1, 2]))


@pytest.mark.parametrize(
    "source",
    [None, [{"driver_id": 1}], {"driver_id": [1]}, 42, pd.Series([1, 2])],
    ids=["None", "list", "dict", "int", "series"],
)
def test_entity_source_of_an_unsupported_type(sourceless: pv.Client, source: object) -> None:
    with pytest.raises(pv.DataError, match=rf"entity_source must be .* got {type(source).__name__}"):
        sourceless.get_historical_features(["driver_stats:trips"], source)


def test_garbage_entity_path(sourceless: pv.Client, tmp_path: Path) -> None:
    path = tmp_path / "entities.parquet"
    path.write_bytes(b"driver_id,event_timestamp\n1,2024-03-02\n")
    with pytest.raises(pv.DataError, match=rf"Cannot read the entity source '{path}' as Parquet"):
        sourceless.get_historical_features(["driver_stats:trips"], str(path))


def test_garbage_file_in_an_entity_directory(sourceless: pv.Client, tmp_path: Path) -> None:
    (tmp_path / "entities").mkdir()
    (tmp_path / "entities" / "part-0.parquet").write_bytes(b"junk")
    with pytest.raises(pv.DataError, match=r"Cannot read the entity source .*part-0\.parquet"):
        sourceless.get_historical_features(["driver_stats:trips"], tmp_path / "entities")


def test_missing_entity_path(sourceless: pv.Client, tmp_path: Path) -> None:
    with pytest.raises(pv.DataError, match=r"entity source .*nowhere\.parquet' does not exist"):
        sourceless.get_historical_features(["driver_stats:trips"], str(tmp_path / "nowhere.parquet"))


def test_entity_glob_matching_nothing(sourceless: pv.Client, tmp_path: Path) -> None:
    with pytest.raises(pv.DataError, match=r"glob .*\*\.parquet' matches no files"):
        sourceless.get_historical_features(["driver_stats:trips"], str(tmp_path / "*.parquet"))
