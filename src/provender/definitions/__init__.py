"""The domain model: pure, frozen, validated definitions. No I/O here."""

from __future__ import annotations

from provender.definitions import expect
from provender.definitions.aggregation import Aggregation
from provender.definitions.entity import Entity
from provender.definitions.feature_table import Feature, FeatureTable
from provender.definitions.on_demand import OnDemandFeatures
from provender.definitions.refs import FeatureRef
from provender.definitions.source import (
    AvroFormat,
    BatchSource,
    CsvFormat,
    DeltaSource,
    FileFormat,
    FileSource,
    JsonFormat,
    KafkaSource,
    MessageFormat,
    ParquetFormat,
    SqlSource,
)
from provender.definitions.types import ValueType

Definition = Entity | FeatureTable | OnDemandFeatures

__all__ = [
    "Aggregation",
    "AvroFormat",
    "BatchSource",
    "CsvFormat",
    "Definition",
    "DeltaSource",
    "Entity",
    "Feature",
    "FeatureRef",
    "FeatureTable",
    "FileFormat",
    "FileSource",
    "JsonFormat",
    "KafkaSource",
    "MessageFormat",
    "OnDemandFeatures",
    "ParquetFormat",
    "SqlSource",
    "ValueType",
    "expect",
]
