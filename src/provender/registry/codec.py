"""The versioned JSON form of definitions, as stored by every registry backend.

Shape: ``{"format_version": 3, "kind": "entity" | "feature_table" | "on_demand_features", "spec": {...}}``.
Version 2 added expectations (``expect`` on features and tables, ``validation_policy``);
version 3 added a feature table's ``aggregations``; version 4 the ``delta`` batch source; version 5
the ``on_demand_features`` kind and the ``sql`` batch source; version 6 the ``approx_count_distinct``
aggregation function (a version 3 to 5 reader would refuse it as an unknown function, not as a
newer record). A record is written with the oldest version that holds it (an
``approx_count_distinct`` aggregation: 6, on-demand features, a SQL source: 5, a Delta source: 4,
aggregations: 3, everything else: 2), and older records still load.
Durations are whole microseconds; sources and formats carry a ``"type"`` tag. A reader refuses a
``format_version`` newer than it knows, so an old Provender never misreads a newer registry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Final, cast

from provender.definitions import (
    Aggregation,
    AvroFormat,
    BatchSource,
    CsvFormat,
    Definition,
    DeltaSource,
    Entity,
    Feature,
    FeatureTable,
    FileFormat,
    FileSource,
    JsonFormat,
    KafkaSource,
    MessageFormat,
    OnDemandFeatures,
    ParquetFormat,
    SqlSource,
    ValueType,
    expect,
)
from provender.errors import DefinitionError

FORMAT_VERSION: Final = 7
_SQL_DELTA_VERSION: Final = 7  # a SQL source reading a Delta table
_SKETCH_VERSION: Final = 6
_ON_DEMAND_VERSION: Final = 5
_DELTA_VERSION: Final = 4
_AGGREGATIONS_VERSION: Final = 3
_EXPECTATIONS_VERSION: Final = 2  # what records without aggregations are written as

JsonDict = dict[str, object]


def to_json(definition: Definition) -> str:
    """Serialize a definition to its versioned JSON text (stable key order)."""
    return json.dumps(to_dict(definition), sort_keys=True, separators=(",", ":"))


def from_json(text: str) -> Definition:
    """Parse the versioned JSON text written by :func:`to_json`."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DefinitionError("registry record", "json", f"is not valid JSON: {exc}") from None
    return from_dict(data)


def to_dict(definition: Definition) -> JsonDict:
    """Return the versioned, JSON-ready dict of a definition."""
    if isinstance(definition, Entity):
        return {"format_version": _EXPECTATIONS_VERSION, "kind": "entity", "spec": _entity_spec(definition)}
    if isinstance(definition, FeatureTable):
        # The oldest version that can hold the table, so older readers still read what they can.
        source = definition.batch_source
        version = (
            _SQL_DELTA_VERSION
            if isinstance(source, SqlSource) and any(isinstance(s, DeltaSource) for s in source.sources.values())
            else _SKETCH_VERSION
            if any(a.function == "approx_count_distinct" for a in definition.aggregations)
            else _ON_DEMAND_VERSION
            if isinstance(definition.batch_source, SqlSource)
            else _DELTA_VERSION
            if isinstance(definition.batch_source, DeltaSource)
            else _AGGREGATIONS_VERSION
            if definition.aggregations
            else _EXPECTATIONS_VERSION
        )
        return {"format_version": version, "kind": "feature_table", "spec": _table_spec(definition)}
    if isinstance(definition, OnDemandFeatures):
        return {"format_version": _ON_DEMAND_VERSION, "kind": "on_demand_features", "spec": _on_demand_spec(definition)}
    raise TypeError(f"cannot serialize {type(definition).__name__}; expected Entity, FeatureTable or OnDemandFeatures")


