"""The work of the Kubeflow Pipelines components, as plain functions over the SDK.

Each function opens a :class:`~provender.Client` from a config file (or the environment's
``PROVENDER_CONFIG``, or defaults), does one thing, and returns a small JSON-able summary. They
import nothing from kfp, so they are typed, tested and usable without it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from provender.client import Client
from provender.definitions.request import EVENT_TIMESTAMP, FeatureRequest
from provender.errors import DataError
from provender.offline.objectstore import is_object_store_url, write_parquet

# How many mismatches a consistency report lists (all are counted).
REPORTED_MISMATCHES = 10


def open_client(config_path: str = "", project: str = "") -> Client:
    """Return a client for ``config_path`` ("" : ``$PROVENDER_CONFIG``, ./provender.yaml or defaults)."""
    return Client(config=config_path or None, project=project or None)


def parse_time(value: str) -> datetime:
    """Parse an ISO-8601 time; a time without a zone is UTC.

    Raises:
        DataError: not an ISO-8601 time.
    """
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise DataError(f"{value!r} is not an ISO-8601 time like 2026-11-20T12:00") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def retrieve_to_parquet(
    feature_refs: Sequence[str], entity_source_uri: str, output_path: str, *, config_path: str = "", project: str = ""
) -> dict[str, int]:
    """Write the point-in-time correct training set of ``entity_source_uri`` to ``output_path``.

    Args:
        feature_refs: ``"<table>:<feature>"`` or ``"<table>"`` refs.
        entity_source_uri: a Parquet file, directory or glob (local or object-store URL) with the
            entity columns and ``event_timestamp``; other columns (labels) pass through.
        output_path: the Parquet file written.
        config_path: the provender.yaml to use.
        project: the project (default: the config's).

    Returns:
        ``{"rows": ..., "columns": ...}`` of the dataset written.
    """
    with open_client(config_path, project) as client:
        job = client.get_historical_features(feature_refs=list(feature_refs), entity_source=entity_source_uri)
        table = job.to_arrow()
        if is_object_store_url(output_path):
            write_parquet(client.settings.storage, output_path, table.to_reader(), what="The training set's output")
            return {"rows": table.num_rows, "columns": table.num_columns}
    Path(output_path).parent.mkdir(parents=True, exist_ok=True)
    import pyarrow.parquet as pq

    pq.write_table(table, output_path)
    return {"rows": table.num_rows, "columns": table.num_columns}


def ingest_to_online(table: str, start: str, end: str, *, config_path: str = "", project: str = "") -> dict[str, int]:
    """Write, per entity key, the latest row of ``table`` with ``start <= event_timestamp < end`` online.

    Returns:
        ``{"rows_read": ..., "rows_written": ...}``.
    """
    with open_client(config_path, project) as client:
        job = client.start_offline_to_online_ingestion(table, start=parse_time(start), end=parse_time(end))
        job.wait()
        return {"rows_read": job.rows_read, "rows_written": job.rows_written}


def check_consistency(
    feature_refs: Sequence[str], training_set_path: str, at: str, *, config_path: str = "", project: str = ""
) -> dict[str, int]:
    """Check that the online values now equal the training set's rows stamped ``at``.

    The promise (DESIGN.md): after the data up to T is ingested, ``get_online_features`` returns
    exactly what ``get_historical_features`` returned for entity rows stamped T. The rows of the
    training set whose ``event_timestamp`` is ``at`` are read online and compared column by column.

    Returns:
        ``{"rows": ..., "features": ..., "mismatches": 0}``.

    Raises:
        DataError: the training set has no row stamped ``at``, or a value differs (the first ones
            are named: entity key, column, training value, online value).
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    when = parse_time(at)
    training = pq.read_table(training_set_path)
    if EVENT_TIMESTAMP not in training.column_names:
        raise DataError(f"The training set {training_set_path!r} has no {EVENT_TIMESTAMP!r} column.")
    import pyarrow as pa

    stamps = training.column(EVENT_TIMESTAMP).cast(pa.timestamp("us", tz="UTC"))
    rows = training.filter(pc.equal(stamps, pa.scalar(when, type=stamps.type))).to_pylist()
    if not rows:
        raise DataError(f"The training set {training_set_path!r} has no row with {EVENT_TIMESTAMP} = {at}.")
    with open_client(config_path, project) as client:
        request = FeatureRequest.resolve(
            feature_refs,
            feature_tables={table.name: table for table in client.list_feature_tables()},
            entities={entity.name: entity for entity in client.list_entities()},
            project=client.project,
        )
        entities = [entity.name for entity in request.entities]
        missing = [name for name in entities if name not in training.column_names]
        if missing:
            raise DataError(f"The training set {training_set_path!r} lacks the entity columns {missing}.")
        online = client.get_online_features(
            feature_refs=list(feature_refs), entity_rows=[{name: row[name] for name in entities} for row in rows]
        ).to_dict()
    columns = list(request.columns)
    mismatches = [
        f"{ {name: row[name] for name in entities} } {column}: training {row.get(column)!r}, online {value!r}"
        for column in columns
        for row, value in zip(rows, online[column], strict=True)
        if not _same(row.get(column), value)
    ]
    if mismatches:
        shown = "; ".join(mismatches[:REPORTED_MISMATCHES])
        raise DataError(f"Online values differ from the training set at {at} in {len(mismatches)} place(s): {shown}")
    return {"rows": len(rows), "features": len(columns), "mismatches": 0}


def _same(training: object, online: object) -> bool:
    if isinstance(training, float) and isinstance(online, float) and math.isnan(training) and math.isnan(online):
        return True
    return training == online
