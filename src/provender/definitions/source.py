"""Where feature rows come from: batch files and Kafka streams, and their formats."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from provender.definitions._validate import check_column, freeze_str_mapping, reduce_definition
from provender.errors import DefinitionError


@dataclass(frozen=True, slots=True)
class ParquetFormat:
    """Apache Parquet files."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CsvFormat:
    """CSV files with a header row.

    Args:
        delimiter: the one-character field separator.
    """

    delimiter: str = ","

    def __post_init__(self) -> None:
        if not isinstance(self.delimiter, str) or len(self.delimiter) != 1:
            raise DefinitionError("CsvFormat", "delimiter", f"must be one character, got {self.delimiter!r}")


FileFormat = ParquetFormat | CsvFormat


@dataclass(frozen=True, slots=True)
class AvroFormat:
    """Avro-encoded messages.

    Args:
        schema_json: the Avro schema of the messages, as JSON text (a record schema).
    """

    schema_json: str

    def __post_init__(self) -> None:
        try:
            schema = json.loads(self.schema_json)
        except (TypeError, ValueError) as exc:
            raise DefinitionError("AvroFormat", "schema_json", f"is not valid JSON: {exc}") from None
        if not isinstance(schema, dict) or schema.get("type") != "record" or "fields" not in schema:
            raise DefinitionError(
                "AvroFormat", "schema_json", 'must be an Avro record schema ({"type": "record", ...})'
            )


@dataclass(frozen=True, slots=True)
class JsonFormat:
    """JSON-encoded messages, one object per message."""


MessageFormat = AvroFormat | JsonFormat


def _check_timestamps(what: str, event: object, created: object) -> None:
    check_column(what, "event_timestamp_column", event)
    if created is not None:
        check_column(what, "created_timestamp_column", created)
        if created == event:
            raise DefinitionError(what, "created_timestamp_column", "must differ from event_timestamp_column")


@dataclass(frozen=True, slots=True, kw_only=True)
class FileSource:
    """Batch feature rows in files: one file, a directory (hive partitions allowed) or a glob.

    Args:
        path: local path or object-store URL of a file, a directory or a glob.
        event_timestamp_column: when each row's values became true.
        file_format: ``ParquetFormat()`` (default) or ``CsvFormat()``.
        created_timestamp_column: optional; breaks ties between equal event timestamps.
        date_partition_column: optional hive partition column (``date=YYYY-MM-DD``) used to skip
            partitions that cannot hold relevant rows.
        field_mapping: optional renames from source column to entity/feature name.
    """

    path: str
    event_timestamp_column: str
    file_format: FileFormat = field(default_factory=ParquetFormat)
    created_timestamp_column: str | None = None
    date_partition_column: str | None = None
    field_mapping: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    __reduce__ = reduce_definition

    def __post_init__(self) -> None:
        what = "FileSource"
        if not isinstance(self.path, str) or not self.path.strip():
            raise DefinitionError(what, "path", f"must be a non-empty path or URL, got {self.path!r}")
        if not isinstance(self.file_format, ParquetFormat | CsvFormat):
            raise DefinitionError(what, "file_format", "must be ParquetFormat() or CsvFormat()")
        _check_timestamps(what, self.event_timestamp_column, self.created_timestamp_column)
        if self.date_partition_column is not None:
            check_column(what, "date_partition_column", self.date_partition_column)
        mapping = freeze_str_mapping(what, "field_mapping", self.field_mapping)
        object.__setattr__(self, "field_mapping", MappingProxyType(dict(mapping)))


@dataclass(frozen=True, slots=True, kw_only=True)
class DeltaSource:
    """Batch feature rows in a Delta Lake table (local path or ``s3://`` URL).

    Every read of the table reads one consistent snapshot: the latest version when it starts,
    or the one pinned by ``version`` or ``timestamp`` (for reproducible training sets).

    Args:
        path: local path or object-store URL of the Delta table's root.
        event_timestamp_column: when each row's values became true.
        created_timestamp_column: optional; breaks ties between equal event timestamps.
        version: optional table version to read (time travel).
        timestamp: optional time; the table as it was then is read (time travel).
        field_mapping: optional renames from source column to entity/feature name.
    """

    path: str
    event_timestamp_column: str
    created_timestamp_column: str | None = None
    version: int | None = None
    timestamp: datetime | None = None
    field_mapping: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    __reduce__ = reduce_definition

    def __post_init__(self) -> None:
        what = "DeltaSource"
        if not isinstance(self.path, str) or not self.path.strip():
            raise DefinitionError(what, "path", f"must be a non-empty path or URL, got {self.path!r}")
        _check_timestamps(what, self.event_timestamp_column, self.created_timestamp_column)
        if self.version is not None and (
            isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 0
        ):
            raise DefinitionError(what, "version", f"must be a table version (an int >= 0), got {self.version!r}")
        if self.timestamp is not None and not isinstance(self.timestamp, datetime):
            raise DefinitionError(what, "timestamp", f"must be a datetime, got {self.timestamp!r}")
        if self.version is not None and self.timestamp is not None:
            raise DefinitionError(what, "timestamp", "pin either version or timestamp, not both")
        mapping = freeze_str_mapping(what, "field_mapping", self.field_mapping)
        object.__setattr__(self, "field_mapping", MappingProxyType(dict(mapping)))