def from_dict(data: object) -> Definition:
    """Rebuild a definition from :func:`to_dict`'s output; DefinitionError names a bad field.

    A malformed record raises DefinitionError whatever is wrong with it (a field of the wrong
    type too), never another exception: readers such as the serving's registry watcher skip
    and report it.
    """
    try:
        return _from_dict(data)
    except DefinitionError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, RecursionError) as exc:
        kind = data.get("kind") if isinstance(data, Mapping) else None
        raise DefinitionError(
            f"registry record {kind}" if isinstance(kind, str) else "registry record",
            "spec",
            f"is malformed ({type(exc).__name__}: {str(exc)[:200]})",
        ) from None


def _from_dict(data: object) -> Definition:
    record = _mapping(data, "record")
    version = record.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise DefinitionError("registry record", "format_version", f"missing or invalid: {version!r}")
    if version > FORMAT_VERSION:
        raise DefinitionError(
            "registry record",
            "format_version",
            f"{version} is newer than this Provender understands ({FORMAT_VERSION}); upgrade provender",
        )
    spec = _mapping(record.get("spec"), "spec")
    kind = record.get("kind")
    try:
        if kind == "entity":
            return Entity(
                name=cast(str, spec["name"]),
                value_type=cast(ValueType, spec["value_type"]),  # validated (DefinitionError) by Entity
                description=cast(str, spec.get("description", "")),
                labels=_mapping(spec.get("labels", {}), "labels"),  # type: ignore[arg-type]
            )
        if kind == "feature_table":
            return _table_from_spec(spec)
        if kind == "on_demand_features":
            return _on_demand_from_spec(spec)
    except KeyError as exc:
        raise DefinitionError(f"registry record {kind}", str(exc.args[0]), "is missing") from None
    raise DefinitionError("registry record", "kind", f"unknown kind {kind!r}")


