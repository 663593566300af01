"""The HTTP (JSON) API: a minimal ASGI application over a :class:`FeatureService`.

=========================  ====================================================================
``POST /v1/online-features``  ``{"features": [...], "entities": {"driver_id": [1001]}, "project": ...,
                           "include_statuses": bool, "include_types": bool}`` -> ``{"columns": {...},
                           "statuses": {...}, "types": {...}}`` (see :mod:`~provender.serving.schemas`)
``GET /v1/health``         liveness: 200 while the process answers, with the package version
``GET /v1/ready``          readiness: 200 when the online store answers a ping, else 503
``GET /metrics``           Prometheus exposition (:mod:`~provender.serving.metrics`)
``GET /v1/openapi.json``   the OpenAPI 3.1 document
=========================  ====================================================================

Errors answer ``{"error": {"code", "type", "message"}}`` with the status of the one table in
:mod:`~provender.wire.errors`.

Why raw ASGI and no framework: a routing layer, a request object and response classes cost
about as much per request as the whole feature read, and this app has five fixed routes. The
body is parsed with orjson and checked by hand (``schemas.parse_online_request``); the pydantic
models in ``schemas.py`` only describe the API. The store read itself runs on the service's
read threads (``serving.threads``), so the loop keeps serving while it waits for the store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import cast

import orjson

from provender import __version__
from provender.asgi import (
    JSON_HEADERS,
    Headers,
    Receive,
    Scope,
    Send,
    declared_length,
    error_response,
    header,
    lifespan,
    plain_error,
    read_body,
    respond,
)
from provender.errors import ProvenderError
from provender.serving.schemas import OnlineRequest, openapi_document, parse_online_request
from provender.serving.service import FeatureQuery, FeatureService, QueryResult
from provender.wire.codec import decode_base64, json_default, name_non_finite
from provender.wire.errors import is_expected, shorten, status_of

log = logging.getLogger(__name__)

ONLINE_FEATURES = "/v1/online-features"
READY_TIMEOUT_SECONDS = 5.0
DRAIN_BYTES = 16 * 1024 * 1024
"""A refused body declared larger than this is not read: the connection is closed after the answer
(smaller ones are read and discarded, so a client that sends its whole body first sees the 413)."""
_JSON = JSON_HEADERS
_HEALTH = orjson.dumps({"status": "ok", "version": __version__})
_ROUTES = {
    ONLINE_FEATURES: "POST",
    "/v1/health": "GET",
    "/v1/ready": "GET",
    "/metrics": "GET",
    "/v1/openapi.json": "GET",
}


class ServingApp:
    """The ASGI application; build it with :func:`create_app`."""

    def __init__(self, service: FeatureService) -> None:
        self.service = service
        self._metrics = service.metrics
        self._auth = service.auth
        self._open_endpoints = service.serving.auth.open_endpoints
        self._request_log = service.request_log
        self._default_project = service.default_project
        self._limits = service.limits
        self._max_body = service.limits.max_request_bytes
        self._openapi = orjson.dumps(openapi_document())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route a request (or answer the lifespan protocol)."""
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await lifespan(receive, send)
            return
        path = cast(str, scope["path"])
        if path == ONLINE_FEATURES and scope["method"] == "POST":
            await self._online_features(scope, receive, send)
            return
        started = time.perf_counter()
        method = _ROUTES.get(path)
        if method is None:
            status, body, headers = 404, plain_error("NOT_FOUND", "NotFound", f"No route {path!r}."), _JSON
        elif scope["method"] != method:
            status, body = 405, plain_error("INVALID_ARGUMENT", "MethodNotAllowed", f"Use {method} {path}.")
            headers = [*_JSON, (b"allow", method.encode())]
        elif path == "/v1/health":
            status, body, headers = 200, _HEALTH, _JSON
        elif (refused := self._closed_endpoint(scope)) is not None:
            status, body, headers = refused
        elif path == "/v1/ready":
            status, body, headers = await self._ready()
        elif path == "/metrics":
            text, content_type = self._metrics.render()
            status, body, headers = 200, text, [(b"content-type", content_type.encode())]
        else:
            status, body, headers = 200, self._openapi, _JSON
        await respond(send, status, body, headers)
        endpoint = path if method is not None else "other"
        self._metrics.observe("http", endpoint, str(status), time.perf_counter() - started)

    async def _online_features(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        metrics = self._metrics
        metrics.started("http")
        project = self._default_project
        request: OnlineRequest | None = None
        result: QueryResult | None = None
        error: BaseException | None = None
        body_read = False
        try:
            body = await read_body(scope, receive, max_bytes=self._max_body, setting="serving.max_request_bytes")
            body_read = True
            request = parse_online_request(body, limits=self._limits)
            if request.project is not None:
                project = request.project
            if self._auth.is_enabled:
                self._auth.check(header(scope, b"authorization"), project)
            entities = request.entities
            encoded = self.service.bytes_entities(project)
            if encoded:
                entities = {
                    name: [decode_base64(value) for value in values] if name in encoded else values
                    for name, values in entities.items()
                }
            query = FeatureQuery(
                project=project,
                features=request.features,
                entities=entities,
                include_statuses=request.include_statuses,
            )
            result = await self.service.read_async(query)
            if result.plan.float_columns:
                name_non_finite(result.columns, result.plan.float_columns)
            answer: dict[str, object] = {"columns": result.columns}
            if result.statuses is not None:
                answer["statuses"] = result.statuses
            if request.include_types:
                answer["types"] = result.plan.types
            status, payload, headers = 200, orjson.dumps(answer, default=json_default), _JSON
        except Exception as exc:  # noqa: BLE001 - every failure, even a bug, must get an answer
            error = exc
            status, payload, headers = _error_response(exc)
            if not body_read and (declared_length(scope) or 0) > DRAIN_BYTES:
                headers = [*headers, (b"connection", b"close")]
        await respond(send, status, payload, headers)
        seconds = time.perf_counter() - started
        metrics.finished("http", ONLINE_FEATURES, str(status), seconds)
        if self._request_log.is_sampled():
            self._request_log.submit(_log_record(project, request, result, status, seconds, error))
        # Break the cycle error -> traceback -> this frame -> error: it would keep the body and the
        # parsed request alive until the cyclic GC ran, and refused requests would pile up.
        error = None

    def _closed_endpoint(self, scope: Scope) -> tuple[int, bytes, Headers] | None:
        """With ``auth.open_endpoints: false``, refuse a request without a valid token (any grant)."""
        if self._open_endpoints or not self._auth.is_enabled:
            return None
        try:
            self._auth.grant(header(scope, b"authorization"))
        except ProvenderError as exc:
            return _error_response(exc)
        return None

    async def _ready(self) -> tuple[int, bytes, Headers]:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(None, self.service.check_ready), READY_TIMEOUT_SECONDS)
        except (ProvenderError, TimeoutError) as exc:
            # The error may name the store's address: logged, not shown to anyone who can reach the port.
            log.warning("not ready error=%s", exc)
            detail = (
                "the online store did not answer in time"
                if isinstance(exc, TimeoutError)
                else f"the online store does not answer ({type(exc).__name__}); see the server log"
            )
            return 503, orjson.dumps({"status": "unavailable", "detail": detail}), _JSON
        problems = self.service.registry_problems()
        if problems is not None:  # still serving (the last good snapshots), but say what is wrong
            return 200, orjson.dumps({"status": "ready", "detail": problems}), _JSON
        return 200, b'{"status":"ready"}', _JSON


def create_app(service: FeatureService) -> ServingApp:
    """Return the ASGI application serving ``service`` (run it with uvicorn, see ``server.py``)."""
    return ServingApp(service)


def _error_response(error: BaseException) -> tuple[int, bytes, Headers]:
    status = status_of(error)
    return error_response(error, http_status=status.http, code=status.grpc, is_expected=is_expected(error))


def _log_record(
    project: str,
    request: OnlineRequest | None,
    result: QueryResult | None,
    status: int,
    seconds: float,
    error: BaseException | None,
) -> dict[str, object]:
    record: dict[str, object] = {
        "time": datetime.now(UTC).isoformat(),
        "protocol": "http",
        "endpoint": ONLINE_FEATURES,
        "project": project,
        "status": str(status),
        "duration_ms": round(seconds * 1000, 3),
    }
    if request is not None:
        record["request"] = {"features": list(request.features), "entities": request.entities}
    if result is not None:
        answer: dict[str, object] = {"columns": result.columns}
        if result.statuses is not None:
            answer["statuses"] = result.statuses
        record["response"] = answer
    if error is not None:
        record["error"] = shorten(str(error)) if is_expected(error) else type(error).__name__
    return record
