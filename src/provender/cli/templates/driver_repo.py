"""Feature definitions of the driver example. Register them with `provender apply .`."""

from datetime import timedelta

import provender as pv

driver = pv.Entity(name="driver_id", value_type=pv.ValueType.INT64, description="Driver id")

driver_statistics = pv.FeatureTable(
    name="driver_statistics",
    entities=["driver_id"],
    features=[
        pv.Feature("avg_daily_trips", pv.ValueType.INT32),
        pv.Feature("conv_rate", pv.ValueType.FLOAT),
        pv.Feature("acc_rate", pv.ValueType.FLOAT),
    ],
    batch_source=pv.FileSource(
        path="data/driver_statistics/",
        file_format=pv.ParquetFormat(),
        event_timestamp_column="datetime",
        created_timestamp_column="created",
        date_partition_column="date",
    ),
    max_age=timedelta(days=1),
    labels={"owner": "ride-team"},
)
