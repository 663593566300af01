"""Bad input to ``get_historical_features``: a clear error naming the culprit, before heavy work.

Every error here is raised by ``get_historical_features`` itself, never later by ``to_arrow()``
(the join runs only there). Errors about refs and entity columns must come before any source is
read: those tests point the feature table at a path that does not exist, so reaching the
sources would raise a different error.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import provender as pv
from tests.support.builders import make_client, source_schema, with_source_path, write_table

DRIVER = pv.Entity(name="driver_id", value_type=pv.ValueType.INT64)
CUSTOMER = pv.Entity(name="customer_id", value_type=pv.ValueType.STRING)
ENTITIES = {"driver_id": DRIVER, "customer_id": CUSTOMER}
AT = datetime(2024, 3, 2, tzinfo=UTC)

STATS = pv.FeatureTable(
    name="driver_stats",
    entities=["driver_id"],
    features=[pv.Feature("trips", pv.ValueType.INT64), pv.Feature("conv_rate", pv.ValueType.FLOAT)],
    batch_source=pv.FileSource(path="-", event_timestamp_column="event_ts"),
    max_age=timedelta(days=1),
)
PAIRS = pv.FeatureTable(
    name="pair_stats",
    entities=["driver_id", "customer_id"],
    features=[pv.Feature("score", pv.ValueType.DOUBLE)],
    batch_source=pv.FileSource(path="-", event_timestamp_column="event_ts"),
)
ROWS = [
    {
        "driver_id": 1,
        "customer_id": "a",
        "trips": 3,
        "conv_rate": 0.5,
        "score": 1.0,
        "event_ts": AT - timedelta(hours=1),
    }
]


def entities(**columns: object) -> pd.DataFrame:
    data: dict[str, object] = {"driver_id": [1, 2], "customer_id": ["a", "b"], "event_timestamp": [AT, AT]}
    data.update(columns)
    return pd.DataFrame({k: v for k, v in data.items() if v is not None})


@pytest.fixture
def client(tmp_path: Path) -> Iterator[pv.Client]:
    """A project whose tables are registered with real data."""
    tables = [write_table(t, ROWS, entities=ENTITIES, root=tmp_path / "data") for t in (STATS, PAIRS)]
    with make_client(tmp_path / "project") as client:
        client.apply([DRIVER, CUSTOMER, *tables])
        yield client


@pytest.fixture
def sourceless(tmp_path: Path) -> Iterator[pv.Client]:
    """A project whose tables' sources do not exist: reaching them would raise 'does not exist'."""
    tables = [with_source_path(t, str(tmp_path / "missing" / t.name)) for t in (STATS, PAIRS)]
    with make_client(tmp_path / "project") as client:
        client.apply([DRIVER, CUSTOMER, *tables])
        yield client


def test_the_fixture_data_is_good(client: pv.Client) -> None:
    result = client.get_historical_features(["driver_stats", "pair_stats"], entities()).to_pandas()
    assert result["driver_stats__trips"].tolist()[0] == 3


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


def test_narrower_entity_keys_are_accepted(client: pv.Client) -> None:
    frame = entities(driver_id=pd.array([1, 2], dtype="int32"))
    result = client.get_historical_features(["driver_stats:trips"], frame).to_pandas()
    assert result["driver_stats__trips"].tolist()[0] == 3


def test_an_entity_column_named_like_a_result_column(sourceless: pv.Client) -> None:
    with pytest.raises(pv.DataError, match="driver_stats__trips; rename them"):
        sourceless.get_historical_features(["driver_stats:trips"], entities(driver_stats__trips=[1, 2]))


@pytest.mark.parametrize("kind", ["pandas", "parquet"])
def test_null_event_timestamp_names_the_row(client: pv.Client, tmp_path: Path, kind: str) -> None:
    frame = pd.DataFrame({"driver_id": [1, 2, 3, 4], "event_timestamp": [AT, AT, None, None]})
    source: object = frame
    if kind == "parquet":
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "entities.parquet")
        source = str(tmp_path / "entities.parquet")
    with pytest.raises(pv.DataError, match=r"'event_timestamp' column is null in 2 row\(s\), the first at row 2"):
        client.get_historical_features(["driver_stats:trips"], source)


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


