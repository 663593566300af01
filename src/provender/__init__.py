"""Provender: a cloud-native feature store.

Define entities and feature tables once; build point-in-time correct training sets and serve
the same values online at low latency.

Examples:
    >>> import provender as pv
    >>> driver = pv.Entity(name="driver_id", value_type=pv.ValueType.INT64)
"""

from __future__ import annotations

from provender.client import Client
from provender.config import Settings, load_settings
from provender.definitions import (
    Aggregation,
    AvroFormat,
    CsvFormat,
    DeltaSource,
    Entity,
    Feature,
    FeatureRef,
    FeatureTable,
    FileSource,
    JsonFormat,
    KafkaSource,
    OnDemandFeatures,
    ParquetFormat,
    SqlSource,
    ValueType,
    expect,
)
from provender.errors import (
    BackendError,
    ConfigError,
    DataError,
    DefinitionError,
    EntityNotFoundError,
    FeatureRefError,
    FeatureTableNotFoundError,
    MissingExtraError,
    NotFoundError,
    OnDemandFunctionError,
    ProvenderError,
    RegistryConflictError,
)
from provender.offline.drift import DriftReport
from provender.offline.statistics import TableStatistics

__version__ = "0.1.0"

__all__ = [
    "Aggregation",
    "AvroFormat",
    "BackendError",
    "Client",
    "ConfigError",
    "CsvFormat",
    "DataError",
    "DefinitionError",
    "DeltaSource",
    "DriftReport",
    "Entity",
    "EntityNotFoundError",
    "Feature",
    "FeatureRef",
    "FeatureRefError",
    "FeatureTable",
    "FeatureTableNotFoundError",
    "FileSource",
    "JsonFormat",
    "KafkaSource",
    "MissingExtraError",
    "NotFoundError",
    "OnDemandFeatures",
    "OnDemandFunctionError",
    "ParquetFormat",
    "ProvenderError",
    "RegistryConflictError",
    "Settings",
    "SqlSource",
    "TableStatistics",
    "ValueType",
    "__version__",
    "expect",
    "load_settings",
]
