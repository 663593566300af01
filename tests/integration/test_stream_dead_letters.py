"""Dead letters on the real broker (noida-db): expectation violations, and records too large for the topic.

Records violating a feature's expectation are dead-lettered whole (their own headers kept) with
``provender.reason: violated_expectation`` and the expectation in ``provender.error``, never
written online, while the valid records around them are.

Records too large for the dead-letter topic never block their partition.

The dead-letter producer's ``message.max.bytes`` is set small through ``stream.dead_letter_options``;
bad records of several sizes and shapes above it are dead-lettered as truncated copies naming
their reason, original size, partition and offset; smaller bad records keep their own headers;
the good records around them are stored, and the offsets are committed past all of them.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

import provender as pv
from tests.integration.test_stream_kafka import (
    DRIVER,
    NOW,
    SQLITE_ONLINE,
    consume_all,
    json_bytes,
    make_topic,
    online,
    open_client,
    project,
    trips_table,
)
from tests.support.services import KafkaBroker

pytestmark = [pytest.mark.service, pytest.mark.timeout(120)]

DEAD_LETTER_MAX_BYTES = 20_000


def produce_with_headers(broker: KafkaBroker, topic: str, records: list[tuple[bytes, list[tuple[str, bytes]]]]) -> None:
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "linger.ms": 5})
    for value, headers in records:
        producer.produce(topic, value, partition=0, headers=list(headers) or None)
        producer.poll(0)
    assert producer.flush(30) == 0


def test_oversized_bad_records_are_dead_lettered_truncated_and_committed(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    topic = make_topic(kafka_broker, partitions=1)
    table = trips_table(kafka_broker, topic, pv.JsonFormat())
    too_large = [
        b"\x00" * 30_000,  # undecodable
        json.dumps({"driver": 5, "trips_today": 1, "ts": NOW.isoformat(), "pad": "x" * 100_000}).encode()[:-1],
        json.dumps({"trips_today": 1, "ts": NOW.isoformat(), "pad": "y" * 400_000}).encode(),  # no entity key
    ]
    small_bad = b"not json at all"
    big_headers = [("trace-id", b"t3"), ("blob", b"z" * 30_000), ("after", b"a")]  # too large by its headers
    records = [
        (json_bytes(1, 1, NOW), []),
        *[(value, [("trace-id", b"t%d" % i)]) for i, value in enumerate(too_large)],
        (b"{not json", big_headers),
        (small_bad, [("trace-id", b"small")]),
        (json_bytes(4, 4, NOW), []),
    ]
    produce_with_headers(kafka_broker, topic, records)
    directory = project(tmp_path, SQLITE_ONLINE, dead_letter_options={"message.max.bytes": DEAD_LETTER_MAX_BYTES})
    with open_client(directory) as client:
        client.apply([DRIVER, table])
        job = client.start_stream_to_online_ingestion("trips")
        assert job.wait_until(lambda j: j.records_consumed >= len(records), 60), job
        job.stop()
        assert online(client, [1, 4])["trips__trips_today"] == [1, 4]
        assert job.records_dead_lettered == 5
        # Committed past every record: a second run of the same group consumes nothing.
        again = client.start_stream_to_online_ingestion("trips")
        assert not again.wait_until(lambda j: j.records_consumed > 0, 3)
        again.stop()
        assert again.records_dead_lettered == 0
        deadline = time.monotonic() + 10  # the job records are closed by a reporter thread
        while client.list_jobs("trips") and time.monotonic() < deadline:
            time.sleep(0.05)
    letters = consume_all(kafka_broker, f"{topic}.dlq", 5)
    assert len(letters) == 5
    letters.sort(key=lambda m: int(dict(m.headers())["provender.offset"]))
    headers = [dict(m.headers() or []) for m in letters]
    assert [h["provender.offset"] for h in headers] == [b"1", b"2", b"3", b"4", b"5"]
    for index, (letter, original, found) in enumerate(zip(letters[:3], too_large, headers[:3], strict=True)):
        assert found["provender.truncated"] == b"true"
        assert found["trace-id"] == b"t%d" % index  # the record's own headers are kept
        assert "provender.headers_dropped" not in found
        assert found["provender.original_size"] == str(len(original)).encode()
        assert found["provender.partition"] == b"0"
        assert found["provender.reason"] in (b"undecodable", b"missing_entity_key")
        assert len(letter.value()) < DEAD_LETTER_MAX_BYTES and original.startswith(letter.value())
    # Too large by its headers: those that fit are kept in order, the rest counted.
    assert headers[3]["provender.truncated"] == b"true" and headers[3]["trace-id"] == b"t3"
    assert "blob" not in headers[3] and "after" not in headers[3]
    assert headers[3]["provender.headers_dropped"] == b"2"
    assert letters[3].value() == b"{not json"
    assert headers[4]["trace-id"] == b"small" and "provender.truncated" not in headers[4]
    assert letters[4].value() == small_bad


def test_records_violating_an_expectation_go_to_the_dead_letter_topic_not_online(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    """Each violating record is dead-lettered whole, its expectation in the headers; valid ones are stored."""
    topic = make_topic(kafka_broker, partitions=1)
    checked = pv.Feature("trips_today", pv.ValueType.INT64, expect=[pv.expect.not_null(), pv.expect.between(0, 100)])
    plain = trips_table(kafka_broker, topic, pv.JsonFormat())
    table = dataclasses.replace(plain, features=[checked, *plain.features[1:]])
    no_trips = json.dumps({"driver": 3, "trips_today": None, "ts": NOW.isoformat()}).encode()
    records = [json_bytes(1, 1, NOW), json_bytes(2, 500, NOW), no_trips, json_bytes(4, 4, NOW), json_bytes(5, 100, NOW)]
    produce_with_headers(kafka_broker, topic, [(value, [("trace-id", b"t%d" % i)]) for i, value in enumerate(records)])
    with open_client(project(tmp_path, SQLITE_ONLINE)) as client:
        client.apply([DRIVER, table])
        job = client.start_stream_to_online_ingestion("trips")
        assert job.wait_until(lambda j: j.records_consumed >= len(records), 60), job
        job.stop()
        assert online(client, [1, 2, 3, 4, 5])["trips__trips_today"] == [1, None, None, 4, 100]
        assert (job.records_dead_lettered, job.dead_letters_by_reason) == (2, {"violated_expectation": 2})
        again = client.start_stream_to_online_ingestion("trips")  # committed past the dead-lettered records
        assert not again.wait_until(lambda j: j.records_consumed > 0, 3)
        again.stop()
        deadline = time.monotonic() + 10  # the job records are closed by a reporter thread
        while client.list_jobs("trips") and time.monotonic() < deadline:
            time.sleep(0.05)
    letters = consume_all(kafka_broker, f"{topic}.dlq", 2)
    assert [letter.value() for letter in letters] == [records[1], records[2]]
    headers = [dict(letter.headers() or []) for letter in letters]
    assert [(h["provender.offset"], h["provender.reason"], h["provender.error"]) for h in headers] == [
        (b"1", b"violated_expectation", b"expectation trips_today: between(0, 100)"),
        (b"2", b"violated_expectation", b"expectation trips_today: not_null"),
    ]
    assert [h["trace-id"] for h in headers] == [b"t1", b"t2"]
    assert all(h["provender.table"] == b"trips" and h["provender.topic"] == topic.encode() for h in headers)