@dataclass(frozen=True, slots=True, kw_only=True)
class SqlSource:
    """Batch feature rows defined by a SQL query over other sources (joins, filters, expressions).

    The query is written once, in ``dialect``, and transpiled (sqlglot) for the engine that runs
    it (DuckDB or Spark). It reads the tables named in ``sources``; its result columns are the
    source's columns, as a file's would be (``field_mapping`` renames them).

    Args:
        query: one ``SELECT`` (CTEs, joins, unions allowed) reading only the tables of ``sources``.
        sources: the tables the query reads, by the name it uses: ``FileSource`` paths, local
            (Parquet, CSV) or in an object store (``s3://``, ``gs://``: Parquet), or Delta tables
            (``DeltaSource``, read at their pinned version or timestamp, else their latest).
        event_timestamp_column: the result column with each row's event time.
        created_timestamp_column: optional; breaks ties between equal event timestamps.
        dialect: the query's SQL dialect (a sqlglot dialect name): ``duckdb`` (default), ``spark``...
        field_mapping: optional renames from result column to entity/feature name.

    Examples:
        >>> SqlSource(
        ...     query="SELECT t.*, d.city FROM trips t JOIN drivers d USING (driver_id) WHERE t.fare > 0",
        ...     sources={"trips": FileSource(path="data/trips", event_timestamp_column="ts"),
        ...              "drivers": FileSource(path="data/drivers.parquet", event_timestamp_column="since")},
        ...     event_timestamp_column="ts",
        ... ).path
        'sql:drivers,trips'
    """

    query: str
    sources: Mapping[str, FileSource | DeltaSource]
    event_timestamp_column: str
    created_timestamp_column: str | None = None
    dialect: str = "duckdb"
    field_mapping: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    __reduce__ = reduce_definition

    def __post_init__(self) -> None:
        from provender.definitions.sql import check_query  # sqlglot: only when SQL sources are used

        what = "SqlSource"
        _check_timestamps(what, self.event_timestamp_column, self.created_timestamp_column)
        if not isinstance(self.sources, Mapping) or not self.sources:
            raise DefinitionError(
                what, "sources", "must map each table name the query reads to a FileSource or a DeltaSource"
            )
        for name, source in self.sources.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise DefinitionError(what, "sources", f"{name!r} is not a table name (letters, digits, '_')")
            if not isinstance(source, FileSource | DeltaSource):
                raise DefinitionError(
                    what, "sources", f"{name!r} must be a FileSource or a DeltaSource, got {type(source).__name__}"
                )
        object.__setattr__(self, "sources", MappingProxyType(dict(sorted(self.sources.items()))))
        if not isinstance(self.query, str) or not self.query.strip():
            raise DefinitionError(what, "query", f"must be a SELECT query, got {self.query!r}")
        check_query(self.query, self.dialect, tuple(self.sources))
        mapping = freeze_str_mapping(what, "field_mapping", self.field_mapping)
        object.__setattr__(self, "field_mapping", MappingProxyType(dict(mapping)))

    @property
    def path(self) -> str:
        """A short name for messages and listings: ``sql:<the tables read>``."""
        return "sql:" + ",".join(self.sources)


BatchSource = FileSource | DeltaSource | SqlSource


@dataclass(frozen=True, slots=True, kw_only=True)
class KafkaSource:
    """Feature rows arriving as messages on a Kafka topic.

    Args:
        bootstrap_servers: comma-separated ``host:port`` list.
        topic: the topic to consume.
        message_format: ``AvroFormat(schema_json)`` or ``JsonFormat()``.
        event_timestamp_column: message field holding the event time.
        created_timestamp_column: optional message field breaking ties between equal event times.
        field_mapping: optional renames from message field to entity/feature name.
    """

    bootstrap_servers: str
    topic: str
    message_format: MessageFormat
    event_timestamp_column: str
    created_timestamp_column: str | None = None
    field_mapping: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    __reduce__ = reduce_definition

    def __post_init__(self) -> None:
        what = "KafkaSource"
        if not isinstance(self.bootstrap_servers, str) or not self.bootstrap_servers.strip():
            raise DefinitionError(what, "bootstrap_servers", "must be a 'host:port[,host:port...]' string")
        if not isinstance(self.topic, str) or not self.topic.strip():
            raise DefinitionError(what, "topic", f"must be a non-empty topic name, got {self.topic!r}")
        if not isinstance(self.message_format, AvroFormat | JsonFormat):
            raise DefinitionError(what, "message_format", "must be AvroFormat(schema_json) or JsonFormat()")
        _check_timestamps(what, self.event_timestamp_column, self.created_timestamp_column)
        mapping = freeze_str_mapping(what, "field_mapping", self.field_mapping)
        object.__setattr__(self, "field_mapping", MappingProxyType(dict(mapping)))
