"""Serving the UI: the ASGI glue (used by the core service too) and ``provender ui``'s server.

``provender ui`` serves the local registry of the current project folder, read-only: every
project may be read, nothing may be changed (no write action is shown). It reads the folder's
online store too, for the freshness of online values (reads only).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from types import MappingProxyType
from typing import cast

import uvicorn
import uvloop

from provender.asgi import (
    KEEP_ALIVE_SECONDS,
    Receive,
    Scope,
    Send,
    bind_socket,
    bounded_http_protocol,
    read_body,
    respond,
)
from provender.auth import ALL_PROJECTS, Grant, Role
from provender.registry.store import RegistryStore
from provender.ui.app import UiApp, parse_request
from provender.ui.data import OpenOnline

log = logging.getLogger(__name__)

MAX_FORM_BYTES = 64 * 1024
LOCAL_READER = Grant("local", MappingProxyType({ALL_PROJECTS: Role.READ}))


async def serve_ui(ui: UiApp, executor: ThreadPoolExecutor, scope: Scope, receive: Receive, send: Send) -> int:
    """Answer one HTTP request with ``ui`` (its registry reads on ``executor``); return the status."""
    method = cast(str, scope["method"])
    raw = await read_body(scope, receive, max_bytes=MAX_FORM_BYTES) if method == "POST" else b""
    headers = {bytes(k).lower(): bytes(v) for k, v in cast(list[tuple[bytes, bytes]], scope.get("headers", []))}
    request = parse_request(method, cast(str, scope["path"]), cast(bytes, scope.get("query_string", b"")), headers, raw)
    status, body, answer_headers = await asyncio.get_running_loop().run_in_executor(executor, ui.handle, request)
    await respond(send, status, body, answer_headers)
    return status


class LocalUi:
    """The ASGI app of ``provender ui``: the UI alone, read-only, over ``store`` (and ``open_online``'s stores)."""

    def __init__(self, store: RegistryStore, *, open_online: OpenOnline | None = None) -> None:
        self.ui = UiApp(
            store, lambda _authorization: LOCAL_READER, auth_enabled=False, cancel_job=None, open_online=open_online
        )
        self.executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="provender-ui")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request."""
        if scope["type"] == "http":
            await serve_ui(self.ui, self.executor, scope, receive, send)


def run(store: RegistryStore, *, host: str, port: int, open_online: OpenOnline | None = None) -> None:
    """Serve the UI over ``store`` until Ctrl-C or SIGTERM."""
    app = LocalUi(store, open_online=open_online)
    sock = bind_socket(host, port, reuse_port=False)
    print(f"Provender UI (read-only) at http://{host}:{sock.getsockname()[1]}/  (Ctrl-C stops it)", flush=True)  # noqa: T201
    config = uvicorn.Config(app, http=bounded_http_protocol(), lifespan="off", access_log=False, log_config=None,
                            server_header=False, timeout_keep_alive=KEEP_ALIVE_SECONDS)  # fmt: skip
    try:
        uvloop.run(uvicorn.Server(config).serve(sockets=[sock]))
    finally:
        app.executor.shutdown(wait=True)
        app.ui.close()
        store.close()
