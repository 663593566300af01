"""``provender serve`` end to end: a real server process over a real Redis.

The server is started as users start it (``provender serve`` in a subprocess, on free ports)
for a temporary project whose online store is the session's redis-server. Reads over HTTP, over
gRPC and in-process must be identical; bad input is 400 / INVALID_ARGUMENT; a Redis outage is
503 / UNAVAILABLE and the server recovers when Redis returns.
"""

from __future__ import annotations

import http.client
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import orjson
import pytest
import yaml

import provender as pv
from provender.online.redis import RedisStore
from provender.wire._proto import serving_pb2 as pb
from tests.support.online import ALL_TYPES_TABLE, BASE_TIME, DRIVER, DRIVER_STATS, SOURCE, batch, same
from tests.support.registries import registry_url
from tests.support.services import RedisServer, free_port, on_free_ports, read_log, wait_serving

pytestmark = pytest.mark.service

GRPC_METHOD = "/provender.serving.v1.ServingService/GetOnlineFeatures"
STALE = pv.FeatureTable(
    name="stale",
    entities=["driver_id"],
    features=[pv.Feature("level", pv.ValueType.INT32)],
    batch_source=SOURCE,
    max_age=timedelta(hours=1),
)
NOW = datetime.now(UTC)


# ------------------------------------------------------------------------------ helpers


