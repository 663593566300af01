"""``client.get_statistics`` against numpy/pandas on the same rows, on every offline engine.

Exact statistics are compared exactly (counts, min, max, quantiles, histograms, top values,
lengths) and means/standard deviations to a relative 1e-9 (summation order).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import provender as pv
from provender.offline import statistics_sql
from provender.offline.statistics import HISTOGRAM_BINS, QUANTILES, TOP_VALUES, TableStatistics
from tests.support.builders import DRIVER, write_parquet
from tests.support.engines import EngineCase

START = datetime(2026, 1, 1, tzinfo=UTC)
END = START + timedelta(days=10)
ROWS = 3000

TABLE = pv.FeatureTable(
    name="driver_statistics",
    entities=["driver_id"],
    features=[
        pv.Feature("conv_rate", pv.ValueType.DOUBLE),
        pv.Feature("trips", pv.ValueType.INT64),
        pv.Feature("ratio", pv.ValueType.FLOAT),
        pv.Feature("active", pv.ValueType.BOOL),
        pv.Feature("city", pv.ValueType.STRING),
        pv.Feature("payload", pv.ValueType.BYTES),
        pv.Feature("recent", pv.ValueType.INT64_LIST),
        pv.Feature("seen", pv.ValueType.UNIX_TIMESTAMP),
    ],
    batch_source=pv.FileSource(path="-", event_timestamp_column="event_ts"),
)


def _rows(rng: np.random.Generator) -> pd.DataFrame:
    """ROWS rows in the window and 200 outside it (before and at ``END``), with nulls and NaNs."""
    n = ROWS + 200
    events = [START + timedelta(seconds=int(s)) for s in rng.integers(0, 10 * 86400, n)]
    events[:100] = [START - timedelta(seconds=1)] * 100
    events[100:200] = [END] * 100
    conv = rng.normal(0.5, 0.2, n)
    conv[rng.random(n) < 0.1] = 0.0
    trips = rng.integers(0, 50, n)
    ratio = rng.random(n).astype(np.float32)
    ratio[:300:7] = np.nan
    cities = np.array(["paris", "lyon", "nice", "lille", "brest", "caen", "metz", "pau", "albi", "agen", "sète", "dax"])
    city = cities[np.minimum(rng.geometric(0.25, n) - 1, len(cities) - 1)].astype(object)
    frame = pd.DataFrame(
        {
            "driver_id": rng.integers(0, 100, n),
            "event_ts": pd.to_datetime(events, utc=True),
            "conv_rate": conv,
            "trips": trips,
            "ratio": ratio,
            "active": rng.random(n) < 0.3,
            "city": city,
            "payload": [bytes(rng.integers(0, 4, int(k)).astype(np.uint8)) for k in rng.integers(0, 6, n)],
            "recent": [list(rng.integers(0, 9, int(k))) for k in rng.integers(0, 5, n)],
            "seen": pd.to_datetime(events, utc=True),
        }
    )
    for column in ("conv_rate", "trips", "city", "payload", "recent", "seen"):
        frame.loc[rng.random(n) < 0.05, column] = None
    return frame


@pytest.fixture
def data(tmp_path: Path, engine: EngineCase) -> Iterator[tuple[pv.Client, pd.DataFrame]]:
    frame = _rows(np.random.default_rng(7))
    schema = pa.schema(
        [
            ("driver_id", pa.int64()),
            ("event_ts", pa.timestamp("us", tz="UTC")),
            *((f.name, f.value_type.to_arrow()) for f in TABLE.features),
        ]
    )
    arrow = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    ratio = pa.array(frame["ratio"].to_numpy(), type=pa.float32())  # NaN kept as NaN, not null
    arrow = arrow.set_column(arrow.schema.get_field_index("ratio"), "ratio", ratio)
    path = write_parquet(arrow, tmp_path / "stats.parquet")
    assert TABLE.batch_source is not None
    table = pv.FeatureTable(
        name=TABLE.name,
        entities=list(TABLE.entities),
        features=list(TABLE.features),
        batch_source=pv.FileSource(path=str(path), event_timestamp_column="event_ts"),
    )
    with engine.client(tmp_path / "project") as client:
        client.apply([DRIVER, table])
        in_window = frame[(frame.event_ts >= START) & (frame.event_ts < END)]
        assert len(in_window) == ROWS
        yield client, in_window.reset_index(drop=True)


def _close(found: float | None, expected: float) -> None:
    assert found is not None
    assert math.isclose(found, expected, rel_tol=1e-9, abs_tol=1e-12), (found, expected)


def _check_number(stats: TableStatistics, name: str, values: pd.Series) -> None:
    f = stats[name]
    present = values.dropna().astype("float64").to_numpy()
    assert f.kind == "number"
    assert f.count + f.null_count == ROWS
    _close(f.mean, float(present.mean()))
    _close(f.std, float(present.std(ddof=1)))
    assert f.min == present.min()
    assert f.max == present.max()
    assert f.zeros == int((present == 0).sum())
    assert f.quantiles == tuple(float(q) for q in np.quantile(present, QUANTILES))
    assert f.histogram is not None
    assert len(f.histogram.counts) == HISTOGRAM_BINS
    assert f.histogram.edges == tuple(np.linspace(present.min(), present.max(), HISTOGRAM_BINS + 1))
    counts, _ = np.histogram(present, bins=np.array(f.histogram.edges))
    assert f.histogram.counts == tuple(int(c) for c in counts)


def test_numbers_match_numpy(data: tuple[pv.Client, pd.DataFrame]) -> None:
    client, rows = data
    stats = client.get_statistics("driver_statistics", start=START, end=END)
    assert stats.rows == ROWS
    for name in ("conv_rate", "trips"):
        _check_number(stats, name, rows[name])
        assert stats[name].null_count == int(rows[name].isna().sum())
    _check_number(stats, "active", rows["active"].astype("float64"))
    assert stats["active"].mean == pytest.approx(rows["active"].mean(), rel=1e-12)


def test_numbers_match_numpy_when_binned(data: tuple[pv.Client, pd.DataFrame], monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the collect limit, quantiles are selected through fine bins: still numpy's to the bit."""
    monkeypatch.setattr(statistics_sql, "_COLLECT_LIMIT", 50)
    client, rows = data
    stats = client.get_statistics("driver_statistics", start=START, end=END, features=["conv_rate", "ratio"])
    _check_number(stats, "conv_rate", rows["conv_rate"])
    _check_number(stats, "ratio", rows["ratio"])


