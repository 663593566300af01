"""Build feature data and temp projects for offline tests.

``write_rows`` writes feature rows (dicts keyed by *source* column names) as Parquet or CSV in
one of four layouts (one file, a directory of files, hive partitions ``date=YYYY-MM-DD`` or a
glob) and returns the absolute path to put in a ``FileSource``. ``make_client`` opens a
:class:`provender.Client` on a temp project whose ``provender.yaml`` lives in the project
directory, isolated from ``PROVENDER_*`` variables (the one client factory of the tests that
open projects from a directory). ``DRIVER``, ``CUSTOMER`` and ``ENTITIES`` are the entities
the offline tests key their tables by.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

import provender as pv
from provender.config import load_settings
from tests.support.registries import registry_url

DRIVER = pv.Entity(name="driver_id", value_type=pv.ValueType.INT64)
CUSTOMER = pv.Entity(name="customer_id", value_type=pv.ValueType.STRING)
ENTITIES = {"driver_id": DRIVER, "customer_id": CUSTOMER}

PARTITION_COLUMN = "date"
"""The hive partition column written by the ``HIVE`` layout (``date=YYYY-MM-DD``)."""


class Layout(StrEnum):
    """How a source's rows are laid out on disk."""

    FILE = "file"  # one file
    DIRECTORY = "directory"  # several files in one directory
    HIVE = "hive"  # date=YYYY-MM-DD/part-0.<ext>, by the UTC date of the event time
    GLOB = "glob"  # several files matched by a glob pattern


class Format(StrEnum):
    """The file format of a source."""

    PARQUET = "parquet"
    CSV = "csv"


