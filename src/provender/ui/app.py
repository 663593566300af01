"""The UI's routes: ``path -> page``, the search endpoint, the token prompt, and an ASGI app.

:class:`UiApp` answers every path outside ``/v1/``: the core service hands them to it, and
``provender ui`` serves it alone over a local registry (read-only). The caller's token comes from
the ``Authorization`` header or the ``provender_token`` cookie (set by the token prompt); a
caller without a valid token, when auth is on, gets the prompt.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, quote, unquote

import orjson

from provender.auth import Grant, Role, require
from provender.errors import (
    AuthenticationError,
    FeatureTableNotFoundError,
    NotFoundError,
    PermissionDeniedError,
    ProvenderError,
)
from provender.registry.store import RegistryStore
from provender.ui import assets, on_demand, pages
from provender.ui.data import OpenOnline, UiData
from provender.ui.html import e, error_box, frame

COOKIE = "provender_token"
HTML = "text/html; charset=utf-8"
# Pages load nothing but this origin's stylesheet and script (no internet assets, no inline script),
# post forms only here, and may not be framed (the cancel button).
CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
Headers = list[tuple[bytes, bytes]]
Answer = tuple[int, bytes, Headers]
GrantOf = Callable[[str | None], Grant]  # an Authorization header value -> the caller's grant
CancelJob = Callable[[Grant, str], object]

log = logging.getLogger(__name__)
_NAME = r"([^/]+)"
_STATIC = {
    "/ui/static/ui.css": (assets.CSS.encode(), b"text/css; charset=utf-8"),
    "/ui/static/ui.js": (assets.JS.encode(), b"text/javascript; charset=utf-8"),
}


class PageNotFoundError(Exception):
    """No page at this path (answered 404 with the message in the page)."""


@dataclass(frozen=True, slots=True)
class UiRequest:
    """What a UI route needs from one request."""

    method: str
    path: str
    query: dict[str, str]
    authorization: str | None
    cookie: str | None
    form: dict[str, str]


class UiApp:
    """The discovery UI over a registry.

    Args:
        store: the registry.
        grant_of: the caller's grant from an ``Authorization`` value (raises ``AuthenticationError``).
        auth_enabled: whether tokens are checked (a token prompt and "Sign out" then).
        cancel_job: cancels a job for a grant (None: no write actions at all, e.g. ``provender ui``).
        open_online: opens a project's online store, for the freshness of its values (None: not shown).
    """

    def __init__(
        self,
        store: RegistryStore,
        grant_of: GrantOf,
        *,
        auth_enabled: bool,
        cancel_job: CancelJob | None = None,
        open_online: OpenOnline | None = None,
    ) -> None:
        self.data = UiData(store, open_online=open_online)
        self.grant_of = grant_of
        self.auth_enabled = auth_enabled
        self.cancel_job = cancel_job

    def handle(self, request: UiRequest) -> Answer:  # noqa: PLR0911 - one answer per outcome
        """Answer one request (never raises: errors are shown in the page)."""
        if request.path in _STATIC:
            body, content_type = _STATIC[request.path]
            return 200, body, [(b"content-type", content_type), (b"cache-control", b"max-age=300")]
        if request.path == "/login":
            return self._login(request)
        if request.path == "/logout":
            return 303, b"", [(b"location", b"/"), (b"set-cookie", f"{COOKIE}=; Path=/; Max-Age=0".encode())]
        token = _token(request)
        try:
            grant = self.grant_of(token)
        except AuthenticationError as exc:
            if request.path.startswith("/ui/api/"):
                return _json(401, {"error": str(exc)})
            return self._prompt(request, str(exc) if token else "")
        subject = grant.subject
        try:
            return self._route(request, grant)
        except (NotFoundError, PageNotFoundError) as exc:
            return self._error(404, "Not found", str(exc), subject, request)
        except PermissionDeniedError as exc:
            return self._error(403, "Not allowed", str(exc), subject, request)
        except ProvenderError as exc:
            return self._error(503, "Cannot show this page", str(exc), subject, request)
        except Exception as exc:  # a bug still gets a page, not a dropped connection
            log.exception("ui page %s failed", request.path)
            return self._error(500, "Cannot show this page", f"{type(exc).__name__}: {exc}", subject, request)

    def _route(self, request: UiRequest, grant: Grant) -> Answer:
        path, data = request.path, self.data
        if path == "/ui/api/search":
            started = time.perf_counter()
            hits = data.search(grant, request.query.get("q", ""), project=request.query.get("project") or None)
            took = round((time.perf_counter() - started) * 1000, 2)
            return _json(200, {"results": [pages.hit_json(h) for h in hits], "server_ms": took})
        if request.method == "POST":
            return self._post(request, grant)
        if path == "/":
            return self._page(pages.projects(data.projects(grant)), grant, request)
        if path == "/search":
            q = request.query.get("q", "")
            return self._page(pages.search(data.search(grant, q), q), grant, request)
        if match := re.fullmatch(rf"/projects/{_NAME}(/.*)?", path):
            project, rest = _unquote(match.group(1)), match.group(2) or ""
            require(grant, project)
            return self._page(self._project_page(project, rest, request, grant), grant, request)
        raise PageNotFoundError(f"No page {path!r}.")

    def _project_page(  # noqa: PLR0911 - one return per page
        self, project: str, rest: str, request: UiRequest, grant: Grant
    ) -> pages.Page:
        data = self.data
        snapshot = data.snapshot(project)
        if snapshot.version == 0:
            raise PageNotFoundError(f"No project {project!r}: run `provender apply` in its folder.")
        can_write = self.cancel_job is not None and grant.allows(project, Role.WRITE)
        if rest in ("", "/"):
            return pages.project(snapshot, data.jobs(project))
        if rest == "/jobs":
            online = data.online_freshness(project, list(snapshot.feature_tables))
            return pages.freshness(
                snapshot, data.jobs(project), online, can_write=can_write, table=request.query.get("table")
            )
        if rest == "/history":
            return pages.history(project, data.history(project))
        if rest == "/lineage":
            return pages.lineage(snapshot, data.jobs(project))
        if match := re.fullmatch(rf"/jobs/{_NAME}", rest):
            record = data.job(_unquote(match.group(1)))
            if record.project != project:
                raise PageNotFoundError(f"No job {record.id!r} in project {project!r}.")
            return pages.job(record, can_write=can_write)
        if match := re.fullmatch(rf"/on-demand/{_NAME}", rest):
            name = _unquote(match.group(1))
            if name not in snapshot.on_demand_features:
                known = sorted(snapshot.on_demand_features)
                raise PageNotFoundError(f"No on-demand features {name!r} in project {project!r}; known: {known}")
            return on_demand.page(snapshot, name)
        if match := re.fullmatch(rf"/tables/{_NAME}(/statistics)?", rest):
            name = _unquote(match.group(1))
            if name not in snapshot.feature_tables:
                raise FeatureTableNotFoundError(name, project=project, known=list(snapshot.feature_tables))
            jobs = data.jobs(project, table=name)
            if match.group(2):
                query = request.query
                return pages.statistics(
                    snapshot, name, jobs, current=query.get("current") or None, against=query.get("against") or None
                )
            online = data.online_freshness(project, [name])
            return pages.table(snapshot, name, jobs, online, can_write=can_write)
        raise PageNotFoundError(f"No page {request.path!r}.")

    def close(self) -> None:
        """Release what the UI opened (the online stores read for freshness)."""
        self.data.close()

    def _post(self, request: UiRequest, grant: Grant) -> Answer:
        match = re.fullmatch(rf"/ui/jobs/{_NAME}/cancel", request.path)
        if match is None or self.cancel_job is None:
            raise PageNotFoundError(f"No action {request.path!r}.")
        job_id = _unquote(match.group(1))
        record = self.data.job(job_id)
        self.cancel_job(grant, job_id)
        location = f"/projects/{quote(record.project)}/jobs/{quote(job_id)}"
        return 303, b"", [(b"location", location.encode())]

    def _page(self, page: pages.Page, grant: Grant, request: UiRequest) -> Answer:
        title, body, crumbs = page
        html = frame(title, body, subject=grant.subject, query=request.query.get("q", ""), crumbs=crumbs,
                     can_logout=self.auth_enabled)  # fmt: skip
        return 200, html.encode(), _html_headers()

    def _error(self, status: int, title: str, message: str, subject: str, request: UiRequest) -> Answer:
        if request.path.startswith("/ui/api/"):
            return _json(status, {"error": message})
        body = f'<h1>{e(title)}</h1>{error_box(message)}<p><a href="/">Back to the projects</a></p>'
        return (
            status,
            frame(title, body, subject=subject, can_logout=self.auth_enabled).encode(),
            _html_headers(),
        )

    def _prompt(self, request: UiRequest, problem: str) -> Answer:
        target = request.path if request.path.startswith("/") and not request.path.startswith("//") else "/"
        warning = error_box(problem) if problem else ""
        body = f"""<h1>Sign in</h1>{warning}
