"""Every ``serving.max_*`` limit holds over HTTP and gRPC against a real ``provender serve``.

Each limit is exceeded by several sizes and shapes; each answer is 413 / RESOURCE_EXHAUSTED
naming the setting, and the server keeps answering ordinary requests.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import grpc
import orjson
import pytest
import yaml

import provender as pv
from provender.wire._proto import serving_pb2 as pb
from tests.e2e.test_serving import ProjectFolder, Server, entity_column, start_server
from tests.support.online import DRIVER, DRIVER_STATS, batch
from tests.support.registries import registry_url
from tests.support.services import read_log

LIMITS = {
    "max_feature_refs": 4,
    "max_entity_rows": 5,
    "max_entity_columns": 3,
    "max_request_bytes": 4096,
    "max_value_depth": 4,
}
REFS = ["driver_stats:conv_rate", "driver_stats:acc_rate", "driver_stats:trips"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("limits")
    config = {
        "registry": registry_url(root),
        "online": {"store": "sqlite", "path": "online.db"},
        "serving": {"projects": ["default"], **LIMITS},
    }
    (root / "provender.yaml").write_text(yaml.safe_dump(config))
    with pv.Client(root / "provender.yaml") as client:
        client.apply([DRIVER, DRIVER_STATS])
        client._online_store.write(DRIVER_STATS, batch(DRIVER_STATS, [{"driver_id": 1, "trips": 2}]))
    started = start_server(ProjectFolder(root))
    try:
        yield started
    finally:
        assert started.stop() == 0, read_log(started.log)


def _http(server: Server, payload: object) -> tuple[int, str]:
    status, body = server.post(payload)
    error = body.get("error")
    return status, "" if not isinstance(error, dict) else str(error["message"])


def _grpc(server: Server, request: pb.GetOnlineFeaturesRequest) -> tuple[grpc.StatusCode, str]:
    try:
        server.grpc_call(request)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def _ordinary_requests_still_work(server: Server) -> None:
    status, body = server.post({"features": REFS, "entities": {"driver_id": [1]}})
    assert status == 200, body
    assert body["columns"]["driver_stats__trips"] == [2]  # type: ignore[index]
    request = pb.GetOnlineFeaturesRequest(features=REFS, entities=[entity_column("driver_id", [1])])
    assert server.grpc_call(request).columns[-1].int64_values.values == [2]


@pytest.mark.parametrize("count", [5, 17, 150])
def test_too_many_feature_refs(server: Server, count: int) -> None:
    refs = [REFS[i % 3] for i in range(count)]
    status, message = _http(server, {"features": refs, "entities": {"driver_id": [1]}})
    assert status == 413 and "serving.max_feature_refs" in message and f"{count} feature refs" in message
    code, details = _grpc(
        server, pb.GetOnlineFeaturesRequest(features=refs, entities=[entity_column("driver_id", [1])])
    )
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "serving.max_feature_refs" in details
    _ordinary_requests_still_work(server)


@pytest.mark.parametrize("rows", [6, 40, 300])
def test_too_many_entity_rows(server: Server, rows: int) -> None:
    status, message = _http(server, {"features": REFS, "entities": {"driver_id": list(range(rows))}})
    assert status == 413 and "serving.max_entity_rows" in message
    request = pb.GetOnlineFeaturesRequest(features=REFS, entities=[entity_column("driver_id", list(range(rows)))])
    code, details = _grpc(server, request)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "serving.max_entity_rows" in details


@pytest.mark.parametrize("columns", [4, 12, 90])
def test_too_many_entity_columns(server: Server, columns: int) -> None:
    entities = {"driver_id": [1], **{f"c{i}": [i] for i in range(columns - 1)}}
    status, message = _http(server, {"features": REFS, "entities": entities})
    assert status == 413 and "serving.max_entity_columns" in message
    request = pb.GetOnlineFeaturesRequest(
        features=REFS, entities=[entity_column(name, values) for name, values in entities.items()]
    )
    code, details = _grpc(server, request)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "serving.max_entity_columns" in details


def _nested(depth: int, *, mapping: bool) -> str:
    """A JSON value nesting ``depth`` arrays or objects (as text: orjson dumps at most 254 deep)."""
    if mapping:
        return '{"k":' * depth + "1" + "}" * depth
    return "[" * depth + "1" + "]" * depth


@pytest.mark.parametrize("depth", [5, 60, 600, 1500, 3000])
@pytest.mark.parametrize("mapping", [False, True])
@pytest.mark.parametrize("column", ["driver_id", "passthrough"])
def test_too_deeply_nested_values(server: Server, depth: int, mapping: bool, column: str) -> None:
    value = _nested(depth, mapping=mapping)
    text = f'{{"features": {orjson.dumps(REFS).decode()}, "entities": {{"driver_id": [1], "{column}": [{value}]}}}}'
    status, raw, _ = server.request("POST", "/v1/online-features", text.encode())
    message = orjson.loads(raw)["error"]["message"]
    if len(text) > LIMITS["max_request_bytes"]:
        assert status == 413 and "serving.max_request_bytes" in message, message
    elif depth > 1000:  # deeper than the JSON parser follows: invalid JSON
        assert status == 400 and "not valid JSON" in message, message
    else:
        assert status == 413 and "serving.max_value_depth" in message, message
    _ordinary_requests_still_work(server)


def test_values_within_the_depth_limit_pass_through(server: Server) -> None:
    value = [[[[1]]]]
    status, body = server.post({"features": REFS, "entities": {"driver_id": [1], "note": [value]}})
    assert status == 200 and body["columns"]["note"] == [value]  # type: ignore[index]


@pytest.mark.parametrize("size", [4200, 5000, 8000, 100_000, 3_000_000])
def test_too_large_bodies_and_messages(server: Server, size: int) -> None:
    payload = {"features": REFS, "entities": {"driver_id": [1], "note": ["x" * size]}}
    status, message = _http(server, payload)
    assert status == 413 and "serving.max_request_bytes" in message
    # Declared and streamed (chunked) bodies alike.
    body = orjson.dumps(payload)
    status_chunked, raw, _ = server.request(
        "POST",
        "/v1/online-features",
        iter([body[i : i + 65536] for i in range(0, len(body), 65536)]),  # type: ignore[arg-type]
    )
    assert status_chunked == 413 and b"serving.max_request_bytes" in raw
    note = pb.Column(name="note")
    note.string_values.values.append("x" * size)
    code, details = _grpc(
        server, pb.GetOnlineFeaturesRequest(features=REFS, entities=[entity_column("driver_id", [1]), note])
    )
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    if size < 2 * LIMITS["max_request_bytes"]:  # beyond twice the limit grpc refuses it itself (sizes only)
        assert "serving.max_request_bytes" in details and "bytes" in details, details
    _ordinary_requests_still_work(server)


def test_remote_clients_get_request_too_large(server: Server, tmp_path: Path) -> None:
    from provender.config import load_settings

    for url in (server.http_url, server.grpc_url):
        settings = load_settings(environ={}, overrides={"serving_url": url, "registry": f"sqlite:///{tmp_path}/r.db"})
        with pv.Client(settings=settings) as client, pytest.raises(pv.errors.RequestTooLargeError, match="max_"):
            client.get_online_features(REFS, [{"driver_id": 1, "note": "x" * 10_000}])


# -- client input never gets a 500 -----------------------------------------------------------------


@pytest.mark.parametrize("micros", [2**62, -(2**62), 2**63 - 1, -(2**63), 253402300800 * 10**6])
@pytest.mark.parametrize("column", ["driver_id", "passthrough"])
def test_out_of_range_grpc_timestamps_are_invalid_argument(server: Server, micros: int, column: str) -> None:
    when = pb.Column(name=column)
    when.unix_timestamp_us_values.values.append(micros)
    columns = [when] if column == "driver_id" else [entity_column("driver_id", [1]), when]
    code, details = _grpc(server, pb.GetOnlineFeaturesRequest(features=REFS, entities=columns))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and repr(column) in details, details


VALID = pb.GetOnlineFeaturesRequest(features=REFS, entities=[entity_column("driver_id", [1])]).SerializeToString()


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xff\xff", b"\x0a\xff", VALID[:-3], VALID[:7], b"\x0a\x05ab", bytes(range(256)) * 3],
    ids=["garbage", "bad-length", "truncated", "cut-short", "short-string", "all-bytes"],
)
def test_undecodable_grpc_messages_are_invalid_argument(server: Server, raw: bytes) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    try:
        call = channel.unary_unary(
            "/provender.serving.v1.ServingService/GetOnlineFeatures",
            request_serializer=None,
            response_deserializer=None,
        )
        with pytest.raises(grpc.RpcError) as info:
            call(raw, timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
        assert "not a valid GetOnlineFeaturesRequest" in (info.value.details() or "")
    finally:
        channel.close()
    _ordinary_requests_still_work(server)


# -- response spoofing -----------------------------------------------------------------------------


@pytest.mark.parametrize("column", ["driver_stats__trips", "driver_stats__conv_rate"])
@pytest.mark.parametrize("rows", [0, 1, 3])
def test_pass_through_columns_named_like_results_are_refused(server: Server, column: str, rows: int) -> None:
    ids = list(range(1, rows + 1))
    status, message = _http(server, {"features": REFS, "entities": {"driver_id": ids, column: [7] * rows}})
    assert status == 400 and "named like result columns" in message and column in message
    request = pb.GetOnlineFeaturesRequest(
        features=REFS, entities=[entity_column("driver_id", ids), entity_column(column, [7] * rows)]
    )
    code, details = _grpc(server, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and column in details


# -- limits before work: the counts before decoding, a declared size before reading ---------------


@pytest.mark.parametrize("declared", [4097, 10**6, 10**12, 2**63])
def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent(server: Server, declared: int) -> None:
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/online-features HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n{" % declared
        )
        answer = b""  # the answer comes without the body having been sent
        while b"serving.max_request_bytes" not in answer and (chunk := sock.recv(65536)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"serving.max_request_bytes" in answer
    _ordinary_requests_still_work(server)


def _timestamps(name: str, count: int) -> pb.Column:
    column = pb.Column(name=name)
    column.unix_timestamp_us_values.values.extend([2**62] * count)  # each would fail to decode
    return column


@pytest.mark.parametrize("rows", [6, 300])
def test_grpc_counts_are_checked_before_values_are_decoded(server: Server, rows: int) -> None:
    request = pb.GetOnlineFeaturesRequest(features=REFS, entities=[_timestamps("driver_id", rows)])
    code, details = _grpc(server, request)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "serving.max_entity_rows" in details
    request = pb.GetOnlineFeaturesRequest(features=REFS * 2, entities=[_timestamps("driver_id", 1)])
    code, details = _grpc(server, request)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "serving.max_feature_refs" in details
    request = pb.GetOnlineFeaturesRequest(
        features=REFS, entities=[_timestamps(f"c{i}", 1) for i in range(rows if rows < 100 else 4)]
    )
    code, details = _grpc(server, request)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "serving.max_entity_columns" in details


@pytest.mark.parametrize("count", [5, 60])
def test_http_counts_are_checked_before_values_are_typed(server: Server, count: int) -> None:
    status, message = _http(server, {"features": list(range(count)), "entities": {"driver_id": [1]}})
    assert status == 413 and "serving.max_feature_refs" in message
    status, message = _http(server, {"features": REFS, "entities": {"driver_id": [1], "x": [None] * (count + 1)}})
    assert status == 413 and "serving.max_entity_rows" in message


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (the nesting is built as bytes: the library refuses to)."""
    size, varint = len(payload), b""
    while True:
        byte, size = size & 0x7F, size >> 7
        varint += bytes([byte | (0x80 if size else 0)])
        if not size:
            break
    return bytes([number << 3 | 2]) + varint + payload


