"""A refused request is freed as soon as it is answered, over HTTP and gRPC: nothing waits for the cyclic GC.

An error kept in a local variable of the handler forms a cycle (error -> traceback -> frame ->
error) that holds the request's body and decoded values until the cyclic GC runs; under a flood
of refused requests of up to ``serving.max_request_bytes`` each, they piled up (hundreds of MB).
With the GC off, each refusal here raises an error the test holds a weak reference to; once the
answer is sent, the error (and so the frame holding the request) must be gone.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import grpc
import pytest

from provender.errors import RequestTooLargeError
from provender.serving.grpc import SERVICE_NAME, create_grpc_server
from provender.serving.http import ServingApp
from provender.serving.limits import RequestLimits
from provender.serving.service import FeatureService
from provender.wire._proto import serving_pb2 as pb
from tests.unit.serving.conftest import post

REFUSED = {"features": ["driver_stats:trips"] * 20, "entities": {"driver_id": [1]}}


@pytest.fixture
def raised(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[weakref.ref[BaseException]]]:
    """Every refusal by count raises an error whose weak reference is collected here; the GC is off."""
    refs: list[weakref.ref[BaseException]] = []

    def refuse(self: RequestLimits, refs_count: int, columns: int) -> None:
        error = RequestTooLargeError(f"{refs_count} feature refs, over serving.max_feature_refs")
        refs.append(weakref.ref(error))
        try:
            raise error
        finally:
            del error  # this frame must not hold it either (the traceback holds the frame)

    monkeypatch.setattr(RequestLimits, "check_counts", refuse)
    gc.disable()
    try:
        yield refs
    finally:
        gc.enable()


def test_a_refused_http_request_is_freed_when_answered(
    served: tuple[FeatureService, ServingApp], raised: list[weakref.ref[BaseException]]
) -> None:
    _, app = served
    for _ in range(5):
        assert post(app, REFUSED).status == 413
    assert len(raised) == 5
    assert all(ref() is None for ref in raised), "a refused request is kept alive by a reference cycle"


def test_a_refused_grpc_request_is_freed_when_answered(
    served: tuple[FeatureService, ServingApp], raised: list[weakref.ref[BaseException]]
) -> None:
    service, _ = served

    async def scenario() -> list[grpc.StatusCode]:
        server, _, port = create_grpc_server(service, address="127.0.0.1:0", reuse_port=False)
        await server.start()
        codes = []
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = channel.unary_unary(
                    f"/{SERVICE_NAME}/GetOnlineFeatures",
                    request_serializer=pb.GetOnlineFeaturesRequest.SerializeToString,
                    response_deserializer=pb.GetOnlineFeaturesResponse.FromString,
                )
                request = pb.GetOnlineFeaturesRequest(features=["driver_stats:trips"] * 20)
                request.entities.add(name="driver_id").int64_values.values.append(1)
                for _ in range(5):
                    try:
                        await call(request, timeout=30)
                    except grpc.aio.AioRpcError as exc:
                        codes.append(exc.code())
        finally:
            await server.stop(None)
        return codes

    assert asyncio.run(scenario()) == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 5
    assert len(raised) == 5
    assert all(ref() is None for ref in raised), "a refused request is kept alive by a reference cycle"
