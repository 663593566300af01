"""A progress line on stderr for long CLI operations (only when stderr is a terminal)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

import click


class Progress:
    """Redraw ``message()`` with the elapsed time every ``interval_seconds`` until closed.

    Examples:
        >>> with Progress(lambda: "retrieving"):  # doctest: +SKIP
        ...     run()
    """

    def __init__(self, message: Callable[[], str], *, interval_seconds: float = 0.2) -> None:
        self._message = message
        self._interval = interval_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at = time.perf_counter()

    @property
    def elapsed_seconds(self) -> float:
        """Seconds since the progress started."""
        return time.perf_counter() - self.started_at

    def __enter__(self) -> Self:
        self.started_at = time.perf_counter()
        if sys.stderr.isatty():
            self._thread = threading.Thread(target=self._run, name="provender-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            click.echo("\r\033[K", nl=False, err=True)

    def _run(self) -> None:
        spinner = "|/-\\"
        n = 0
        while True:  # draw at once, then every interval until stopped
            click.echo(f"\r\033[K{spinner[n % 4]} {self._message()} {self.elapsed_seconds:.1f}s", nl=False, err=True)
            n += 1
            if self._stop.wait(self._interval):
                return