def _mapping(value: object, field: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise DefinitionError("registry record", field, f"must be an object, got {type(value).__name__}")
    return cast(Mapping[str, object], value)


def _entity_spec(entity: Entity) -> JsonDict:
    return {
        "name": entity.name,
        "value_type": entity.value_type.value,
        "description": entity.description,
        "labels": dict(entity.labels),
    }


def _table_spec(table: FeatureTable) -> JsonDict:
    spec: JsonDict = {
        "name": table.name,
        "entities": list(table.entities),
        "features": [
            {
                "name": f.name,
                "value_type": f.value_type.value,
                "description": f.description,
                "expect": [expect.to_spec(e) for e in f.expect],
            }
            for f in table.source_features
        ],
        "expect": [expect.to_spec(e) for e in table.expect],
        "validation_policy": table.validation_policy,
    }
    if table.aggregations:  # absent when empty: records without aggregations stay as version 2 wrote them
        spec["aggregations"] = [
            {
                "name": a.name,
                "column": a.column,
                "function": a.function,
                "window_us": a.window // timedelta(microseconds=1),
                "description": a.description,
            }
            for a in table.aggregations
        ]
    return spec | {
        "batch_source": _batch_source_spec(table.batch_source) if table.batch_source else None,
        "stream_source": _kafka_source_spec(table.stream_source) if table.stream_source else None,
        "max_age_us": None if table.max_age is None else table.max_age // timedelta(microseconds=1),
        "labels": dict(table.labels),
    }


def _table_from_spec(spec: Mapping[str, object]) -> FeatureTable:
    features = [
        Feature(
            cast(str, f["name"]),
            cast(ValueType, f["value_type"]),  # validated (DefinitionError) by Feature
            cast(str, f.get("description", "")),
            _expectations(f.get("expect", []), f"feature {f.get('name')!r}"),  # type: ignore[arg-type]
        )
        for f in (_mapping(item, "features") for item in cast(list[object], spec["features"]))
    ]
    aggregations = [
        Aggregation(
            name=cast(str, a["name"]),
            column=cast(str, a["column"]),
            function=cast(str, a["function"]),
            window=timedelta(microseconds=cast(int, a["window_us"])),
            description=cast(str, a.get("description", "")),
        )
        for a in (_mapping(item, "aggregations") for item in cast(list[object], spec.get("aggregations", [])))
    ]
    max_age_us = spec.get("max_age_us")
    batch, stream = spec.get("batch_source"), spec.get("stream_source")
    return FeatureTable(
        name=cast(str, spec["name"]),
        entities=tuple(cast(list[str], spec["entities"])),
        features=features,
        batch_source=None if batch is None else _batch_source_from(_mapping(batch, "batch_source")),
        stream_source=None if stream is None else _kafka_source_from(_mapping(stream, "stream_source")),
        max_age=None if max_age_us is None else timedelta(microseconds=cast(int, max_age_us)),
        labels=_mapping(spec.get("labels", {}), "labels"),  # type: ignore[arg-type]
        expect=_expectations(spec.get("expect", []), "table"),  # type: ignore[arg-type]
        validation_policy=cast(str, spec.get("validation_policy", "fail")),
        aggregations=aggregations,
    )


def _on_demand_spec(odf: OnDemandFeatures) -> JsonDict:
    return {
        "name": odf.name,
        "inputs": list(odf.inputs),
        "request_schema": {name: value_type.value for name, value_type in odf.request_schema.items()},
        "features": [
            {"name": f.name, "value_type": f.value_type.value, "description": f.description} for f in odf.features
        ],
        "function": odf.function,
        "mode": odf.mode,
        "function_version": odf.function_version,
        "function_digest": odf.function_digest,
        "description": odf.description,
        "labels": dict(odf.labels),
    }


def _on_demand_from_spec(spec: Mapping[str, object]) -> OnDemandFeatures:
    features = [
        Feature(cast(str, f["name"]), cast(ValueType, f["value_type"]), cast(str, f.get("description", "")))
        for f in (_mapping(item, "features") for item in cast(list[object], spec["features"]))
    ]
    return OnDemandFeatures(
        name=cast(str, spec["name"]),
        inputs=tuple(cast(list[str], spec["inputs"])),
        request_schema=_mapping(spec.get("request_schema", {}), "request_schema"),  # type: ignore[arg-type]
        features=features,
        function=cast(str, spec["function"]),
        mode=cast(str, spec.get("mode", "pandas")),
        function_version=cast("str | None", spec.get("function_version")),
        function_digest=cast("str | None", spec.get("function_digest")),
        description=cast(str, spec.get("description", "")),
        labels=_mapping(spec.get("labels", {}), "labels"),  # type: ignore[arg-type]
    )


def _expectations(items: object, where: str) -> list[object]:
    if not isinstance(items, list):
        raise DefinitionError("registry record", "expect", f"of {where} must be a list, got {type(items).__name__}")
    try:
        return [expect.from_spec(_mapping(item, "expect")) for item in items]
    except ValueError as exc:
        raise DefinitionError("registry record", "expect", f"of {where}: {exc}") from None


def _batch_source_spec(source: BatchSource) -> JsonDict:
    if isinstance(source, FileSource):
        return _file_source_spec(source)
    if isinstance(source, SqlSource):
        return {
            "type": "sql",
            "query": source.query,
            "dialect": source.dialect,
            "sources": {name: _batch_source_spec(input_source) for name, input_source in source.sources.items()},
            "event_timestamp_column": source.event_timestamp_column,
            "created_timestamp_column": source.created_timestamp_column,
            "field_mapping": dict(source.field_mapping),
        }
    return {
        "type": "delta",
        "path": source.path,
        "event_timestamp_column": source.event_timestamp_column,
        "created_timestamp_column": source.created_timestamp_column,
        "version": source.version,
        "timestamp": None if source.timestamp is None else source.timestamp.isoformat(),
        "field_mapping": dict(source.field_mapping),
    }


def _batch_source_from(spec: Mapping[str, object]) -> BatchSource:
    if spec.get("type") == "sql":
        return SqlSource(
            query=cast(str, spec["query"]),
            dialect=cast(str, spec.get("dialect", "duckdb")),
            sources={
                str(name): _sql_input_from(_mapping(item, "sources"))
                for name, item in _mapping(spec["sources"], "sources").items()
            },
            event_timestamp_column=cast(str, spec["event_timestamp_column"]),
            created_timestamp_column=cast("str | None", spec.get("created_timestamp_column")),
            field_mapping=_mapping(spec.get("field_mapping", {}), "field_mapping"),  # type: ignore[arg-type]
        )
    if spec.get("type") != "delta":
        return _file_source_from(spec)
    at = spec.get("timestamp")
    return DeltaSource(
        path=cast(str, spec["path"]),
        event_timestamp_column=cast(str, spec["event_timestamp_column"]),
        created_timestamp_column=cast("str | None", spec.get("created_timestamp_column")),
        version=cast("int | None", spec.get("version")),
        timestamp=None if at is None else datetime.fromisoformat(cast(str, at)),
        field_mapping=_mapping(spec.get("field_mapping", {}), "field_mapping"),  # type: ignore[arg-type]
    )


def _sql_input_from(spec: Mapping[str, object]) -> FileSource | DeltaSource:
    source = _batch_source_from(spec)
    if isinstance(source, SqlSource):
        raise DefinitionError("registry record", "sources", "an input of a SQL source cannot be a SQL source")
    return source


def _file_source_spec(source: FileSource) -> JsonDict:
    file_format: JsonDict = (
        {"type": "csv", "delimiter": source.file_format.delimiter}
        if isinstance(source.file_format, CsvFormat)
        else {"type": "parquet"}
    )
    return {
        "type": "file",
        "path": source.path,
        "file_format": file_format,
        "event_timestamp_column": source.event_timestamp_column,
        "created_timestamp_column": source.created_timestamp_column,
        "date_partition_column": source.date_partition_column,
        "field_mapping": dict(source.field_mapping),
    }


def _file_source_from(spec: Mapping[str, object]) -> FileSource:
    fmt = _mapping(spec["file_format"], "file_format")
    file_format: FileFormat
    if fmt.get("type") == "csv":
        file_format = CsvFormat(delimiter=cast(str, fmt.get("delimiter", ",")))
    elif fmt.get("type") == "parquet":
        file_format = ParquetFormat()
    else:
        raise DefinitionError("FileSource", "file_format", f"unknown format {fmt.get('type')!r}")
    return FileSource(
        path=cast(str, spec["path"]),
        file_format=file_format,
        event_timestamp_column=cast(str, spec["event_timestamp_column"]),
        created_timestamp_column=cast("str | None", spec.get("created_timestamp_column")),
        date_partition_column=cast("str | None", spec.get("date_partition_column")),
        field_mapping=_mapping(spec.get("field_mapping", {}), "field_mapping"),  # type: ignore[arg-type]
    )


def _kafka_source_spec(source: KafkaSource) -> JsonDict:
    message_format: JsonDict = (
        {"type": "avro", "schema_json": source.message_format.schema_json}
        if isinstance(source.message_format, AvroFormat)
        else {"type": "json"}
    )
    return {
        "type": "kafka",
        "bootstrap_servers": source.bootstrap_servers,
        "topic": source.topic,
        "message_format": message_format,
        "event_timestamp_column": source.event_timestamp_column,
        "created_timestamp_column": source.created_timestamp_column,
        "field_mapping": dict(source.field_mapping),
    }


def _kafka_source_from(spec: Mapping[str, object]) -> KafkaSource:
    fmt = _mapping(spec["message_format"], "message_format")
    message_format: MessageFormat
    if fmt.get("type") == "avro":
        message_format = AvroFormat(cast(str, fmt["schema_json"]))
    elif fmt.get("type") == "json":
        message_format = JsonFormat()
    else:
        raise DefinitionError("KafkaSource", "message_format", f"unknown format {fmt.get('type')!r}")
    return KafkaSource(
        bootstrap_servers=cast(str, spec["bootstrap_servers"]),
        topic=cast(str, spec["topic"]),
        message_format=message_format,
        event_timestamp_column=cast(str, spec["event_timestamp_column"]),
        created_timestamp_column=cast("str | None", spec.get("created_timestamp_column")),
        field_mapping=_mapping(spec.get("field_mapping", {}), "field_mapping"),  # type: ignore[arg-type]
    )
