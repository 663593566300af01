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
:mod:`~provender.serving.errors`.

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
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import cast

import orjson

from provender import __version__
from provender.errors import ProvenderError
from provender.serving.codec import decode_base64, json_default, name_non_finite
from provender.serving.errors import RequestTooLargeError, is_expected, status_of
from provender.serving.schemas import OnlineRequest, openapi_document, parse_online_request
from provender.serving.service import FeatureQuery, FeatureService, QueryResult

log = logging.getLogger(__name__)

Scope = MutableMapping[str, object]
Message = MutableMapping[str, object]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ONLINE_FEATURES = "/v1/online-features"
READY_TIMEOUT_SECONDS = 5.0
_MIN_BODY_BYTES = 4 * 1024 * 1024
_JSON = [(b"content-type", b"application/json")]
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
        self._request_log = service.request_log
        self._default_project = service.default_project
        self._max_rows = service.serving.max_entity_rows
        self._max_body = max(_MIN_BODY_BYTES, service.serving.max_entity_rows * 512)
        self._executor = service.executor
        self._openapi = orjson.dumps(openapi_document())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route a request (or answer the lifespan protocol)."""
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
            return
        path = cast(str, scope["path"])
        if path == ONLINE_FEATURES and scope["method"] == "POST":
            await self._online_features(scope, receive, send)
            return
        started = time.perf_counter()
        method = _ROUTES.get(path)
        if method is None:
            status, body, headers = 404, _error_body("NOT_FOUND", "NotFound", f"No route {path!r}."), _JSON
        elif scope["method"] != method:
            status, body = 405, _error_body("INVALID_ARGUMENT", "MethodNotAllowed", f"Use {method} {path}.")
            headers = [*_JSON, (b"allow", method.encode())]
        elif path == "/v1/health":
            status, body, headers = 200, _HEALTH, _JSON
        elif path == "/v1/ready":
            status, body, headers = await self._ready()
        elif path == "/metrics":
            text, content_type = self._metrics.render()
            status, body, headers = 200, text, [(b"content-type", content_type.encode())]
        else:
            status, body, headers = 200, self._openapi, _JSON
        await _respond(send, status, body, headers)
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
        try:
            body = await self._read_body(scope, receive)
            request = parse_online_request(body, max_entity_rows=self._max_rows)
            if request.project is not None:
                project = request.project
            if self._auth.is_enabled:
                self._auth.check(_header(scope, b"authorization"), project)
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
            result = await asyncio.get_running_loop().run_in_executor(self._executor, self.service.read, query)
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
        await _respond(send, status, payload, headers)
        seconds = time.perf_counter() - started
        metrics.finished("http", ONLINE_FEATURES, str(status), seconds)
        if self._request_log.is_sampled():
            self._request_log.submit(_log_record(project, request, result, status, seconds, error))

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        message = await receive()
        body = cast(bytes, message.get("body", b""))
        if not message.get("more_body"):
            return body
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body:
            raise RequestTooLargeError(f"The request body is larger than {self._max_body} bytes.")
        chunks, size = [body], len(body)
        while message.get("more_body"):
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestTooLargeError("The client went away before sending the whole body.")
            chunk = cast(bytes, message.get("body", b""))
            size += len(chunk)
            if size > self._max_body:
                raise RequestTooLargeError(f"The request body is larger than {self._max_body} bytes.")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _ready(self) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(None, self.service.check_ready), READY_TIMEOUT_SECONDS)
        except (ProvenderError, TimeoutError) as exc:
            detail = str(exc) or "the online store did not answer in time"
            return 503, orjson.dumps({"status": "unavailable", "detail": detail}), _JSON
        return 200, b'{"status":"ready"}', _JSON


def create_app(service: FeatureService) -> ServingApp:
    """Return the ASGI application serving ``service`` (run it with uvicorn, see ``server.py``)."""
    return ServingApp(service)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in cast(list[tuple[bytes, bytes]], scope["headers"]):
        if key == name:
            return value.decode("latin-1")
    return None


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    # A Content-Length spares the chunked framing the server would otherwise add.
    headers = [*headers, (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _error_body(code: str, kind: str, message: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "type": kind, "message": message}})


def _error_response(error: BaseException) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    status = status_of(error)
    if not is_expected(error):
        log.error("request failed unexpectedly error=%r", error, exc_info=error)
    headers = _JSON
    if status.http == 401:
        headers = [*_JSON, (b"www-authenticate", b'Bearer realm="provender"')]
    elif status.http == 503:
        headers = [*_JSON, (b"retry-after", b"1")]
    message = str(error) if is_expected(error) else f"Internal error ({type(error).__name__}); see the server log."
    return status.http, _error_body(status.grpc, type(error).__name__, message), headers


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
        record["error"] = str(error) if is_expected(error) else type(error).__name__
    return record


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
