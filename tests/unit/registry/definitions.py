"""Definitions shared by the registry tests (plain builders, so each test states what differs)."""

from __future__ import annotations

from datetime import timedelta

from provender import Entity, Feature, FeatureTable, FileSource, ValueType


def driver(**overrides: object) -> Entity:
    fields: dict[str, object] = {
        "name": "driver_id",
        "value_type": ValueType.INT64,
        "description": "Driver id",
    }
    fields.update(overrides)
    return Entity(**fields)  # type: ignore[arg-type]


def customer(**overrides: object) -> Entity:
    fields: dict[str, object] = {"name": "customer_id", "value_type": ValueType.STRING}
    fields.update(overrides)
    return Entity(**fields)  # type: ignore[arg-type]


def driver_statistics(**overrides: object) -> FeatureTable:
    fields: dict[str, object] = {
        "name": "driver_statistics",
        "entities": ["driver_id"],
        "features": [
            Feature("avg_daily_trips", ValueType.INT32),
            Feature("conv_rate", ValueType.FLOAT),
            Feature("acc_rate", ValueType.FLOAT),
        ],
        "batch_source": FileSource(
            path="data/driver_statistics/",
            event_timestamp_column="datetime",
            created_timestamp_column="created",
            date_partition_column="date",
        ),
        "max_age": timedelta(days=1),
        "labels": {"owner": "ride-team"},
    }
    fields.update(overrides)
    return FeatureTable(**fields)  # type: ignore[arg-type]


def customer_profile(**overrides: object) -> FeatureTable:
    fields: dict[str, object] = {
        "name": "customer_profile",
        "entities": ["customer_id"],
        "features": [Feature("lifetime_trips", ValueType.INT64)],
        "batch_source": FileSource(path="data/customer_profile.parquet", event_timestamp_column="ts"),
    }
    fields.update(overrides)
    return FeatureTable(**fields)  # type: ignore[arg-type]
