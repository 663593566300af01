"""The gRPC side of ``test_echoes.py``: no part of a token in UNAUTHENTICATED answers, their trailing
metadata or the request log; long client values shortened in the details and the fields.

A real grpc.aio server of the serving service listens on a loopback port of this process.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import grpc
import pytest

from provender.runtime import Runtime
from provender.serving.grpc import SERVICE_NAME, create_grpc_server
from provender.serving.service import FeatureService
from provender.wire._proto import serving_pb2 as pb
from provender.wire.errors import MAX_ECHO_CHARS
from tests.unit.serving.conftest import project_settings, seed
from tests.unit.serving.test_echoes import MARK, SECRET, TOKENS

METHOD = f"/{SERVICE_NAME}/GetOnlineFeatures"


def _served(tmp_path: Path, serving: dict[str, object]) -> FeatureService:
    settings = project_settings(tmp_path, serving)
    seed(settings)
    service = FeatureService(Runtime(settings))
    service.start()
    return service


def _errors(service: FeatureService, requests: list[tuple[pb.GetOnlineFeaturesRequest, str | None]]) -> list[Failure]:
    """Serve ``service`` over gRPC (grpc.aio, as ``provender serve``) and send ``requests``; return their failures."""

    async def scenario() -> list[Failure]:
        server, _, port = create_grpc_server(service, address="127.0.0.1:0", reuse_port=False)
        await server.start()
        failures = []
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = channel.unary_unary(
                    METHOD,
                    request_serializer=pb.GetOnlineFeaturesRequest.SerializeToString,
                    response_deserializer=pb.GetOnlineFeaturesResponse.FromString,
                )
                for request, token in requests:
                    metadata = None if token is None else (("authorization", f"Bearer {token}"),)
                    try:
                        await call(request, timeout=30, metadata=metadata)
                    except grpc.aio.AioRpcError as exc:
                        # grpc-stubs types these as _Metadatum objects; grpc.aio gives (key, value) pairs.
                        pairs = cast("Iterable[tuple[str, str | bytes]]", exc.trailing_metadata() or ())
                        trailing = [(key, value) for key, value in pairs]
                        failures.append(Failure(exc.code(), exc.details() or "", trailing))
                    else:
                        raise AssertionError("the request was answered")
        finally:
            await server.stop(None)
        return failures

    return asyncio.run(scenario())


@dataclass(frozen=True)
class Failure:
    code: grpc.StatusCode
    details: str
    trailing: list[tuple[str, str | bytes]]


def _request(refs: list[str], driver_id: str | int = 1) -> pb.GetOnlineFeaturesRequest:
    request = pb.GetOnlineFeaturesRequest(features=refs)
    column = request.entities.add(name="driver_id")
    if isinstance(driver_id, str):
        column.string_values.values.append(driver_id)
    else:
        column.int64_values.values.append(driver_id)
    return request


def test_no_part_of_a_token_is_echoed_over_grpc(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    service = _served(
        tmp_path, {"auth": {"mode": "jwt", "jwt_secret": SECRET}, "request_log": {"enabled": True, "path": str(log)}}
    )
    try:
        failures = _errors(service, [(_request(["driver_stats:trips"]), token) for token in TOKENS.values()])
    finally:
        service.close()
    assert len(failures) == len(TOKENS)
    for name, failure in zip(TOKENS, failures, strict=True):
        assert failure.code == grpc.StatusCode.UNAUTHENTICATED, name
        assert MARK not in failure.details, name
        values = b"".join(v if isinstance(v, bytes) else v.encode() for _, v in failure.trailing)
        assert MARK.encode() not in values, name
    text = log.read_text()
    assert text.count('"UNAUTHENTICATED"') == len(TOKENS) and MARK not in text
    assert all(json.loads(line)["protocol"] == "grpc" for line in text.splitlines())


@pytest.mark.parametrize("size", [5_000, 200_000])
def test_long_bad_values_are_shortened_over_grpc(tmp_path: Path, size: int) -> None:
    service = _served(tmp_path, {})
    try:
        failures = _errors(
            service,
            [
                (_request(["driver_stats:" + "r" * size]), None),
                (_request(["t" * size]), None),
                (_request(["driver_stats:trips"], driver_id="9" * size), None),  # a STRING for an INT64 entity
            ],
        )
    finally:
        service.close()
    assert len(failures) == 3
    for failure in failures:
        assert failure.code == grpc.StatusCode.INVALID_ARGUMENT, failure.details[:200]
        assert len(failure.details) <= MAX_ECHO_CHARS + 100 and "chars]" in failure.details, failure.details[:200]
        fields = dict(failure.trailing).get("provender-error-fields-bin", b"")
        assert len(fields) < 4 * MAX_ECHO_CHARS + 1000, len(fields)
