"""The HTTP plumbing shared by Provender's services (serving, core): raw ASGI on uvicorn.

Responses, headers, bounded request bodies, the lifespan protocol, error answers, listening
sockets, JSON logging and a uvicorn server that leaves signals to its caller. Each service keeps
only its routes and its own logic.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import cast

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from provender.errors import RequestTooLargeError
from provender.wire.errors import error_body

log = logging.getLogger(__name__)

Scope = MutableMapping[str, object]
Message = MutableMapping[str, object]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON_HEADERS: Headers = [(b"content-type", b"application/json")]
KEEP_ALIVE_SECONDS = 75  # longer than common load balancers' idle timeouts (60 s)
MAX_HEADER_BYTES = 32 * 1024
"""The largest request head (request line and headers) the core service and the UI accept (431 above)."""
HEADER_TIMEOUT_SECONDS = 10.0
"""How long a connection to the core service or the UI may take to send a request head."""
BACKLOG = 2048


class _CoalescingTransport:
    """A transport whose writes during one turn of the event loop go out as one write at its end.

    uvicorn writes a response's head and body separately: two system calls and two TCP segments
    for every small answer. Joined, a 1x5 online-features answer costs one of each (about a tenth
    of its server CPU time on loopback). Everything else is the wrapped transport's.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._unsent: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._unsent:
            self._loop.call_soon(self._flush)
        self._unsent.append(bytes(data))

    def writelines(self, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def _flush(self) -> None:
        unsent, self._unsent = self._unsent, []
        if unsent and not self._transport.is_closing():
            self._transport.write(unsent[0] if len(unsent) == 1 else b"".join(unsent))

    def __getattr__(self, name: str) -> object:
        return getattr(self._transport, name)


class _HeadTooLargeError(Exception):
    """Raised inside the parser's callback to stop parsing a refused request."""


class _BoundedHeaders(HttpToolsProtocol):
    """uvicorn's httptools protocol, bounding the request head: its size and the time to send it.

    httptools buffers an unfinished head without limit, and a connection that sends nothing is
    never closed; so a head larger than ``max_header_bytes`` is answered 431 and the connection
    closed, and one not complete within ``header_timeout`` seconds of its first byte (or of the
    connection) is closed. Idle keep-alive connections are closed by uvicorn's own timer.
    """

    max_header_bytes = MAX_HEADER_BYTES
    header_timeout = HEADER_TIMEOUT_SECONDS

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(cast(asyncio.Transport, _CoalescingTransport(transport, self.loop)))
        self._awaiting_head, self._head_bytes = True, 0
        self._head_timer: asyncio.TimerHandle | None = self.loop.call_later(self.header_timeout, self._too_slow)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(self.header_timeout, self._too_slow)
            self._head_bytes += len(data)
        super().data_received(data)
        if self._awaiting_head and self._head_bytes > self.max_header_bytes:
            self._refuse()

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if len(self.url) + sum(len(name) + len(value) for name, value in self.headers) > self.max_header_bytes:
            self._refuse()
            raise _HeadTooLargeError  # stops the parser (uvicorn's 400 answer is skipped below)
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        if not self.transport.is_closing():
            super().send_400_response(msg)

    def _refuse(self) -> None:
        if self.transport.is_closing():
            return
        log.warning("request head over %d bytes: answered 431 client=%s", self.max_header_bytes, self.client)
        body = b"Request header fields too large."
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
        )
        self.transport.close()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._awaiting_head, self._head_bytes = True, 0

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def _too_slow(self) -> None:
        self._head_timer = None
        if self._awaiting_head and not self.transport.is_closing():
            self.transport.close()


def bounded_http_protocol(
    *, max_header_bytes: int = MAX_HEADER_BYTES, header_timeout: float = HEADER_TIMEOUT_SECONDS
) -> type[asyncio.Protocol]:
    """Return uvicorn's httptools protocol bounding request heads (size, time); pass it as ``http=``."""
    return type(
        "BoundedHttpToolsProtocol",
        (_BoundedHeaders,),
        {"max_header_bytes": max_header_bytes, "header_timeout": header_timeout},
    )