@dataclass(frozen=True)
class ProjectFolder:
    """A project folder holding its ``provender.yaml``: what :func:`start_server` serves."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "provender.yaml"


@dataclass
class Project:
    """A temporary project directory served from Redis."""

    root: Path
    redis: RedisServer
    key_prefix: str

    @property
    def config(self) -> Path:
        return self.root / "provender.yaml"

    def client(self, **kwargs: object) -> pv.Client:
        return pv.Client(self.config, **kwargs)  # type: ignore[arg-type]

    def store(self) -> RedisStore:
        return RedisStore.from_options(
            {"url": self.redis.url, "key_prefix": self.key_prefix}, base_dir=self.root, project="default"
        )


def make_project(root: Path, redis: RedisServer, serving: Mapping[str, object] | None = None) -> Project:
    """Write provender.yaml, register the test tables and store their rows."""
    root.mkdir(parents=True, exist_ok=True)
    project = Project(root, redis, key_prefix=f"pve2e{uuid.uuid4().hex[:8]}")
    config = {
        "project": "default",
        "registry": registry_url(root),
        "online": {"store": "redis", "url": redis.url, "key_prefix": project.key_prefix},
        "serving": {"registry_refresh_seconds": 0.3, "max_entity_rows": 50, **(serving or {})},
    }
    project.config.write_text(yaml.safe_dump(config))
    with closing(project.client()) as client:
        client.apply([DRIVER, DRIVER_STATS, ALL_TYPES_TABLE, STALE])
    write_rows(project)
    return project


ALL_TYPES_ROWS: list[dict[str, object]] = [
    {
        "driver_id": 1,
        "f_bool": True,
        "f_int32": -(2**31),
        "f_int64": 2**63 - 1,
        "f_float": 0.1,
        "f_double": math.nan,
        "f_string": "héllo, wörld \u2603",
        "f_bytes": b"\x00\xff\x10",
        "f_unix_timestamp": datetime(2026, 5, 4, 3, 2, 1, 123456, tzinfo=UTC),
        "f_bool_list": [True, None, False],
        "f_int32_list": [1, None],
        "f_int64_list": [],
        "f_float_list": [math.inf, None, -1.5],
        "f_double_list": [-math.inf, 2.5],
        "f_string_list": ["a", None, ""],
        "f_bytes_list": [b"", None, b"\x01"],
        "f_unix_timestamp_list": [datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), None],
    },
    {"driver_id": 2},  # every feature null
]


def write_rows(project: Project) -> None:
    """(Re)write the test rows (a restarted Redis comes back empty)."""
    with closing(project.store()) as store:
        store.write(
            DRIVER_STATS,
            batch(
                DRIVER_STATS,
                [
                    {"driver_id": 1001, "conv_rate": 0.5, "acc_rate": 0.25, "trips": 7},
                    {"driver_id": 1002, "conv_rate": 0.75, "acc_rate": None, "trips": 3},
                ],
            ),
        )
        store.write(ALL_TYPES_TABLE, batch(ALL_TYPES_TABLE, ALL_TYPES_ROWS))
        rows = [
            {"driver_id": 1001, "level": 1, "event_timestamp": BASE_TIME},
            {"driver_id": 1002, "level": 2, "event_timestamp": NOW},
        ]
        store.write(STALE, batch(STALE, rows))


@dataclass
class Server:
    """A ``provender serve`` process."""

    proc: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    log: Path
    channels: list[grpc.Channel] = field(default_factory=list)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}"

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=dict(headers or {}))
            response = connection.getresponse()
            return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
        finally:
            connection.close()

    def post(self, payload: object, headers: Mapping[str, str] | None = None) -> tuple[int, dict[str, object]]:
        status, body, _ = self.request("POST", "/v1/online-features", orjson.dumps(payload), headers)
        data = orjson.loads(body)
        assert isinstance(data, dict)
        return status, data

    def grpc_call(
        self, request: pb.GetOnlineFeaturesRequest, metadata: Sequence[tuple[str, str]] = ()
    ) -> pb.GetOnlineFeaturesResponse:
        channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")
        self.channels.append(channel)
        call = channel.unary_unary(
            GRPC_METHOD,
            request_serializer=pb.GetOnlineFeaturesRequest.SerializeToString,
            response_deserializer=pb.GetOnlineFeaturesResponse.FromString,
        )
        response: pb.GetOnlineFeaturesResponse = call(request, timeout=30, metadata=tuple(metadata) or None)
        return response

    def metrics(self) -> str:
        return self.request("GET", "/metrics")[1].decode()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM the server and return its exit code."""
        for channel in self.channels:
            channel.close()
        self.channels.clear()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def start_server(project: Project | ProjectFolder, *args: str, env: Mapping[str, str] | None = None) -> Server:
    """Start ``provender serve`` for ``project`` on free ports; wait until /v1/ready answers 200."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PROVENDER_")}
    environment.update(env or {})

    def start() -> Server:
        http_port, grpc_port = free_port(), free_port()
        log = project.root / f"serve-{http_port}.log"
        argv = [
            sys.executable,
            "-c",
            "from provender.cli.main import main; main()",
            "--config",
            str(project.config),
            "serve",
            "--http-port",
            str(http_port),
            "--grpc-port",
            str(grpc_port),
            *args,
        ]
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=project.root, env=environment)
        server = Server(proc, http_port, grpc_port, log)

        def ready() -> bool:
            try:
                return server.request("GET", "/v1/ready")[0] == 200
            except OSError:
                return False

        try:
            wait_serving(
                ready,
                "provender serve",
                log,
                pid=proc.pid,
                ports=[http_port],
                optional_ports=[grpc_port],  # grpc: off in some projects' settings
                alive=lambda: proc.poll() is None,
            )
        except RuntimeError:
            proc.kill()
            proc.wait()
            raise
        return server

    return on_free_ports(start)


def entity_column(name: str, values: Sequence[int]) -> pb.Column:
    column = pb.Column(name=name)
    column.int64_values.values.extend(values)
    return column


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def project(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Project:
    return make_project(tmp_path_factory.mktemp("serving"), redis_server)


@pytest.fixture(scope="module")
def server(project: Project) -> Iterator[Server]:
    server = start_server(project)
    try:
        yield server
    finally:
        assert server.stop() == 0, read_log(server.log)


# ------------------------------------------------------------------------------ tests


def test_http_answers_columns_and_statuses(server: Server) -> None:
    status, body = server.post(
        {
            "features": ["driver_stats:trips", "stale:level"],
            "entities": {"driver_id": [1001, 1002, 4242]},
            "include_statuses": True,
        }
    )
    assert status == 200, body
    assert body == {
        "columns": {
            "driver_id": [1001, 1002, 4242],
            "driver_stats__trips": [7, 3, None],
            "stale__level": [None, 2, None],
        },
        "statuses": {
            "driver_stats__trips": ["PRESENT", "PRESENT", "NOT_FOUND"],
            "stale__level": ["OUTSIDE_MAX_AGE", "PRESENT", "NOT_FOUND"],
        },
    }


def test_in_process_http_and_grpc_reads_are_identical(project: Project, server: Server) -> None:
    refs = ["all_types", "driver_stats:acc_rate", "stale", "driver_stats:trips"]
    rows: list[dict[str, object]] = [
        {"driver_id": 1, "note": "x"},
        {"driver_id": 2, "note": None},
        {"driver_id": 3, "note": "z"},
    ]
    clients = {
        "in-process": project.client(),
        "http": project.client(serving_url=server.http_url),
        "grpc": project.client(serving_url=server.grpc_url),
    }
    try:
        answers = {name: client.get_online_features(refs, rows) for name, client in clients.items()}
        expected = answers["in-process"]
        assert expected.to_dict()["all_types__f_string"] == ["héllo, wörld \u2603", None, None]
        for name in ("http", "grpc"):
            got = answers[name]
            assert list(got.to_dict()) == list(expected.to_dict()), name
            for column, values in expected.to_dict().items():
                assert same(got.to_dict()[column], values), (name, column, got.to_dict()[column], values)
            assert got.statuses() == expected.statuses(), name
            assert got.to_arrow().schema == expected.to_arrow().schema, name
            assert (got.entity_columns, got.feature_columns) == (expected.entity_columns, expected.feature_columns)
            assert len(got) == len(expected) == 3
    finally:
        for client in clients.values():
            client.close()


def test_bad_requests_are_invalid_argument_naming_the_problem(project: Project, server: Server) -> None:
    status, raw, _ = server.request("POST", "/v1/online-features", b'{"features": [')
    assert status == 400 and b"not valid JSON" in raw
    cases = [
        ({"features": ["driver_stat"], "entities": {"driver_id": [1]}}, "FeatureTableNotFoundError", "driver_stats"),
        ({"features": ["driver_stats:nope"], "entities": {"driver_id": [1]}}, "FeatureRefError", "nope"),
        ({"features": ["driver_stats"], "entities": {"driver_id": ["1"]}}, "DataError", "INT64"),
        ({"features": ["driver_stats"], "entities": {"customer": [1]}}, "DataError", "driver_id"),
    ]
    for payload, kind, words in cases:
        status, body = server.post(payload)
        error = body["error"]
        assert isinstance(error, dict)
        assert (status, error["code"], error["type"]) == (400, "INVALID_ARGUMENT", kind), body
        assert words in error["message"]
    status, body = server.post({"features": ["driver_stats"], "entities": {"driver_id": list(range(51))}})
    assert (status, body["error"]["code"]) == (413, "RESOURCE_EXHAUSTED"), body  # type: ignore[index]
    assert "limit of 50 (serving.max_entity_rows)" in body["error"]["message"]  # type: ignore[index]
    status, body = server.post({"features": ["driver_stats"], "entities": {"driver_id": [1]}, "project": "nope"})
    assert status == 404

    # gRPC: the same codes, and the SDK raises the same error types as in-process reads.
    with pytest.raises(grpc.RpcError) as excinfo:
        server.grpc_call(pb.GetOnlineFeaturesRequest(features=["nope"], entities=[entity_column("driver_id", [1])]))
    assert excinfo.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    request = pb.GetOnlineFeaturesRequest(features=["driver_stats"], entities=[entity_column("driver_id", range(51))])
    with pytest.raises(grpc.RpcError) as excinfo:
        server.grpc_call(request)
    assert "limit of 50" in str(excinfo.value.details())
    for url in (server.http_url, server.grpc_url):
        with closing(project.client(serving_url=url)) as client:
            with pytest.raises(pv.FeatureTableNotFoundError, match="Did you mean 'driver_stats'"):
                client.get_online_features(["driver_stat"], [{"driver_id": 1}])
            with pytest.raises(pv.DataError, match="driver_id"):
                client.get_online_features(["driver_stats"], [{"driver_id": "1"}])


def test_health_ready_openapi_and_metrics(server: Server) -> None:
    status, raw, _ = server.request("GET", "/v1/health")
    assert (status, orjson.loads(raw)) == (200, {"status": "ok", "version": pv.__version__})
    assert server.request("GET", "/v1/ready")[0] == 200
    status, raw, _ = server.request("GET", "/v1/openapi.json")
    assert status == 200 and orjson.loads(raw)["paths"]["/v1/online-features"]["post"]
    server.post({"features": ["stale"], "entities": {"driver_id": [1001, 1002, 9]}})
    server.grpc_call(pb.GetOnlineFeaturesRequest(features=["stale"], entities=[entity_column("driver_id", [1002])]))
    text = server.metrics()
    for line in (
        'provender_serving_lookups_total{project="default",status="OUTSIDE_MAX_AGE",table="stale"}',
        'provender_serving_lookups_total{project="default",status="NOT_FOUND",table="stale"}',
        'provender_serving_requests_total{endpoint="GetOnlineFeatures",protocol="grpc",status="OK"}',
        'provender_serving_request_duration_seconds_bucket{endpoint="/v1/online-features",le="0.005",protocol="http"',
        'provender_serving_in_flight_requests{protocol="grpc"}',
        "provender_serving_store_errors_total",
    ):
        assert line in text, line


def test_grpc_health_service(server: Server) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "provender.serving.v1.ServingService"):
            answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_a_newly_applied_table_is_served_without_restart(project: Project, server: Server) -> None:
    table = pv.FeatureTable(
        name=f"late_{uuid.uuid4().hex[:6]}",
        entities=["driver_id"],
        features=[pv.Feature("x", pv.ValueType.INT64)],
        batch_source=SOURCE,
    )
    with closing(project.client()) as client:
        client.apply(table)
    with closing(project.store()) as store:
        store.write(table, batch(table, [{"driver_id": 5, "x": 55}]))
    deadline = time.monotonic() + 10
    while True:
        status, body = server.post({"features": [table.name], "entities": {"driver_id": [5]}})
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status == 200, body
    assert body["columns"] == {"driver_id": [5], f"{table.name}__x": [55]}


def test_a_redis_outage_is_unavailable_and_the_server_recovers(project: Project, server: Server) -> None:
    payload = {"features": ["driver_stats:trips"], "entities": {"driver_id": [1001]}}
    request = pb.GetOnlineFeaturesRequest(
        features=["driver_stats:trips"], entities=[entity_column("driver_id", [1001])]
    )
    assert server.post(payload)[0] == 200
    project.redis.stop()
    try:
        status, body = server.post(payload)
        assert status == 503, body
        assert body["error"]["code"] == "UNAVAILABLE"  # type: ignore[index]
        with pytest.raises(grpc.RpcError) as excinfo:
            server.grpc_call(request)
        assert excinfo.value.code() == grpc.StatusCode.UNAVAILABLE
        with closing(project.client(serving_url=server.http_url)) as client:
            with pytest.raises(pv.BackendError) as raised:
                client.get_online_features(["driver_stats:trips"], [{"driver_id": 1001}])
            assert raised.value.retryable
        assert server.request("GET", "/v1/health")[0] == 200
        assert server.request("GET", "/v1/ready")[0] == 503
        assert 'provender_serving_store_errors_total{project="default",retryable="true"}' in server.metrics()
    finally:
        project.redis.start()
    write_rows(project)
    deadline = time.monotonic() + 15
    while server.post(payload)[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.post(payload) == (200, {"columns": {"driver_id": [1001], "driver_stats__trips": [7]}})
    assert server.grpc_call(request).columns[1].int64_values.values == [7]
    assert server.request("GET", "/v1/ready")[0] == 200
