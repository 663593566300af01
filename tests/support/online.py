"""Builders for online-store tests: feature tables and normalized ingestion batches.

``batch(table, entities, rows)`` turns plain dict rows into the Arrow table that
``OnlineStore.write`` takes (one column per entity and feature, typed by the registry, plus
``event_timestamp`` and ``created_timestamp``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import pyarrow as pa

import provender as pv
from provender.definitions.request import CREATED_TIMESTAMP, EVENT_TIMESTAMP, TIMESTAMP_TYPE

BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)
SOURCE = pv.FileSource(path="unused.parquet", event_timestamp_column="ts")

DRIVER = pv.Entity(name="driver_id", value_type=pv.ValueType.INT64)
CUSTOMER = pv.Entity(name="customer_id", value_type=pv.ValueType.INT64)
ENTITIES = {e.name: e for e in (DRIVER, CUSTOMER)}

DRIVER_STATS = pv.FeatureTable(
    name="driver_stats",
    entities=["driver_id"],
    features=[
        pv.Feature("conv_rate", pv.ValueType.FLOAT),
        pv.Feature("acc_rate", pv.ValueType.DOUBLE),
        pv.Feature("trips", pv.ValueType.INT64),
    ],
    batch_source=SOURCE,
)

ALL_TYPES = tuple(pv.ValueType)
ALL_TYPES_TABLE = pv.FeatureTable(
    name="all_types",
    entities=["driver_id"],
    features=[pv.Feature(f"f_{value_type.lower()}", value_type) for value_type in ALL_TYPES],
    batch_source=SOURCE,
)


def at(seconds: float) -> datetime:
    """``BASE_TIME`` plus ``seconds``."""
    return BASE_TIME + timedelta(seconds=seconds)


def batch(
    table: pv.FeatureTable,
    rows: Sequence[Mapping[str, object]],
    *,
    entities: Mapping[str, pv.Entity] = ENTITIES,
) -> pa.Table:
    """Build a normalized batch from dict rows.

    Each row holds the entity values, any features (missing ones are null),
    ``event_timestamp`` (a datetime, default ``BASE_TIME``) and optionally
    ``created_timestamp``.
    """
    columns: dict[str, pa.Array] = {}
    for name in table.entities:
        columns[name] = pa.array([row[name] for row in rows], entities[name].value_type.to_arrow())
    for feature in table.features:
        columns[feature.name] = pa.array([row.get(feature.name) for row in rows], feature.value_type.to_arrow())
    columns[EVENT_TIMESTAMP] = pa.array([row.get(EVENT_TIMESTAMP, BASE_TIME) for row in rows], TIMESTAMP_TYPE)
    columns[CREATED_TIMESTAMP] = pa.array([row.get(CREATED_TIMESTAMP) for row in rows], TIMESTAMP_TYPE)
    return pa.table(columns)


def same(a: object, b: object) -> bool:
    """Equality that treats NaN as equal to NaN (also inside lists) and keeps types apart."""
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b
