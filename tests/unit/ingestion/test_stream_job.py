"""Starting a stream job: what is refused before any broker is contacted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import provender as pv
from tests.support.builders import DRIVER, make_client

SCHEMA = {
    "type": "record",
    "name": "Trip",
    "fields": [
        {"name": "driver_id", "type": "long"},
        {"name": "trips", "type": "string"},
        {"name": "ts", "type": "long"},
    ],
}


def table(message_format: pv.AvroFormat | pv.JsonFormat | None) -> pv.FeatureTable:
    stream = None
    if message_format is not None:
        stream = pv.KafkaSource(
            bootstrap_servers="127.0.0.1:1", topic="trips", message_format=message_format, event_timestamp_column="ts"
        )
    return pv.FeatureTable(
        name="trips",
        entities=["driver_id"],
        features=[pv.Feature("trips", pv.ValueType.INT64)],
        stream_source=stream,
        batch_source=None if stream else pv.FileSource(path="unused.parquet", event_timestamp_column="ts"),
    )


def test_a_table_without_a_stream_source_is_refused(tmp_path: Path) -> None:
    with make_client(tmp_path) as client:
        client.apply([DRIVER, table(None)])
        with pytest.raises(pv.DefinitionError, match="stream_source"):
            client.start_stream_to_online_ingestion("trips")


def test_an_avro_schema_that_cannot_hold_a_feature_is_refused_at_start(tmp_path: Path) -> None:
    with make_client(tmp_path) as client:
        client.apply([DRIVER, table(pv.AvroFormat(json.dumps(SCHEMA)))])
        with pytest.raises(pv.DataError, match=r"field 'trips'.*type string.*cannot hold INT64"):
            client.start_stream_to_online_ingestion("trips")


def test_bad_batch_settings_are_a_config_error(tmp_path: Path) -> None:
    with make_client(tmp_path) as client:
        client.apply([DRIVER, table(pv.JsonFormat())])
        with pytest.raises(pv.ConfigError, match=r"stream\.batch_rows"):
            client.start_stream_to_online_ingestion("trips", batch_rows=0)


def test_an_unknown_table_is_named(tmp_path: Path) -> None:
    with make_client(tmp_path) as client, pytest.raises(pv.FeatureTableNotFoundError, match="'nope'"):
        client.start_stream_to_online_ingestion("nope")


def test_the_status_line_reports_events_too_late_for_aggregations() -> None:
    from provender.cli.ingest_stream import StatusLine
    from provender.ingestion.stream import StreamIngestionJob

    job = StreamIngestionJob(table="trips", topic="trips", group_id="g")
    assert "too late" not in StatusLine(job).render()
    job.records_too_late = 3
    assert "| too late 3 |" in StatusLine(job).render()
