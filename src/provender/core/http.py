"""The core service's HTTP/JSON API: routes -> :class:`~provender.core.service.CoreService`.

==========================================================  =====================================  ======
``GET /v1/projects[?include_archived=true]``                 projects the caller may read          read
``POST /v1/projects/{project}/archive``                      archive (read-only, hidden)           admin
``GET /v1/projects/{project}/registry``                      the whole snapshot, at one version    read
``GET /v1/projects/{project}/entities[/{name}]``             entities                              read
``GET /v1/projects/{project}/feature-tables[/{name}]``       feature tables                        read
``POST /v1/projects/{project}/plan``                         ``{"definitions"}`` -> plan            read
``POST /v1/projects/{project}/apply``                        ``{"definitions", "expected_version"}``  write
``POST /v1/projects/{project}/changes``                      a change computed by a remote client  write
``DELETE /v1/projects/{project}/entities/{name}``            ``?expected_version=``                write
``DELETE /v1/projects/{project}/feature-tables/{name}``      ``?expected_version=``                write
``GET /v1/projects/{project}/history[?limit=]``              audited changes, newest first         read
``GET /v1/history[?limit=]``                                 every readable project's changes      read
``GET /v1/projects/{project}/jobs[?table=&include_finished=]``  job records                        read
``POST /v1/projects/{project}/ingestion-jobs``               run an ingestion job in the service   write
``POST /v1/jobs``                                            record a job (a client runs it)       write
``GET /v1/jobs/{id}`` / ``PATCH /v1/jobs/{id}``              read / update a job record            read / write
``POST /v1/jobs/{id}/cancel``                                cancel a job                          write
``POST /v1/jobs/fail-stale``                                 fail jobs whose runner died           admin (*)
``GET /v1/health``, ``/v1/ready``                           alive; the registry answers
``GET /metrics``, ``/v1/openapi.json``                       Prometheus; the OpenAPI 3.1 document
==========================================================  =====================================  ======

A project is created by its first apply. Errors answer ``{"error": {"code", "type", "message",
"fields"}}`` with the status of the one table (:mod:`provender.wire.errors`): a stale apply is
409 ``RegistryVersionConflictError``, a missing or bad token 401, a missing role 403, the
registry unreachable 503. The registry calls run on the service's threads (``core.threads``).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import cast
from urllib.parse import parse_qsl, unquote

import orjson

from provender import __version__
from provender.asgi import (
    JSON_HEADERS,
    Headers,
    Receive,
    Scope,
    Send,
    error_response,
    header,
    lifespan,
    plain_error,
    read_body,
    respond,
)
from provender.auth import Grant
from provender.core.metrics import CoreMetrics
from provender.core.openapi import openapi_document
from provender.core.service import CoreService, Versioned
from provender.errors import DataError, NotFoundError, ProvenderError
from provender.ui.app import UiApp
from provender.ui.data import OpenOnline
from provender.ui.server import serve_ui
from provender.wire.errors import is_expected, status_of

MAX_BODY_BYTES = 64 * 1024 * 1024
_HEALTH = orjson.dumps({"status": "ok", "version": __version__})
READY_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed request: path parameters, query, JSON body and the caller's grant."""

    params: Mapping[str, str]
    query: Mapping[str, str]
    body: Mapping[str, object]
    grant: Grant
    if_none_match: str | None = None


Handler = Callable[[CoreService, Request], dict[str, object] | Versioned]
_P = r"(?P<project>[A-Za-z][A-Za-z0-9_-]*)"
_N = r"(?P<name>[^/]+)"


def _limit(request: Request) -> int:
    text = request.query.get("limit", "100")
    if not text.isdigit():
        raise DataError(f"query parameter 'limit' must be a number, got {text!r}")
    return int(text)


