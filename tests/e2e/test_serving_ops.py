"""``provender serve`` operations: auth, request logging, graceful SIGTERM, several workers."""

from __future__ import annotations

import socket
import time
from contextlib import closing
from pathlib import Path

import grpc
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import provender as pv
from provender.wire._proto import serving_pb2 as pb
from tests.e2e.test_serving import Project, entity_column, make_project, start_server
from tests.support.services import RedisServer, pid_alive, read_log

pytestmark = pytest.mark.service

TOKEN = "e2e-token-6f1c2b"
PAYLOAD = {"features": ["driver_stats:trips"], "entities": {"driver_id": [1001]}}


@pytest.fixture(scope="module")
def project(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Project:
    return make_project(tmp_path_factory.mktemp("serving-ops"), redis_server)


def test_static_tokens_and_the_request_log(redis_server: RedisServer, tmp_path: Path) -> None:
    log_path = tmp_path / "requests.jsonl"
    project = make_project(
        tmp_path / "project",
        redis_server,
        {
            "auth": {"mode": "token", "tokens": {TOKEN: ["default"]}},
            "request_log": {"enabled": True, "sample_rate": 1.0, "path": str(log_path)},
        },
    )
    server = start_server(project)
    try:
        assert server.post(PAYLOAD)[0] == 401
        assert server.post(PAYLOAD, {"Authorization": "Bearer nope"})[0] == 401
        status, body = server.post({**PAYLOAD, "project": "other"}, {"Authorization": f"Bearer {TOKEN}"})
        assert status == 403, body
        status, body = server.post(PAYLOAD, {"Authorization": f"Bearer {TOKEN}"})
        assert (status, body) == (200, {"columns": {"driver_id": [1001], "driver_stats__trips": [7]}})

        request = pb.GetOnlineFeaturesRequest(
            features=["driver_stats:trips"], entities=[entity_column("driver_id", [1001])]
        )
        with pytest.raises(grpc.RpcError) as excinfo:
            server.grpc_call(request)
        assert excinfo.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as excinfo:
            server.grpc_call(
                pb.GetOnlineFeaturesRequest(project="other", features=["x"]), [("authorization", f"Bearer {TOKEN}")]
            )
        assert excinfo.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert server.grpc_call(request, [("authorization", f"Bearer {TOKEN}")]).columns[1].int64_values.values == [7]

        for url in (server.http_url, server.grpc_url):
            with (
                closing(pv.Client(project.config, serving_url=url)) as client,
                pytest.raises(pv.ProvenderError, match="bearer token"),
            ):
                client.get_online_features(["driver_stats:trips"], [{"driver_id": 1001}])
            settings = pv.load_settings(project.config, overrides={"serving_url": url, "serving_token": TOKEN})
            with closing(pv.Client(settings=settings)) as client:
                assert client.get_online_features(["driver_stats:trips"], [{"driver_id": 1001}]).to_dict() == {
                    "driver_id": [1001],
                    "driver_stats__trips": [7],
                }
    finally:
        assert server.stop() == 0
    lines = [orjson.loads(line) for line in log_path.read_bytes().splitlines()]
    assert len(lines) >= 9
    assert {line["protocol"] for line in lines} == {"http", "grpc"}
    assert {"200", "401", "403", "OK", "UNAUTHENTICATED"} <= {line["status"] for line in lines}
    assert TOKEN not in log_path.read_text() + read_log(server.log)


def rsa_keys() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def test_jwts_signed_hs256_or_rs256(redis_server: RedisServer, tmp_path: Path) -> None:
    secret = "e2e-shared-secret-with-32-bytes-or-more"
    private, public = rsa_keys()
    auth = {"mode": "jwt", "jwt_secret": secret, "jwt_public_key": public, "projects_claim": "pv_projects"}
    project = make_project(tmp_path, redis_server, {"auth": auth})
    server = start_server(project)
    exp = int(time.time()) + 600
    try:
        hs = jwt.encode({"pv_projects": ["default"], "exp": exp}, secret, algorithm="HS256")
        rs = jwt.encode({"pv_projects": "default", "exp": exp}, private, algorithm="RS256")
        other = jwt.encode({"pv_projects": ["fraud"], "exp": exp}, private, algorithm="RS256")
        expired = jwt.encode({"pv_projects": ["default"], "exp": int(time.time()) - 5}, secret, algorithm="HS256")
        assert server.post(PAYLOAD, {"Authorization": f"Bearer {hs}"})[0] == 200
        assert server.post(PAYLOAD, {"Authorization": f"Bearer {rs}"})[0] == 200
        assert server.post(PAYLOAD, {"Authorization": f"Bearer {other}"})[0] == 403
        status, body = server.post(PAYLOAD, {"Authorization": f"Bearer {expired}"})
        assert status == 401 and "expired" in str(body)
        request = pb.GetOnlineFeaturesRequest(features=["driver_stats"], entities=[entity_column("driver_id", [1001])])
        assert server.grpc_call(request, [("authorization", f"Bearer {rs}")]).columns
        with pytest.raises(grpc.RpcError) as excinfo:
            server.grpc_call(request, [("authorization", f"Bearer {other}")])
        assert excinfo.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        assert server.stop() == 0
    assert secret not in read_log(server.log)


def test_sigterm_lets_in_flight_requests_finish(project: Project) -> None:
    server = start_server(project)
    body = orjson.dumps(PAYLOAD)
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=30) as sock:
        head = (
            f"POST /v1/online-features HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        sock.sendall(head + body[:10])  # the request is in flight: its body is half sent
        time.sleep(0.3)
        server.proc.terminate()
        time.sleep(0.5)
        assert server.proc.poll() is None, "the server exited with a request in flight"
        with pytest.raises(OSError):  # no new connections once stopping
            socket.create_connection(("127.0.0.1", server.http_port), timeout=2).close()
        sock.sendall(body[10:])
        answer = b""
        while b"driver_stats__trips" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert b'"driver_stats__trips":[7]' in answer
    assert server.proc.wait(30) == 0, read_log(server.log)


def test_several_workers_share_the_ports(project: Project, tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    server = start_server(project, "--workers", "2", env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    try:
        deadline = time.monotonic() + 60
        while read_log(server.log).count("serving http=") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # ready means one worker listens; wait for the other too
        children = _children(server.proc.pid)
        assert len(children) == 2
        # A new connection per request: the kernel spreads them over both workers.
        for _ in range(40):
            assert server.post(PAYLOAD)[0] == 200
        request = pb.GetOnlineFeaturesRequest(features=["driver_stats"], entities=[entity_column("driver_id", [1001])])
        assert server.grpc_call(request).columns[1].name == "driver_stats__conv_rate"
        # A worker's latency histogram file appears with its first request.
        assert all((metrics_dir / f"histogram_{pid}.db").exists() for pid in children), list(metrics_dir.iterdir())
        text = server.metrics()
        total = _sample(
            text, 'provender_serving_requests_total{endpoint="/v1/online-features",protocol="http",status="200"}'
        )
        assert total == 40, text  # summed over both workers
    finally:
        assert server.stop() == 0, read_log(server.log)
    assert not any(pid_alive(pid) for pid in children)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    pids = [int(part) for part in text.split()]
    # multiprocessing's resource tracker is a child too; workers run the serving loop.
    return [child for child in pids if "resource_tracker" not in Path(f"/proc/{child}/cmdline").read_text()]


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