@pytest.mark.parametrize("depth", [3, 6, 60, 150, 600])
def test_grpc_list_values_nested_deep_are_4xx_never_internal(server: Server, depth: int) -> None:
    column = pb.Column(name="")
    column.int64_values.values.append(1)
    nested = column.SerializeToString()
    for _ in range(depth):  # Column.list_values (8) -> ListValues.lists (1) -> Column
        nested = _field(8, _field(1, nested))
    note = _field(1, b"note") + nested
    raw = pb.GetOnlineFeaturesRequest(
        features=REFS, entities=[entity_column("driver_id", [1])]
    ).SerializeToString() + _field(2, note)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    try:
        call = channel.unary_unary(
            "/provender.serving.v1.ServingService/GetOnlineFeatures",
            request_serializer=None,
            response_deserializer=None,
        )
        try:
            call(raw, timeout=30)
            code, details = grpc.StatusCode.OK, ""
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
    finally:
        channel.close()
    if depth + 1 <= LIMITS["max_value_depth"]:
        assert code == grpc.StatusCode.OK, details
    else:  # over the depth limit, or deeper than protobuf parses (INVALID_ARGUMENT)
        assert code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT), (code, details)
        assert "serving.max_value_depth" in details or "not a valid GetOnlineFeaturesRequest" in details, details
    _ordinary_requests_still_work(server)
