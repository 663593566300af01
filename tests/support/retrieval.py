"""The data of the retrieval tests: the ``driver_stats`` project and the bad-input tables.

Shared by the DuckDB-only tests (``tests/unit/offline``) and the engine contract
(``tests/contract/test_offline_engine*.py``). ``driver_stats`` has drivers 1 and 2, a row every
6 hours over five days; ``entity_rows`` asks for it at known times. ``STATS`` and ``PAIRS``
(with ``ROWS``, one row each) are the tables of the bad-input tests; ``entities`` builds their
entity rows.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

import provender as pv
from tests.support import pit_oracle

DAY0 = datetime(2024, 3, 1, tzinfo=UTC)


def driver_stats(*, max_age: timedelta | None = timedelta(days=1), **source: Any) -> pv.FeatureTable:
    """The ``driver_stats`` table (trips, rate) with no path yet; ``source`` sets FileSource fields."""
    return pv.FeatureTable(
        name="driver_stats",
        entities=["driver_id"],
        features=[pv.Feature("trips", pv.ValueType.INT64), pv.Feature("rate", pv.ValueType.FLOAT)],
        batch_source=pv.FileSource(
            path="-", event_timestamp_column="event_ts", created_timestamp_column="created", **source
        ),
        max_age=max_age,
    )


def at_path(table: pv.FeatureTable, path: str) -> pv.FeatureTable:
    """``table`` with its FileSource at ``path``."""
    assert isinstance(table.batch_source, pv.FileSource)
    return dataclasses.replace(table, batch_source=dataclasses.replace(table.batch_source, path=path))


def driver_rows() -> list[dict[str, Any]]:
    """Drivers 1 and 2, a row every 6 hours over five days; trips counts the rows."""
    return [
        {
            "driver_id": driver,
            "trips": n * 10 + driver,
            "rate": n * 0.5,
            "event_ts": DAY0 + n * timedelta(hours=6),
            "created": DAY0 + n * timedelta(hours=6),
        }
        for n in range(20)
        for driver in (1, 2)
    ]


def entity_rows() -> list[dict[str, Any]]:
    """Five entity rows: between rows, exactly at one, before any, an unknown driver, a duplicate."""
    return [
        {"driver_id": 1, "event_timestamp": datetime(2024, 3, 2, 7), "label": 1.5, "request": "r0"},
        {"driver_id": 2, "event_timestamp": datetime(2024, 3, 3), "label": 0.0, "request": "r1"},
        {"driver_id": 1, "event_timestamp": datetime(2024, 2, 28), "label": -1.0, "request": "r2"},
        {"driver_id": 3, "event_timestamp": datetime(2024, 3, 4, 12), "label": 2.0, "request": None},
        {"driver_id": 1, "event_timestamp": datetime(2024, 3, 2, 7), "label": 1.5, "request": "r0"},
    ]


def entity_frame(rows: list[dict[str, Any]] | None = None) -> pd.DataFrame:
    """``rows`` (default: :func:`entity_rows`) as a pandas frame."""
    return pd.DataFrame(entity_rows() if rows is None else rows)


def expected(table: pv.FeatureTable, rows: list[dict[str, Any]], refs: list[str]) -> pit_oracle.Expected:
    """The oracle's answer for ``rows`` (default: :func:`entity_rows`) over :func:`driver_rows`."""
    return pit_oracle.retrieve(rows or entity_rows(), [pit_oracle.SourceData(table, driver_rows())], refs)


# -- the bad-input tables ----------------------------------------------------------------------

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
    """Two entity rows at ``AT`` for ``STATS`` and ``PAIRS``; ``columns`` replace (None: drop) columns."""
    data: dict[str, object] = {"driver_id": [1, 2], "customer_id": ["a", "b"], "event_timestamp": [AT, AT]}
    data.update(columns)
    return pd.DataFrame({k: v for k, v in data.items() if v is not None})
