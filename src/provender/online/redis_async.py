"""Redis reads awaited on the caller's asyncio event loop: one pipelined connection, parsed by hiredis.

The serving service answers every request on one event loop per worker. A blocking read on a
thread pool costs each request two thread hand-offs and a wait for the GIL behind the loop
(about half of a 1x5 request's CPU time, and most of its p99, in ``benchmarks/serving.py``'s
profile on 2 busy cores). :class:`AsyncRedis` instead writes the command on a connection owned
by the loop and awaits the reply, so a request never leaves the loop thread.

* **One connection per loop, pipelined.** Commands of concurrent requests are written back to
  back on the same connection and their replies come back in order (Redis answers a
  connection's commands in sequence); a FIFO of futures matches them. The commands issued
  during one turn of the loop go out in one write at its end (one system call for all the
  requests that arrived together). One connection keeps a Redis core busy long before it
  limits a Python worker.
* **Replies** are parsed by ``hiredis.Reader`` as bytes arrive; an error reply becomes
  ``redis.ResponseError``.
* **Failures**: a lost connection fails every command in flight with ``redis.ConnectionError``
  and the next command connects again; a command waits at most ``command_timeout`` seconds
  (checked by one timer per connection, not one per command), after which the connection is
  closed and its commands fail with ``redis.TimeoutError``. The store maps both to a retryable
  :class:`~provender.errors.BackendError`, like its blocking path.
* **Scope**: standalone servers over TCP or a Unix socket, with ``AUTH`` and ``SELECT`` sent on
  connect. TLS and Cluster stay on the blocking path (``StoreCapabilities.async_reads`` is
  false for them).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import cast

import hiredis
import redis

_WATCH_SECONDS_MAX = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisAddress:
    """Where and how to connect.

    Attributes:
        host: TCP host (unused with a Unix socket).
        port: TCP port.
        path: Unix socket path (None for TCP).
        username: ACL user, if any.
        password: password, if any.
        db: database number (``SELECT``ed on connect when not 0).
        connect_timeout: seconds allowed to connect.
        command_timeout: seconds a command may wait for its reply.
    """

    host: str
    port: int
    path: str | None
    username: str | None
    password: str | None
    db: int
    connect_timeout: float
    command_timeout: float


class _Pipe(asyncio.Protocol):
    """One connection: commands written in order, replies matched to futures in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, command_timeout: float) -> None:
        self._loop = loop
        self._reader = hiredis.Reader()
        self._waiting: deque[asyncio.Future[object]] = deque()
        self._sent_at: deque[float] = deque()
        self._transport: asyncio.Transport | None = None
        self._timeout = command_timeout
        self._watch: asyncio.TimerHandle | None = None
        self._unsent: list[bytes] = []
        self.is_open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        self.is_open = True
        self._watch = self._loop.call_later(min(_WATCH_SECONDS_MAX, self._timeout / 2), self._check_timeouts)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        waiting, sent_at = self._waiting, self._sent_at
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as exc:
                self._close(redis.ConnectionError(f"unreadable reply from Redis: {exc}"))
                return
            if reply is False:
                return
            if not waiting:
                self._close(redis.ConnectionError("Redis sent a reply nobody asked for"))
                return
            future = waiting.popleft()
            sent_at.popleft()
            if not future.done():
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(redis.ConnectionError(f"connection to Redis lost: {exc or 'closed by the server'}"))

    def send(self, packed: bytes, count: int) -> list[asyncio.Future[object]]:
        """Write ``count`` packed commands; return the futures of their replies."""
        if not self.is_open or self._transport is None:
            raise redis.ConnectionError("connection to Redis closed")
        futures = [self._loop.create_future() for _ in range(count)]
        now = time.monotonic()
        self._waiting.extend(futures)
        self._sent_at.extend([now] * count)
        if not self._unsent:  # the first command of this loop iteration: send them all at its end
            self._loop.call_soon(self._flush)
        self._unsent.append(packed)
        return futures

    def _flush(self) -> None:
        unsent, self._unsent = self._unsent, []
        if self.is_open and self._transport is not None:
            self._transport.write(unsent[0] if len(unsent) == 1 else b"".join(unsent))

    def close(self) -> None:
        """Close the connection; commands in flight fail."""
        self._close(redis.ConnectionError("connection to Redis closed"))

    def _check_timeouts(self) -> None:
        self._watch = None
        if not self.is_open:
            return
        if self._sent_at and time.monotonic() - self._sent_at[0] > self._timeout:
            self._close(redis.TimeoutError(f"Redis did not answer within {self._timeout:g} s"))
            return
        self._watch = self._loop.call_later(min(_WATCH_SECONDS_MAX, self._timeout / 2), self._check_timeouts)

    def _close(self, error: redis.RedisError) -> None:
        self._fail(error)
        if self._transport is not None:
            self._transport.close()

    def _fail(self, error: redis.RedisError) -> None:
        self.is_open = False
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        waiting, self._waiting = self._waiting, deque()
        self._sent_at = deque()
        self._unsent = []
        for future in waiting:
            if not future.done():
                future.set_exception(error)


