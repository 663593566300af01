"""The gRPC API (``protos/provender/serving/v1/serving.proto``) over a :class:`FeatureService`.

``provender.serving.v1.ServingService/GetOnlineFeatures`` is the same read as HTTP's
``POST /v1/online-features``; the standard ``grpc.health.v1.Health`` service answers SERVING
for ``""`` always and for the serving service while the online store is up.

The server is grpcio's asyncio server (``grpc.aio``) on the worker's event loop, beside HTTP;
its handler awaits :meth:`FeatureService.read_async`, so with Redis a call never leaves the loop
thread. (The threaded server it replaced handed every call to a read thread and back: the same
CPU time per call in ``benchmarks/serving.py``, and the GIL hand-offs that set its p99.) Most
of a call's CPU time is grpcio's own per-call machinery, not this module (profile in
``docs/scaling.md``).
Errors set the status code of the table in :mod:`~provender.wire.errors`, and the trailing
metadata keys ``provender-error`` (the error type) and ``provender-error-fields-bin`` (its
attributes, a JSON object); the bearer token is read from the ``authorization`` metadata key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from provender.errors import DataError, RequestTooLargeError
from provender.online.read import FeatureStatus
from provender.serving.service import FeatureQuery, FeatureService, QueryResult
from provender.wire._proto import serving_pb2 as pb
from provender.wire.codec import column_length, fill_column, read_column
from provender.wire.errors import grpc_metadata, is_expected, shorten, status_of

log = logging.getLogger(__name__)

SERVICE_NAME = "provender.serving.v1.ServingService"
METHOD = "GetOnlineFeatures"
MAX_SEND_BYTES = 64 * 1024 * 1024
MAX_METADATA_BYTES = 16 * 1024
STATUS_CODES = {
    FeatureStatus.PRESENT: pb.FEATURE_STATUS_PRESENT,
    FeatureStatus.NOT_FOUND: pb.FEATURE_STATUS_NOT_FOUND,
    FeatureStatus.OUTSIDE_MAX_AGE: pb.FEATURE_STATUS_OUTSIDE_MAX_AGE,
    FeatureStatus.NULL_VALUE: pb.FEATURE_STATUS_NULL_VALUE,
    FeatureStatus.CORRUPT: pb.FEATURE_STATUS_CORRUPT,
}


class ServingServicer:
    """Answers ``GetOnlineFeatures`` from a :class:`FeatureService`."""

    def __init__(self, service: FeatureService) -> None:
        self.service = service
        self._metrics = service.metrics
        self._auth = service.auth
        self._request_log = service.request_log
        self._default_project = service.default_project
        self._limits = service.limits

    async def get_online_features(
        self, request: pb.GetOnlineFeaturesRequest | _Undecodable, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.GetOnlineFeaturesResponse:
        """Read the request's features; errors set the status code (see the module docstring)."""
        refused = request if isinstance(request, _Undecodable) else None
        if isinstance(request, _Undecodable):
            request = pb.GetOnlineFeaturesRequest()
        started = time.perf_counter()
        metrics = self._metrics
        metrics.started("grpc")
        project = request.project or self._default_project
        entities: dict[str, list[object]] = {}
        result: QueryResult | None = None
        error: BaseException | None = None
        code = "OK"
        try:
            if refused is not None:
                if refused.size is not None:
                    raise RequestTooLargeError(
                        f"The request message is {refused.size} bytes, larger than this server's limit of "
                        f"{self._limits.max_request_bytes} bytes (serving.max_request_bytes)."
                    )
                raise DataError(f"The request is not a valid GetOnlineFeaturesRequest message: {refused.reason}.")
            if self._auth.is_enabled:
                self._auth.check(_metadata(context, "authorization"), project)
            entities = self._entities(request)
            result = await self.service.read_async(
                FeatureQuery(
                    project=project,
                    features=tuple(request.features),
                    entities=entities,
                    include_statuses=request.include_statuses,
                )
            )
            response = _response(request, result)
        except Exception as exc:
            error = exc
            status = status_of(exc)
            code = status.grpc
            if not is_expected(exc):
                log.error("request failed unexpectedly error=%r", exc, exc_info=exc)
            message = (
                shorten(str(exc)) if is_expected(exc) else f"Internal error ({type(exc).__name__}); see the server log."
            )
            context.set_code(grpc.StatusCode[code])
            context.set_details(message)
            context.set_trailing_metadata(grpc_metadata(exc))
            response = pb.GetOnlineFeaturesResponse()
        seconds = time.perf_counter() - started
        metrics.finished("grpc", METHOD, code, seconds)
        if self._request_log.is_sampled():
            self._request_log.submit(_log_record(project, request, entities, result, code, seconds, error))
        # Break the cycle error -> traceback -> this frame -> error: it would keep the request (up to
        # serving.max_request_bytes, decoded) alive until the cyclic GC ran, and refused requests pile up.
        error = None
        return response

    def _entities(self, request: pb.GetOnlineFeaturesRequest) -> dict[str, list[object]]:
        """Decode the entity columns, after checking the request's counts (refs, columns, rows)."""
        limits = self._limits
        limits.check_counts(len(request.features), len(request.entities))
        limits.check_rows(max((column_length(column) for column in request.entities), default=0))
        entities: dict[str, list[object]] = {}
        rows = -1
        for column in request.entities:
            values = read_column(column)
            if rows < 0:
                rows = len(values)
            elif len(values) != rows:
                raise DataError(
                    f"The entity columns differ in length: {column.name!r} has {len(values)} values, "
                    f"the first column {rows}."
                )
            entities[column.name] = values
        return entities