<form class="card" method="post" action="/login">
<p>This core service checks tokens. Paste yours (it is kept in a cookie for this site only).</p>
<label for="token">Token</label><br>
<input id="token" name="token" type="password" autocomplete="current-password" required size="40">
<input type="hidden" name="next" value="{e(target)}">
<button type="submit">Sign in</button></form>"""
        return 401, frame("Sign in", body, subject="nobody").encode(), _html_headers()

    def _login(self, request: UiRequest) -> Answer:
        token = request.form.get("token", "").strip()
        target = request.form.get("next", "/")
        if request.method != "POST" or not token:
            return self._prompt(UiRequest("GET", target, {}, None, None, {}), "")
        try:
            self.grant_of(f"Bearer {token}")
        except AuthenticationError as exc:
            return self._prompt(UiRequest("GET", target, {}, None, None, {}), str(exc))
        if not target.startswith("/") or target.startswith("//"):
            target = "/"
        cookie = f"{COOKIE}={quote(token)}; Path=/; HttpOnly; SameSite=Strict"
        return 303, b"", [(b"location", target.encode()), (b"set-cookie", cookie.encode())]


def _html_headers() -> Headers:
    return [
        (b"content-type", HTML.encode()),
        (b"content-security-policy", CSP.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
    ]


def _token(request: UiRequest) -> str | None:
    if request.authorization:
        return request.authorization
    if request.cookie:
        jar: SimpleCookie = SimpleCookie()
        jar.load(request.cookie)
        if COOKIE in jar and jar[COOKIE].value:
            return f"Bearer {unquote(jar[COOKIE].value)}"
    return None


def _unquote(text: str) -> str:
    return unquote(text)


def _json(status: int, body: object) -> Answer:
    return status, orjson.dumps(body), [(b"content-type", b"application/json")]


def parse_request(method: str, path: str, query_string: bytes, headers: dict[bytes, bytes], body: bytes) -> UiRequest:
    """Build a :class:`UiRequest` from the raw parts of an HTTP request."""
    form = dict(parse_qsl(body.decode("utf-8", "replace"))) if method == "POST" else {}
    authorization = headers.get(b"authorization")
    cookie = headers.get(b"cookie")
    return UiRequest(
        method=method,
        path=path,
        query=dict(parse_qsl(query_string.decode("latin-1"))),
        authorization=authorization.decode("latin-1") if authorization else None,
        cookie=cookie.decode("latin-1") if cookie else None,
        form=form,
    )