def test_nan_is_counted_apart(data: tuple[pv.Client, pd.DataFrame]) -> None:
    client, rows = data
    ratio = client.get_statistics("driver_statistics", start=START, end=END, features=["ratio"])["ratio"]
    assert ratio.nan_count == int(rows["ratio"].isna().sum()) > 0
    assert ratio.null_count == 0
    _check_number(
        client.get_statistics("driver_statistics", start=START, end=END, features=["ratio"]), "ratio", rows["ratio"]
    )


@pytest.mark.parametrize("name", ["city", "payload"])
def test_strings_and_bytes_match_pandas(data: tuple[pv.Client, pd.DataFrame], name: str) -> None:
    client, rows = data
    f = client.get_statistics("driver_statistics", start=START, end=END, features=[name])[name]
    present = rows[name].dropna()
    assert (f.count, f.null_count) == (len(present), ROWS - len(present))
    assert f.distinct_count == present.nunique()
    lengths = present.map(len)
    assert (f.min_length, f.max_length) == (lengths.min(), lengths.max())
    _close(f.mean_length, float(lengths.mean()))
    counts = present.map(lambda v: v.hex() if isinstance(v, bytes) else v).value_counts()
    expected = sorted(counts.items(), key=lambda item: (-item[1], item[0].encode() if name == "payload" else item[0]))
    if name == "payload":  # DuckDB orders blobs bytewise, the same order as their hex
        expected = sorted(counts.items(), key=lambda item: (-item[1], bytes.fromhex(item[0])))
    assert f.top_values == tuple((v, int(c)) for v, c in expected[:TOP_VALUES])


def test_lists_and_timestamps(data: tuple[pv.Client, pd.DataFrame]) -> None:
    client, rows = data
    stats = client.get_statistics("driver_statistics", start=START, end=END, features=["recent", "seen"])
    lengths = rows["recent"].dropna().map(len)
    recent = stats["recent"]
    assert (recent.count, recent.min_length, recent.max_length) == (len(lengths), lengths.min(), lengths.max())
    _close(recent.mean_length, float(lengths.mean()))
    seen = stats["seen"]
    assert (seen.kind, seen.count, seen.null_count) == (
        "timestamp",
        rows["seen"].notna().sum(),
        rows["seen"].isna().sum(),
    )
    assert [f.name for f in stats.features] == ["recent", "seen"]


def test_result_forms(data: tuple[pv.Client, pd.DataFrame]) -> None:
    client, _ = data
    stats = client.get_statistics("driver_statistics", start=START, end=END)
    assert TableStatistics.from_dict(stats.to_dict()) == stats
    arrow = stats.to_arrow()
    assert arrow.num_rows == len(TABLE.features)
    assert arrow.column("name").to_pylist() == [f.name for f in TABLE.features]
    assert arrow.column("p50").to_pylist()[0] == stats["conv_rate"].quantile(0.5)
    text = repr(stats)
    assert text.startswith("TableStatistics('driver_statistics'")
    assert "conv_rate (DOUBLE): count=" in text and "distinct=" in text


def test_empty_window_and_bad_requests(data: tuple[pv.Client, pd.DataFrame]) -> None:
    client, _ = data
    empty = client.get_statistics("driver_statistics", start=END + timedelta(days=1), end=END + timedelta(days=2))
    assert empty.rows == 0
    assert empty["conv_rate"].mean is None and empty["conv_rate"].histogram is None
    assert empty["city"].top_values == ()
    with pytest.raises(pv.FeatureRefError, match="no feature 'speed'"):
        client.get_statistics("driver_statistics", start=START, end=END, features=["speed"])
    with pytest.raises(pv.FeatureTableNotFoundError, match="'nope'"):
        client.get_statistics("nope", start=START, end=END)
    with pytest.raises(pv.DataError, match="must be before end"):
        client.get_statistics("driver_statistics", start=END, end=START)