@dataclass(frozen=True, slots=True)
class _Undecodable:
    """A request not decoded.

    Its bytes did not parse (answered INVALID_ARGUMENT, not grpc's INTERNAL), or, with ``size``,
    it is over ``serving.max_request_bytes`` (RESOURCE_EXHAUSTED naming the setting).
    """

    reason: str
    size: int | None = None


def _decoder(max_bytes: int) -> Callable[[bytes], pb.GetOnlineFeaturesRequest | _Undecodable]:
    """The request deserializer: a message over ``max_bytes`` is refused before it is parsed.

    grpc itself refuses messages over twice the limit as they arrive (its own message gives only
    the sizes); between the two, the refusal names the setting.
    """

    def decode(data: bytes) -> pb.GetOnlineFeaturesRequest | _Undecodable:
        if len(data) > max_bytes:
            return _Undecodable("too large", size=len(data))
        try:
            return pb.GetOnlineFeaturesRequest.FromString(data)
        except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and, for some inputs, others
            return _Undecodable(f"{type(exc).__name__}: {str(exc)[:200]}")

    return decode


def _response(request: pb.GetOnlineFeaturesRequest, result: QueryResult) -> pb.GetOnlineFeaturesResponse:
    response = pb.GetOnlineFeaturesResponse()
    types = result.plan.types
    names = result.plan.feature_columns
    if request.entities:
        response.columns.extend(request.entities)
    else:  # no rows: the entity columns of the requested tables, empty
        for name in result.columns:
            if name not in names:
                response.columns.add().name = name
    for column in response.columns:
        entity_type = types.get(column.name)
        if entity_type is not None:
            column.value_type = entity_type.value
    for name in names:
        column = response.columns.add()
        column.name = name
        column.value_type = types[name].value
        fill_column(column, result.columns[name], types[name])
    if result.statuses is not None:
        codes = STATUS_CODES
        for name in names:
            statuses = response.statuses.add()
            statuses.name = name
            statuses.statuses.extend([codes[status] for status in result.statuses[name]])
    return response


def _metadata(context: grpc.aio.ServicerContext[object, object], key: str) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return value if isinstance(value, str) else value.decode("latin-1")
    return None


def _log_record(  # noqa: PLR0913, PLR0917 - the fields of one request-log line
    project: str,
    request: pb.GetOnlineFeaturesRequest,
    entities: dict[str, list[object]],
    result: QueryResult | None,
    code: str,
    seconds: float,
    error: BaseException | None,
) -> dict[str, object]:
    record: dict[str, object] = {
        "time": datetime.now(UTC).isoformat(),
        "protocol": "grpc",
        "endpoint": METHOD,
        "project": project,
        "status": code,
        "duration_ms": round(seconds * 1000, 3),
        "request": {"features": list(request.features), "entities": entities},
    }
    if result is not None:
        answer: dict[str, object] = {"columns": result.columns}
        if result.statuses is not None:
            answer["statuses"] = result.statuses
        record["response"] = answer
    if error is not None:
        record["error"] = shorten(str(error)) if is_expected(error) else type(error).__name__
    return record


class ServingHealth:
    """The standard health service; the serving service is NOT_SERVING while the store is down."""

    def __init__(self, service: FeatureService) -> None:
        self.service = service
        self.servicer = HealthServicer()
        self._serving: bool | None = None

    async def update(self) -> None:
        """Publish the current status (call periodically)."""
        serving = not self.service.breaker.is_open
        if serving != self._serving:
            self._serving = serving
            status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
            await self.servicer.set("", health_pb2.HealthCheckResponse.SERVING)
            await self.servicer.set(SERVICE_NAME, status)

    async def shutdown(self) -> None:
        """Answer NOT_SERVING for everything (the server is stopping)."""
        await self.servicer.enter_graceful_shutdown()


def create_grpc_server(
    service: FeatureService, *, address: str, reuse_port: bool
) -> tuple[grpc.aio.Server, ServingHealth, int]:
    """Build (not start) the gRPC server on ``address`` (``host:port``), on the running event loop.

    Args:
        service: what to serve.
        address: where to listen; port 0 picks a free one.
        reuse_port: let several worker processes listen on the same port (SO_REUSEPORT).

    Returns:
        The server, its health service, and the port it listens on.
    """
    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            ("grpc.max_receive_message_length", 2 * service.limits.max_request_bytes),
            ("grpc.max_send_message_length", MAX_SEND_BYTES),
            ("grpc.max_metadata_size", MAX_METADATA_BYTES),
        ],
    )
    servicer = ServingServicer(service)
    handler = grpc.method_handlers_generic_handler(
        SERVICE_NAME,
        {
            METHOD: grpc.unary_unary_rpc_method_handler(
                servicer.get_online_features,
                request_deserializer=_decoder(service.limits.max_request_bytes),
                response_serializer=pb.GetOnlineFeaturesResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    checks = ServingHealth(service)
    health_pb2_grpc.add_HealthServicer_to_server(checks.servicer, server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen for gRPC on {address}")
    return server, checks, port