def to_utc(at: datetime) -> datetime:
    """Return ``at`` as an aware UTC datetime (naive means UTC)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def source_schema(
    table: pv.FeatureTable,
    entities: Mapping[str, pv.Entity],
    *,
    event_type: pa.DataType | None = None,
    created_type: pa.DataType | None = None,
) -> pa.Schema:
    """Return the Arrow schema of ``table``'s batch source, in source column names.

    Keys and features have their declared types; timestamps are ``timestamp[us, UTC]`` unless
    ``event_type``/``created_type`` say otherwise.
    """
    source = table.batch_source
    assert source is not None
    to_source = {target: column for column, target in source.field_mapping.items()}
    stamp = pa.timestamp("us", tz="UTC")
    fields = [pa.field(to_source.get(name, name), entities[name].value_type.to_arrow()) for name in table.entities]
    fields += [pa.field(to_source.get(f.name, f.name), f.value_type.to_arrow()) for f in table.features]
    fields.append(pa.field(source.event_timestamp_column, event_type or stamp))
    if source.created_timestamp_column:
        fields.append(pa.field(source.created_timestamp_column, created_type or stamp))
    return pa.schema(fields)


def write_rows(
    rows: Sequence[Mapping[str, object]],
    *,
    schema: pa.Schema,
    root: Path,
    event_column: str,
    layout: Layout = Layout.FILE,
    file_format: Format = Format.PARQUET,
    files: int = 3,
) -> str:
    """Write ``rows`` under ``root`` and return the path (file, directory or glob) to read them.

    Args:
        rows: feature rows keyed by source column name.
        schema: the columns to write, in order, with their types.
        root: a directory for this source (created).
        event_column: the event time column (the ``HIVE`` layout partitions by its UTC date).
        layout: one file, a directory, hive partitions or a glob.
        file_format: Parquet or CSV.
        files: how many files the ``DIRECTORY`` and ``GLOB`` layouts spread the rows over.
    """
    root.mkdir(parents=True, exist_ok=True)
    ext = file_format.value
    if layout is Layout.FILE:
        path = root / f"data.{ext}"
        _write_file(rows, schema, path, file_format)
        return str(path)
    if layout is Layout.HIVE:
        by_day: dict[date, list[Mapping[str, object]]] = {}
        for row in rows:
            at = row[event_column]
            assert isinstance(at, datetime), "the HIVE layout needs an event time in every row"
            by_day.setdefault(to_utc(at).date(), []).append(row)
        for day, day_rows in sorted(by_day.items()):
            _write_file(day_rows, schema, root / f"{PARTITION_COLUMN}={day.isoformat()}" / f"part-0.{ext}", file_format)
        return str(root)
    chunks: list[list[Mapping[str, object]]] = [[] for _ in range(max(1, files))]
    for n, row in enumerate(rows):
        chunks[n % len(chunks)].append(row)
    for n, chunk in enumerate(chunks):
        _write_file(chunk, schema, root / f"chunk-{n}.{ext}", file_format)
    return str(root) if layout is Layout.DIRECTORY else str(root / f"chunk-*.{ext}")


def _write_file(rows: Sequence[Mapping[str, object]], schema: pa.Schema, path: Path, file_format: Format) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if file_format is Format.PARQUET:
        table = pa.Table.from_pylist([{name: row.get(name) for name in schema.names} for row in rows], schema=schema)
        pq.write_table(table, path)
        return
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(schema.names)
        for row in rows:
            writer.writerow([_csv_text(row.get(name)) for name in schema.names])


def _csv_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return str(value)


def with_source_path(table: pv.FeatureTable, path: str, **changes: object) -> pv.FeatureTable:
    """Return ``table`` with its batch source reading ``path`` (and other source fields changed)."""
    assert table.batch_source is not None
    source = dataclasses.replace(table.batch_source, path=path, **changes)  # type: ignore[arg-type]
    return dataclasses.replace(table, batch_source=source)


def write_table(
    table: pv.FeatureTable,
    rows: Sequence[Mapping[str, object]],
    *,
    entities: Mapping[str, pv.Entity],
    root: Path,
    layout: Layout = Layout.FILE,
    file_format: Format = Format.PARQUET,
    schema: pa.Schema | None = None,
) -> pv.FeatureTable:
    """Write ``table``'s rows under ``root / table.name`` and return the table reading them.

    The ``HIVE`` layout also sets ``date_partition_column``; ``CSV`` sets ``CsvFormat()``.
    """
    assert table.batch_source is not None
    schema = schema or source_schema(table, entities)
    path = write_rows(
        rows,
        schema=schema,
        root=root / table.name,
        event_column=table.batch_source.event_timestamp_column,
        layout=layout,
        file_format=file_format,
    )
    changes: dict[str, object] = {
        "file_format": pv.CsvFormat() if file_format is Format.CSV else pv.ParquetFormat(),
    }
    if layout is Layout.HIVE:
        changes["date_partition_column"] = PARTITION_COLUMN
    return with_source_path(table, path, **changes)


def write_config(
    project_dir: Path,
    *,
    offline: Mapping[str, object] | None = None,
    online: Mapping[str, object] | None = None,
    project: str | None = None,
) -> Path:
    """Write a ``provender.yaml`` in ``project_dir`` (registry and state under ``.provender/``).

    The registry is the test's (:func:`tests.support.registries.registry_url`).

    Sections left out take their defaults (DuckDB, the SQLite online store, project ``default``).
    """
    project_dir.mkdir(parents=True, exist_ok=True)
    config: dict[str, object] = {"registry": registry_url(project_dir, "sqlite:///.provender/registry.db")}
    if project is not None:
        config["project"] = project
    if offline is not None:
        config["offline"] = dict(offline)
    if online is not None:
        config["online"] = dict(online)
    path = project_dir / "provender.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def make_client(
    project_dir: Path,
    *,
    offline: Mapping[str, object] | None = None,
    online: Mapping[str, object] | None = None,
    project: str | None = None,
) -> pv.Client:
    """Open a client on a fresh project in ``project_dir``, ignoring ``PROVENDER_*`` variables.

    The caller closes it (``with make_client(...) as client:``).
    """
    path = write_config(project_dir, offline=offline, online=online, project=project)
    return pv.Client(settings=load_settings(path, environ={}))


def write_parquet(table: pa.Table, path: Path) -> Path:
    """Write an Arrow table to ``path`` as Parquet (parents created) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path
