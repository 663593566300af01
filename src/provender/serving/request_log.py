"""Sampled request/response logging: JSON lines to standard output or a file (``serving.request_log``).

The request path only decides whether to sample (one random number) and appends the record to
a bounded buffer; a writer thread serializes and writes the lines in batches. When the buffer is
full (the disk or pipe cannot keep up), new records are dropped and counted rather than making
requests wait: ``dropped`` here, and ``provender_serving_request_log_lines_total{outcome="dropped"}``.

One line per sampled request::

    {"time": "2026-11-27T07:00:00.123456+00:00", "protocol": "http", "endpoint": "/v1/online-features",
     "project": "default", "status": "200", "duration_ms": 0.41,
     "request": {"features": [...], "entities": {...}}, "response": {"columns": {...}}}

Bytes are base64, times RFC 3339. Headers, and so tokens, are never logged.
"""

from __future__ import annotations

import base64
import logging
import random
import sys
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO

import orjson

from provender.config import RequestLogSection
from provender.wire.errors import shorten

log = logging.getLogger(__name__)

FLUSH_INTERVAL_SECONDS = 0.05
MAX_LINE_BYTES = 64 * 1024
"""A longer line has its ``request`` and ``response`` shortened (their start and end, and the size left out)."""


def _default(value: object) -> object:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return repr(value)


def _shortened(record: dict[str, object]) -> dict[str, object]:
    """``record`` with its request and response as shortened JSON text (a huge request stays one short line)."""
    budget = MAX_LINE_BYTES // 4
    short = dict(record)
    for part in ("request", "response"):
        if part in short:
            text = orjson.dumps(short[part], default=_default).decode()
            short[part] = shorten(text, budget)
    return short


class RequestLog:
    """A sampled, never-blocking JSON-lines log.

    Args:
        section: the ``serving.request_log`` settings.
        base_dir: a relative ``path`` is resolved against it.
        on_written: called with the number of lines written by each batch (for metrics).
        on_dropped: called with the number of records dropped (for metrics).
        sample: returns a uniform number in [0, 1) (default: ``random.random``).
    """

    def __init__(
        self,
        section: RequestLogSection,
        *,
        base_dir: Path,
        on_written: Callable[[int], None] | None = None,
        on_dropped: Callable[[int], None] | None = None,
        sample: Callable[[], float] = random.random,
    ) -> None:
        self.is_enabled = section.enabled and section.sample_rate > 0
        self.sample_rate = section.sample_rate
        self.capacity = section.buffer_lines
        self.path: Path | None = None
        if section.path is not None:
            path = Path(section.path).expanduser()
            self.path = path if path.is_absolute() else base_dir / path
        self.written = 0
        self.dropped = 0
        self._buffer: deque[dict[str, object]] = deque()
        self._on_written = on_written
        self._on_dropped = on_dropped
        self._sample = sample
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._out: IO[bytes] | None = None

    def is_sampled(self) -> bool:
        """Decide whether to log the current request (cheap; call before building the record)."""
        return self.is_enabled and (self.sample_rate >= 1.0 or self._sample() < self.sample_rate)

    def submit(self, record: dict[str, object]) -> bool:
        """Queue a record for writing; return False (and count it) if the buffer is full.

        Never blocks. Safe to call from any thread.
        """
        if len(self._buffer) >= self.capacity:
            self.dropped += 1
            if self._on_dropped is not None:
                self._on_dropped(1)
            return False
        self._buffer.append(record)
        return True

    def start(self) -> None:
        """Open the output and start the writer thread (a no-op when logging is off)."""
        if not self.is_enabled or self._thread is not None:
            return
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._out = self.path.open("ab")
        else:
            self._out = sys.stdout.buffer
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="provender-request-log", daemon=True)
        self._thread.start()
        log.info("request log on path=%s sample_rate=%s", self.path or "stdout", self.sample_rate)

    def close(self) -> None:
        """Write what is buffered, stop the writer thread and close the file."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join()
        if self._out is not None and self.path is not None:
            self._out.close()
        self._out = None

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL_SECONDS):
            self._drain()
        self._drain()

    def _drain(self) -> None:
        buffer, out = self._buffer, self._out
        if not buffer or out is None:
            return
        lines = []
        while buffer:
            record = buffer.popleft()
            line = orjson.dumps(record, default=_default, option=orjson.OPT_APPEND_NEWLINE)
            if len(line) > MAX_LINE_BYTES:
                line = orjson.dumps(_shortened(record), default=_default, option=orjson.OPT_APPEND_NEWLINE)
            lines.append(line)
        try:
            out.write(b"".join(lines))
            out.flush()
        except (OSError, ValueError) as exc:
            # A full disk or a closed pipe loses these lines but must not stop serving.
            self.dropped += len(lines)
            if self._on_dropped is not None:
                self._on_dropped(len(lines))
            log.warning("request log write failed lines=%d error=%s", len(lines), exc)
            return
        self.written += len(lines)
        if self._on_written is not None:
            self._on_written(len(lines))