class HttpServer(uvicorn.Server):
    """uvicorn's server, leaving signals to the caller (which may stop other servers too)."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Do not install signal handlers: the caller owns them."""
        yield


def header(scope: Scope, name: bytes) -> str | None:
    """Return the value of request header ``name`` (lower-case bytes), or None."""
    for key, value in cast(list[tuple[bytes, bytes]], scope["headers"]):
        if key == name:
            return value.decode("latin-1")
    return None


async def respond(send: Send, status: int, body: bytes, headers: Headers) -> None:
    """Send a whole response (with a Content-Length, sparing the chunked framing)."""
    headers = [*headers, (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def declared_length(scope: Scope) -> int | None:
    """Return the request's ``Content-Length`` (None if absent or not a number; huge ones capped at 10**18)."""
    declared = header(scope, b"content-length")
    if declared is None or not declared.isdigit():
        return None
    return 10**18 if len(declared) > 18 else int(declared)


async def read_body(scope: Scope, receive: Receive, *, max_bytes: int, setting: str = "") -> bytes:
    """Return the request body (the error names ``setting``, the limit's setting, if given).

    A declared ``Content-Length`` over the limit is refused before any of the body is read.

    Raises:
        RequestTooLargeError: it is larger than ``max_bytes``, or the client went away.
    """
    declared = declared_length(scope)
    if declared is not None and declared > max_bytes:
        raise _too_large(max_bytes, setting)
    message = await receive()
    body = cast(bytes, message.get("body", b""))
    if not message.get("more_body"):
        if len(body) > max_bytes:
            raise _too_large(max_bytes, setting)
        return body
    chunks, size = [body], len(body)
    while message.get("more_body"):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestTooLargeError("The client went away before sending the whole body.")
        chunk = cast(bytes, message.get("body", b""))
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes, setting)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(max_bytes: int, setting: str) -> RequestTooLargeError:
    where = f" ({setting})" if setting else ""
    return RequestTooLargeError(f"The request body is larger than {max_bytes} bytes, this server's limit{where}.")


def plain_error(code: str, kind: str, message: str) -> bytes:
    """Return an error body for a failure that is no exception (an unknown route, a wrong method)."""
    return orjson.dumps({"error": {"code": code, "type": kind, "message": message, "fields": {}}})


def error_response(
    error: BaseException, *, http_status: int, code: str, is_expected: bool
) -> tuple[int, bytes, Headers]:
    """Return the status, body and headers answering ``error``.

    Args:
        error: what failed.
        http_status: the HTTP status from the service's error table.
        code: the gRPC-style status name from the same table.
        is_expected: a client's or a backend's fault; anything else is a bug, logged with its
            traceback and answered without details.
    """
    if not is_expected:
        log.error("request failed unexpectedly error=%r", error, exc_info=error)
    headers = JSON_HEADERS
    if http_status == 401:
        headers = [*JSON_HEADERS, (b"www-authenticate", b'Bearer realm="provender"')]
    elif http_status == 503:
        headers = [*JSON_HEADERS, (b"retry-after", b"1")]
    if is_expected:
        body = orjson.dumps(error_body(error, code=code, message=str(error)))
    else:
        body = plain_error(code, type(error).__name__, f"Internal error ({type(error).__name__}); see the server log.")
    return http_status, body, headers


async def lifespan(receive: Receive, send: Send) -> None:
    """Answer the ASGI lifespan protocol (nothing to set up or tear down)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def bind_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """Return a TCP socket bound to ``host:port`` (not yet listening)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[
        0
    ]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class JsonFormatter(logging.Formatter):
    """One JSON object per log line: time, level, logger, message (and the traceback, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a JSON line."""
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def configure_logging(level: int) -> None:
    """Log JSON lines to standard error at ``level`` (servers log JSON; see CONVENTIONS.md)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("uvicorn.error").setLevel(max(level, logging.WARNING))
