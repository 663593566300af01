"""A corrupt stored value reads as ``CORRUPT`` on every path, in SQLite and Redis alike.

The stored bytes of two entity keys are damaged in the real store (after the header that names
the schema, so the rows are not merely "another schema"): garbage, and a truncated msgpack
array. Then the in-process client, ``provender serve`` over HTTP and gRPC, and the remote clients
all give those values null with the status ``CORRUPT``, the intact key ``PRESENT`` and a missing
one ``NOT_FOUND``; a table with ``max_age`` does not hide the damage as ``OUTSIDE_MAX_AGE``.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgpack  # type: ignore[import-untyped]
import pytest
import redis
import yaml

import provender as pv
from provender.config import load_settings
from provender.online.codec import HEADER_BYTES
from provender.wire._proto import serving_pb2 as pb
from tests.e2e.test_serving import ProjectFolder, Server, entity_column, start_server
from tests.support.online import DRIVER, DRIVER_STATS, batch
from tests.support.services import RedisServer, read_log

FRESH = pv.FeatureTable(
    name="fresh_stats",
    entities=["driver_id"],
    features=[pv.Feature("level", pv.ValueType.INT64)],
    batch_source=DRIVER_STATS.batch_source,
    max_age=timedelta(days=1),
)
IDS = [1001, 1002, 1003, 1004]  # 1001 and 1002 damaged, 1003 intact, 1004 never stored
EXPECTED = ["CORRUPT", "CORRUPT", "PRESENT", "NOT_FOUND"]
REFS = ["driver_stats:trips", "fresh_stats:level"]
DAMAGE: dict[int, Callable[[bytes], bytes]] = {
    1001: lambda head: head + b"\xc1\xc1\xc1",
    1002: lambda head: head + msgpack.packb([0.5, 1.0, 7])[:-2],
}


def _damage_sqlite(path: Path) -> int:
    db = sqlite3.connect(path)
    damaged = 0
    with db:
        for table, key, value in db.execute("SELECT feature_table, entity_key, value FROM online_rows").fetchall():
            damage = DAMAGE.get(int(bytes(key).rsplit(b":", 1)[1]))  # keys are b"driver_id=i:1001"
            if damage is not None:
                db.execute(
                    "UPDATE online_rows SET value = ? WHERE feature_table = ? AND entity_key = ?",
                    (damage(value[:HEADER_BYTES]), table, key),
                )
                damaged += 1
    db.close()
    return damaged


def _damage_redis(url: str, prefix: str) -> int:
    client = redis.Redis.from_url(url)
    damaged = 0
    for driver, damage in DAMAGE.items():
        for key in client.scan_iter(match=f"{prefix}:default:{{driver_id=i:{driver}}}:*".encode()):
            value = client.get(key)
            assert isinstance(value, bytes)
            client.set(key, damage(value[:HEADER_BYTES]))
            damaged += 1
    client.close()
    return damaged


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ProjectFolder:
    root = tmp_path_factory.mktemp(f"corrupt-{request.param}")
    prefix = f"pvc{uuid.uuid4().hex[:8]}"
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        online: dict[str, object] = {"store": "redis", "url": server.url, "key_prefix": prefix}
    else:
        online = {"store": "sqlite", "path": "online.db"}
    config = {"registry": "sqlite:///registry.db", "online": online, "serving": {"projects": ["default"]}}
    (root / "provender.yaml").write_text(yaml.safe_dump(config))
    now = datetime.now(UTC) - timedelta(minutes=5)
    with pv.Client(root / "provender.yaml") as client:
        client.apply([DRIVER, DRIVER_STATS, FRESH])
        rows = [{"driver_id": i, "trips": i, "level": i, "event_timestamp": now} for i in IDS[:3]]
        client._online_store.write(DRIVER_STATS, batch(DRIVER_STATS, rows))
        client._online_store.write(FRESH, batch(FRESH, rows))
    damaged = _damage_redis(server.url, prefix) if request.param == "redis" else _damage_sqlite(root / "online.db")
    assert damaged == 4  # two keys x two tables
    return ProjectFolder(root)


@pytest.fixture(scope="module")
def server(project: ProjectFolder) -> Iterator[Server]:
    started = start_server(project)
    try:
        yield started
    finally:
        assert started.stop() == 0, read_log(started.log)


def _check(columns: dict[str, list[object]], statuses: dict[str, list[str]]) -> None:
    assert statuses == {"driver_stats__trips": EXPECTED, "fresh_stats__level": EXPECTED}
    assert columns["driver_stats__trips"] == [None, None, 1003, None]
    assert columns["fresh_stats__level"] == [None, None, 1003, None]


def test_in_process_reads_say_corrupt(project: ProjectFolder) -> None:
    with pv.Client(project.config) as client:
        response = client.get_online_features(REFS, [{"driver_id": i} for i in IDS])
        _check(response.to_dict(), response.statuses())  # type: ignore[arg-type]


def test_http_and_grpc_say_corrupt(server: Server) -> None:
    status, body = server.post({"features": REFS, "entities": {"driver_id": IDS}, "include_statuses": True})
    assert status == 200, body
    _check(body["columns"], body["statuses"])  # type: ignore[arg-type]
    answer = server.grpc_call(
        pb.GetOnlineFeaturesRequest(features=REFS, entities=[entity_column("driver_id", IDS)], include_statuses=True)
    )
    corrupt = pb.FEATURE_STATUS_CORRUPT
    for column in answer.statuses:
        assert list(column.statuses)[:2] == [corrupt, corrupt]
        assert pb.FeatureStatus.Name(column.statuses[2]) == "FEATURE_STATUS_PRESENT"
    metrics = server.metrics()
    assert 'status="CORRUPT",table="driver_stats"' in metrics or 'table="driver_stats",status="CORRUPT"' in metrics
    assert "provender_serving_corrupt_rows_total" in metrics


def test_remote_clients_say_corrupt(server: Server, project: ProjectFolder) -> None:
    for url in (server.http_url, server.grpc_url):
        settings = load_settings(
            environ={}, overrides={"serving_url": url, "registry": f"sqlite:///{project.root / 'registry.db'}"}
        )
        with pv.Client(settings=settings) as client:
            response = client.get_online_features(REFS, [{"driver_id": i} for i in IDS])
            _check(response.to_dict(), response.statuses())  # type: ignore[arg-type]
