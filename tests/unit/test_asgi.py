"""The HTTP plumbing's write coalescing: one write per turn of the event loop, nothing lost or reordered."""

from __future__ import annotations

import asyncio
import socket

from provender.asgi import _CoalescingTransport


async def _pair() -> tuple[asyncio.Transport, socket.socket]:
    """A real connected transport (ours to write on) and the raw socket at the other end."""
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    transport, _ = await asyncio.get_running_loop().create_connection(asyncio.Protocol, sock=ours)
    return transport, theirs


async def _received(sock: socket.socket, size: int) -> bytes:
    loop, data = asyncio.get_running_loop(), b""
    while len(data) < size:
        data += await loop.sock_recv(sock, size - len(data))
    return data


def test_writes_of_one_loop_turn_leave_together_in_order() -> None:
    async def scenario() -> None:
        transport, theirs = await _pair()
        calls: list[bytes] = []
        original = transport.write

        def counting(data: bytes | bytearray | memoryview) -> None:
            calls.append(bytes(data))
            original(data)

        transport.write = counting  # type: ignore[method-assign]
        coalescing = _CoalescingTransport(transport, asyncio.get_running_loop())
        coalescing.write(b"HTTP/1.1 200 OK\r\n\r\n")
        coalescing.write(bytearray(b"body"))
        coalescing.writelines([b"-", memoryview(b"end")])
        assert calls == []  # nothing sent before the turn ends
        assert await _received(theirs, 27) == b"HTTP/1.1 200 OK\r\n\r\nbody-end"
        assert calls == [b"HTTP/1.1 200 OK\r\n\r\nbody-end"]
        coalescing.write(b"second")
        assert await _received(theirs, 6) == b"second"
        assert len(calls) == 2
        get_extra_info = coalescing.get_extra_info  # the rest delegates (through __getattr__)
        assert callable(get_extra_info)
        assert get_extra_info("peername") == transport.get_extra_info("peername")
        coalescing.write(b"last words")
        coalescing.close()  # flushes first
        assert await _received(theirs, 10) == b"last words"
        theirs.close()

    asyncio.run(scenario())