def _flag(request: Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true", "yes")


# (method, path pattern, route label for metrics, handler)
ROUTES: list[tuple[str, re.Pattern[str], str, Handler]] = [
    (m, re.compile(f"^{p}$"), label, h)
    for m, p, label, h in [
        ("GET", "/v1/projects", "/v1/projects",
         lambda s, r: s.list_projects(r.grant, include_archived=_flag(r, "include_archived"))),
        ("POST", f"/v1/projects/{_P}/archive", "/v1/projects/{project}/archive",
         lambda s, r: s.archive_project(r.grant, r.params["project"], actor=r.body.get("actor"))),
        ("GET", f"/v1/projects/{_P}/registry", "/v1/projects/{project}/registry",
         lambda s, r: s.snapshot(r.grant, r.params["project"], if_none_match=r.if_none_match)),
        ("GET", f"/v1/projects/{_P}/entities", "/v1/projects/{project}/entities",
         lambda s, r: s.list_definitions(r.grant, r.params["project"], kind="entities")),
        ("GET", f"/v1/projects/{_P}/feature-tables", "/v1/projects/{project}/feature-tables",
         lambda s, r: s.list_definitions(r.grant, r.params["project"], kind="feature_tables")),
        ("GET", f"/v1/projects/{_P}/entities/{_N}", "/v1/projects/{project}/entities/{name}",
         lambda s, r: s.get_definition(r.grant, r.params["project"], kind="entities", name=r.params["name"])),
        ("GET", f"/v1/projects/{_P}/feature-tables/{_N}", "/v1/projects/{project}/feature-tables/{name}",
         lambda s, r: s.get_definition(r.grant, r.params["project"], kind="feature_tables", name=r.params["name"])),
        ("DELETE", f"/v1/projects/{_P}/entities/{_N}", "/v1/projects/{project}/entities/{name}",
         lambda s, r: s.delete(r.grant, r.params["project"], kind="entities", name=r.params["name"], query=r.query)),
        ("DELETE", f"/v1/projects/{_P}/feature-tables/{_N}", "/v1/projects/{project}/feature-tables/{name}",
         lambda s, r: s.delete(
             r.grant, r.params["project"], kind="feature_tables", name=r.params["name"], query=r.query
         )),
        ("POST", f"/v1/projects/{_P}/plan", "/v1/projects/{project}/plan",
         lambda s, r: s.plan(r.grant, r.params["project"], r.body)),
        ("POST", f"/v1/projects/{_P}/apply", "/v1/projects/{project}/apply",
         lambda s, r: s.apply(r.grant, r.params["project"], r.body)),
        ("POST", f"/v1/projects/{_P}/changes", "/v1/projects/{project}/changes",
         lambda s, r: s.change(r.grant, r.params["project"], r.body)),
        ("GET", f"/v1/projects/{_P}/history", "/v1/projects/{project}/history",
         lambda s, r: s.history(r.grant, r.params["project"], limit=_limit(r))),
        ("GET", "/v1/history", "/v1/history", lambda s, r: s.history(r.grant, None, limit=_limit(r))),
        ("GET", f"/v1/projects/{_P}/jobs", "/v1/projects/{project}/jobs",
         lambda s, r: s.list_jobs(r.grant, r.params["project"], r.query)),
        ("POST", f"/v1/projects/{_P}/ingestion-jobs", "/v1/projects/{project}/ingestion-jobs",
         lambda s, r: s.start_ingestion(r.grant, r.params["project"], r.body)),
        ("POST", "/v1/jobs/fail-stale", "/v1/jobs/fail-stale", lambda s, r: s.fail_stale_jobs(r.grant, r.body)),
        ("POST", "/v1/jobs", "/v1/jobs", lambda s, r: s.put_job(r.grant, r.body)),
        ("GET", f"/v1/jobs/{_N}", "/v1/jobs/{id}", lambda s, r: s.get_job(r.grant, r.params["name"])),
        ("PATCH", f"/v1/jobs/{_N}", "/v1/jobs/{id}", lambda s, r: s.update_job(r.grant, r.params["name"], r.body)),
        ("POST", f"/v1/jobs/{_N}/cancel", "/v1/jobs/{id}/cancel",
         lambda s, r: s.cancel_job(r.grant, r.params["name"])),
    ]
]  # fmt: skip


class CoreApp:
    """The ASGI application of the core service."""

    def __init__(
        self, service: CoreService, *, metrics: CoreMetrics, threads: int, open_online: OpenOnline | None = None
    ) -> None:
        self.service = service
        self.metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="provender-core")
        self._openapi = orjson.dumps(openapi_document())
        self.ui = UiApp(
            service.store,
            service.auth.grant,
            auth_enabled=service.auth.is_enabled,
            cancel_job=service.cancel_job,
            open_online=open_online,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route a request (or answer the lifespan protocol)."""
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await lifespan(receive, send)
            return
        started = time.perf_counter()
        path, method = cast(str, scope["path"]), cast(str, scope["method"])
        label = path
        if path == "/v1/health" and method == "GET":
            status, body, headers = 200, _HEALTH, JSON_HEADERS
        elif path == "/v1/ready" and method == "GET":
            status, body, headers = await self._ready()
        elif path == "/metrics" and method == "GET":
            text, content_type = self.metrics.render()
            status, body, headers = 200, text, [(b"content-type", content_type.encode())]
        elif path == "/v1/openapi.json" and method == "GET":
            status, body, headers = 200, self._openapi, JSON_HEADERS
        elif not path.startswith("/v1/") and method in ("GET", "POST"):
            status = await serve_ui(self.ui, self._executor, scope, receive, send)
            self.metrics.observe(method, "/ui", status, time.perf_counter() - started)
            return
        else:
            label, status, body, headers = await self._api(scope, receive, path, method)
        await respond(send, status, body, headers)
        self.metrics.observe(method, label, status, time.perf_counter() - started)

    async def _api(self, scope: Scope, receive: Receive, path: str, method: str) -> tuple[str, int, bytes, Headers]:
        allowed = []
        for route_method, pattern, label, handler in ROUTES:
            match = pattern.match(path)
            if match is None:
                continue
            if route_method != method:
                allowed.append(route_method)
                continue
            try:
                request = await self._request(scope, receive, match)
                answer = await asyncio.get_running_loop().run_in_executor(
                    self._executor, handler, self.service, request
                )
                if isinstance(answer, Versioned):
                    etag = [(b"etag", answer.etag.encode())]
                    if answer.body is None:
                        return label, 304, b"", etag
                    return label, 200, orjson.dumps(answer.body), [*JSON_HEADERS, *etag]
                return label, 200, orjson.dumps(answer), JSON_HEADERS
            except Exception as exc:  # noqa: BLE001 - every failure, even a bug, must get an answer
                http, code = _status(exc)
                return (label, *error_response(exc, http_status=http, code=code, is_expected=is_expected(exc)))
        if allowed:
            body = plain_error("INVALID_ARGUMENT", "MethodNotAllowed", f"Use {' or '.join(allowed)} {path}.")
            return "other", 405, body, [*JSON_HEADERS, (b"allow", ", ".join(allowed).encode())]
        return "other", 404, plain_error("NOT_FOUND", "NotFound", f"No route {path!r}."), JSON_HEADERS

    async def _request(self, scope: Scope, receive: Receive, match: re.Match[str]) -> Request:
        grant = self.service.auth.grant(header(scope, b"authorization"))
        raw = await read_body(scope, receive, max_bytes=MAX_BODY_BYTES)
        body: object = {}
        if raw.strip():
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise DataError(f"The request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise DataError(f"The request body must be a JSON object, got {type(body).__name__}.")
        query = dict(parse_qsl(cast(bytes, scope.get("query_string", b"")).decode("latin-1")))
        params = {key: unquote(value) for key, value in match.groupdict().items()}
        return Request(
            params=params, query=query, body=body, grant=grant, if_none_match=header(scope, b"if-none-match")
        )

    async def _ready(self) -> tuple[int, bytes, Headers]:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(
                loop.run_in_executor(self._executor, self.service.check_ready), READY_TIMEOUT_SECONDS
            )
        except (ProvenderError, TimeoutError) as exc:
            detail = str(exc) or "the registry did not answer in time"
            return 503, orjson.dumps({"status": "unavailable", "detail": detail}), JSON_HEADERS
        return 200, b'{"status":"ready"}', JSON_HEADERS

    def close(self) -> None:
        """Stop the threads (after the requests they run) and close what the UI opened."""
        self._executor.shutdown(wait=True)
        self.ui.close()


def _status(error: BaseException) -> tuple[int, str]:
    """The core's answer: the one table, except that a missing named object is 404 (it is the resource)."""
    if isinstance(error, NotFoundError):
        return 404, "NOT_FOUND"
    status = status_of(error)
    return status.http, status.grpc


def create_app(
    service: CoreService, *, metrics: CoreMetrics | None = None, threads: int = 8, open_online: OpenOnline | None = None
) -> CoreApp:
    """Return the ASGI application of the core service (run it with uvicorn, see ``server.py``).

    ``open_online`` opens a project's online store, for the UI's freshness of online values.
    """
    return CoreApp(service, metrics=metrics or CoreMetrics(), threads=threads, open_online=open_online)