# -- sources ---------------------------------------------------------------------------------------


def test_missing_source_path_names_the_table(sourceless: pv.Client, tmp_path: Path) -> None:
    with pytest.raises(pv.DataError, match=r"Feature table 'driver_stats'.*'.*missing/driver_stats' does not exist"):
        sourceless.get_historical_features(["driver_stats:trips"], entities())


def test_source_directory_without_files(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with make_client(tmp_path / "project") as client:
        client.apply([DRIVER, with_source_path(STATS, str(tmp_path / "empty"))])
        with pytest.raises(pv.DataError, match=r"Feature table 'driver_stats'.*matches no \.parquet files"):
            client.get_historical_features(["driver_stats:trips"], entities())


def test_unreadable_source_file(tmp_path: Path) -> None:
    path = tmp_path / "stats.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    with make_client(tmp_path / "project") as client:
        client.apply([DRIVER, with_source_path(STATS, str(path))])
        with pytest.raises(
            pv.DataError, match=rf"Cannot read the batch source of feature table 'driver_stats' \({path}\)"
        ):
            client.get_historical_features(["driver_stats:trips"], entities())


@pytest.mark.parametrize(
    ("column", "found", "declared"),
    [
        ("trips", pa.string(), "int64"),
        ("trips", pa.float64(), "int64"),
        ("trips", pa.uint64(), "int64"),
        ("conv_rate", pa.float64(), "float"),
        ("driver_id", pa.string(), "int64"),
    ],
)
def test_source_column_of_the_wrong_type(tmp_path: Path, column: str, found: pa.DataType, declared: str) -> None:
    schema = source_schema(STATS, ENTITIES)
    schema = schema.set(schema.get_field_index(column), pa.field(column, found))
    rows = [{k: (str(v) if found == pa.string() and k == column else v) for k, v in row.items()} for row in ROWS]
    table = write_table(STATS, rows, entities=ENTITIES, root=tmp_path / "data", schema=schema)
    with make_client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        with pytest.raises(pv.DataError) as info:
            client.get_historical_features(["driver_stats:trips"], entities())
    message = str(info.value)
    assert f"Column '{column}'" in message
    assert "feature table 'driver_stats'" in message
    assert f"has type {found}, but {declared} is declared" in message


def test_source_event_timestamp_that_is_not_a_time(tmp_path: Path) -> None:
    schema = source_schema(STATS, ENTITIES, event_type=pa.string())
    rows = [dict(row, event_ts="2024-03-01") for row in ROWS]
    table = write_table(STATS, rows, entities=ENTITIES, root=tmp_path / "data", schema=schema)
    with make_client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        with pytest.raises(
            pv.DataError,
            match=r"Column 'event_ts' \(event timestamp\).*'driver_stats'.*"
            r"has type string, but a timestamp is declared",
        ):
            client.get_historical_features(["driver_stats:trips"], entities())


def test_source_missing_a_column(tmp_path: Path) -> None:
    schema = source_schema(STATS, ENTITIES)
    schema = schema.remove(schema.get_field_index("trips"))
    table = write_table(STATS, ROWS, entities=ENTITIES, root=tmp_path / "data", schema=schema)
    with make_client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        with pytest.raises(
            pv.DataError,
            match=r"'driver_stats'.* has no column 'trips' \(feature 'trips'\); "
            r"columns: driver_id, conv_rate, event_ts",
        ):
            client.get_historical_features(["driver_stats:trips"], entities())


def test_source_missing_its_created_column(tmp_path: Path) -> None:
    table = write_table(STATS, ROWS, entities=ENTITIES, root=tmp_path / "data")
    assert table.batch_source is not None
    table = with_source_path(table, table.batch_source.path, created_timestamp_column="created")
    with make_client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        with pytest.raises(pv.DataError, match=r"no column 'created' \(created timestamp\)"):
            client.get_historical_features(["driver_stats:trips"], entities())
