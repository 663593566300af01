"""A corrupt stored value gives that value CORRUPT (counted, logged with its key); its neighbours are read.

Each case damages the stored row of driver 1001 in the real SQLite online store in another way,
keeping the header that says which schema wrote it (so the row is not simply "another schema").
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import msgpack  # type: ignore[import-untyped]
import pytest

from provender.online.codec import HEADER_BYTES
from provender.serving.http import ServingApp
from provender.serving.service import FeatureService
from tests.unit.serving.conftest import call, post

DAMAGE = {
    "garbage": lambda head: head + b"\xc1\xc1\xc1",
    "truncated": lambda head: head + msgpack.packb([0.5, 1.0, 7])[:-2],
    "too few values": lambda head: head + msgpack.packb([0.5]),
    "too many values": lambda head: head + msgpack.packb([0.5, 1.0, 7, 8]),
    "not a list": lambda head: head + msgpack.packb(42),
    "trailing bytes": lambda head: head + msgpack.packb([0.5, 1.0, 7]) + b"\x00",
    "nothing after the header": lambda head: head,
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_one_corrupt_value_does_not_fail_the_request(
    served: tuple[FeatureService, ServingApp], tmp_path: Path, damage: object, caplog: pytest.LogCaptureFixture
) -> None:
    _, app = served
    db = sqlite3.connect(tmp_path / "online.db")
    rows = db.execute("SELECT entity_key, value FROM online_rows WHERE feature_table = 'driver_stats'").fetchall()
    assert len(rows) == 2
    key, value = rows[0]
    with db:
        db.execute("UPDATE online_rows SET value = ? WHERE entity_key = ?", (damage(value[:HEADER_BYTES]), key))  # type: ignore[operator]
    db.close()
    with caplog.at_level(logging.ERROR, logger="provender.online.codec"):
        answer = post(
            app,
            {"features": ["driver_stats:conv_rate"], "entities": {"driver_id": [1001, 1002]}, "include_statuses": True},
        )
    assert answer.status == 200, answer.body
    body = answer.json()
    statuses = body["statuses"]["driver_stats__conv_rate"]  # type: ignore[index]
    assert sorted(statuses) == ["CORRUPT", "PRESENT"]
    assert key.hex() in caplog.text and "driver_stats" in caplog.text
    metrics = call(app, "GET", "/metrics").body.decode()
    assert 'provender_serving_corrupt_rows_total{table="driver_stats"} 1.0' in metrics