class AsyncRedis:
    """A minimal Redis client on one event loop (see the module docstring).

    Args:
        address: where to connect.
        loop: the event loop it belongs to (use it only from that loop).
    """

    def __init__(self, address: RedisAddress, loop: asyncio.AbstractEventLoop) -> None:
        self.address = address
        self.loop = loop
        self._pipe: _Pipe | None = None
        self._connecting: asyncio.Task[_Pipe] | None = None

    async def execute(self, commands: list[tuple[bytes | str, ...]]) -> list[object]:
        """Send ``commands`` back to back and return their replies.

        Every command sent here must be idempotent: after a lost connection they are sent once
        more on a new one.

        Raises:
            redis.ConnectionError: the server cannot be reached (twice in a row).
            redis.TimeoutError: no reply within ``command_timeout``.
            redis.ResponseError: an error reply.
        """
        packed = b"".join([hiredis.pack_command(command) for command in commands])  # type: ignore[arg-type]
        for attempt in range(2):
            pipe = self._pipe
            if pipe is None or not pipe.is_open:
                pipe = await self._connect()
            futures = pipe.send(packed, len(commands))
            try:
                replies = [await future for future in futures]
            except redis.ConnectionError:
                if attempt:
                    raise
                continue
            for reply in replies:
                if isinstance(reply, hiredis.ReplyError):
                    raise redis.ResponseError(str(reply))
            return replies
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close the connection (from the loop's thread, or after the loop stopped)."""
        pipe, self._pipe = self._pipe, None
        if pipe is None or self.loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop or not self.loop.is_running():
            pipe.close()
        else:
            self.loop.call_soon_threadsafe(pipe.close)

    async def _connect(self) -> _Pipe:
        """Connect once for every command waiting on it."""
        if self._connecting is None:
            self._connecting = self.loop.create_task(self._open_within_timeout())
            self._connecting.add_done_callback(self._connected)
        return await asyncio.shield(self._connecting)

    def _connected(self, task: asyncio.Task[_Pipe]) -> None:
        self._connecting = None
        if not task.cancelled() and task.exception() is None:
            self._pipe = task.result()

    async def _open_within_timeout(self) -> _Pipe:
        timeout = self.address.connect_timeout
        try:
            return await asyncio.wait_for(self._open(), timeout)
        except TimeoutError:
            raise redis.TimeoutError(f"connecting to Redis took more than {timeout:g} s") from None
        except OSError as exc:
            raise redis.ConnectionError(f"cannot connect to Redis: {exc}") from exc

    async def _open(self) -> _Pipe:
        address, loop = self.address, self.loop
        timeout = address.command_timeout
        if address.path is not None:
            _, pipe = await loop.create_unix_connection(lambda: _Pipe(loop, timeout), address.path)
        else:
            _, pipe = await loop.create_connection(lambda: _Pipe(loop, timeout), address.host, address.port)
        setup: list[tuple[bytes | str, ...]] = []
        if address.password is not None:
            setup.append(
                ("AUTH", address.password) if address.username is None else ("AUTH", address.username, address.password)
            )
        if address.db:
            setup.append(("SELECT", str(address.db)))
        if setup:
            packed = b"".join([hiredis.pack_command(command) for command in setup])  # type: ignore[arg-type]
            for future in pipe.send(packed, len(setup)):
                reply = await future
                if isinstance(reply, hiredis.ReplyError):
                    pipe.close()
                    message = str(reply)
                    if "AUTH" in message.upper() or "WRONGPASS" in message.upper():
                        raise redis.AuthenticationError(message)
                    raise redis.ResponseError(message)
        return pipe
