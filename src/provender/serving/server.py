"""Running the service: worker processes, each serving HTTP and gRPC.

``provender serve`` calls :func:`run`. With ``workers: 1`` the process itself is the worker.
With more, it becomes a supervisor: it starts the workers (``spawn``), each of which listens on
the same HTTP and gRPC ports with ``SO_REUSEPORT`` (the kernel spreads connections over them),
restarts a worker that dies (at any time, after a backoff doubling from 0.5 s to 10 s while it
keeps dying during start-up; it gives up only after 4 start-up failures in a row), and on
SIGTERM or SIGINT passes SIGTERM on and waits for them.
Workers share nothing but the stores, so any number of replicas can run side by side.

A worker is one uvloop event loop running uvicorn (httptools parser, no access log) and grpcio's
asyncio server; with Redis, reads are awaited on the same loop (``online/redis_async.py``), and
other stores are read on the service's read threads. On SIGTERM it stops accepting
connections, lets in-flight requests finish (at most ``graceful_shutdown_seconds``), reports
NOT_SERVING on the gRPC health service, and exits. Metrics from several workers are summed
through ``PROMETHEUS_MULTIPROC_DIR``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Awaitable
from multiprocessing.process import BaseProcess
from types import FrameType

import uvicorn
import uvloop

from provender.asgi import (
    BACKLOG,
    KEEP_ALIVE_SECONDS,
    HttpServer,
    bind_socket,
    bounded_http_protocol,
    configure_logging,
)
from provender.config import Settings
from provender.runtime import Runtime
from provender.serving.http import create_app
from provender.serving.metrics import MULTIPROC_ENV, mark_worker_dead
from provender.serving.service import FeatureService

log = logging.getLogger(__name__)

HEALTH_UPDATE_SECONDS = 0.5
_EARLY_EXIT_SECONDS = 5.0
_MAX_EARLY_EXITS = 4  # a worker that cannot start this many times in a row stops the service
_FIRST_BACKOFF_SECONDS = 0.5
_MAX_BACKOFF_SECONDS = 10.0
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def run(settings: Settings, *, log_level: int = logging.INFO) -> int:
    """Serve ``settings`` until SIGTERM or SIGINT; return the exit code.

    Raises:
        ProvenderError: a configuration or store problem found while starting (single worker).
    """
    if settings.serving.workers == 1:
        run_worker(settings, reuse_port=False)
        return 0
    return _Supervisor(settings, log_level=log_level).run()


def run_worker(settings: Settings, *, reuse_port: bool) -> None:
    """Serve in this process until SIGTERM or SIGINT."""
    uvloop.run(_serve(settings, reuse_port=reuse_port))


def _worker_main(settings: Settings, log_level: int) -> None:  # pragma: no cover - runs in a child process
    configure_logging(log_level)
    run_worker(settings, reuse_port=True)


async def _serve(settings: Settings, *, reuse_port: bool) -> None:
    from provender.serving.grpc import create_grpc_server

    serving = settings.serving
    service = FeatureService(Runtime(settings))
    try:
        service.start()
        # Everything built so far (modules, registry snapshot, stores) lives as long as the
        # worker: keep it out of the collector's full passes, whose pauses set the p99.
        gc.collect()
        gc.freeze()
        sock = bind_socket(serving.host, serving.http_port, reuse_port=reuse_port)
        config = uvicorn.Config(
            create_app(service),
            http=bounded_http_protocol(
                max_header_bytes=serving.max_header_bytes, header_timeout=serving.header_timeout_seconds
            ),
            limit_concurrency=serving.max_connections,
            lifespan="off",
            access_log=False,
            proxy_headers=False,  # the app reads no client address; skips a middleware per request
            log_config=None,
            server_header=False,
            backlog=BACKLOG,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            timeout_graceful_shutdown=math.ceil(serving.graceful_shutdown_seconds),
        )
        http = HttpServer(config)
        grpc_server = health = None
        grpc_port: int | None = None
        if serving.grpc_port is not None:
            address = (
                f"[{serving.host}]:{serving.grpc_port}"
                if ":" in serving.host
                else f"{serving.host}:{serving.grpc_port}"
            )
            grpc_server, health, grpc_port = create_grpc_server(service, address=address, reuse_port=reuse_port)
            await grpc_server.start()
            await health.update()
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for signum in _STOP_SIGNALS:
            loop.add_signal_handler(signum, stopping.set)
        http_task = asyncio.create_task(http.serve(sockets=[sock]))
        log.info(
            "serving http=%s:%d grpc=%s project=%s pid=%d",
            serving.host,
            sock.getsockname()[1],
            "off" if grpc_port is None else f"{serving.host}:{grpc_port}",
            settings.project,
            os.getpid(),
        )
        while not stopping.is_set() and not http_task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), HEALTH_UPDATE_SECONDS)
            if health is not None:
                await health.update()
        log.info("stopping: finishing in-flight requests (at most %.0fs)", serving.graceful_shutdown_seconds)
        http.should_exit = True
        if health is not None:
            await health.shutdown()
        stops: list[Awaitable[object]] = [http_task]
        if grpc_server is not None:
            stops.append(grpc_server.stop(serving.graceful_shutdown_seconds))
        await asyncio.gather(*stops)
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)
        log.info("stopped")
    finally:
        service.close()


class _Supervisor:
    """Start ``workers`` worker processes, restart the ones that die, stop them on a signal."""

    def __init__(self, settings: Settings, *, log_level: int) -> None:
        self.settings = settings
        self.log_level = log_level
        self.workers: list[tuple[BaseProcess, float]] = []
        self.stopping = False
        self._context = multiprocessing.get_context("spawn")

    def run(self) -> int:
        """Supervise until a signal; return the exit code."""
        own_dir = MULTIPROC_ENV not in os.environ
        if own_dir:
            os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="provender-metrics-")
        previous = {signum: signal.signal(signum, self._on_signal) for signum in _STOP_SIGNALS}
        try:
            count = self.settings.serving.workers
            log.info("starting workers=%d", count)
            self.workers = [self._start() for _ in range(count)]
            return self._watch()
        finally:
            self._stop_all()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if own_dir:
                shutil.rmtree(os.environ.pop(MULTIPROC_ENV), ignore_errors=True)

    def _start(self) -> tuple[BaseProcess, float]:
        process = self._context.Process(
            target=_worker_main, args=(self.settings, self.log_level), name="provender-serve-worker", daemon=False
        )
        process.start()
        return process, time.monotonic()

    def _watch(self) -> int:
        failures = [0] * len(self.workers)  # consecutive early exits per worker slot
        restart_at: dict[int, float] = {}
        while not self.stopping:
            time.sleep(0.2)
            now = time.monotonic()
            for index, (process, started_at) in enumerate(self.workers):
                if self.stopping:
                    break
                if index in restart_at:
                    if now >= restart_at[index]:
                        del restart_at[index]
                        self.workers[index] = self._start()
                    continue
                if process.is_alive():
                    if now - started_at >= _EARLY_EXIT_SECONDS:
                        failures[index] = 0
                    continue
                assert process.pid is not None
                mark_worker_dead(process.pid)
                if now - started_at < _EARLY_EXIT_SECONDS:
                    failures[index] += 1
                    if failures[index] >= _MAX_EARLY_EXITS:
                        log.error(
                            "worker pid=%d exited during startup %d times in a row code=%s; stopping",
                            process.pid,
                            failures[index],
                            process.exitcode,
                        )
                        return 1
                delay = min(_MAX_BACKOFF_SECONDS, _FIRST_BACKOFF_SECONDS * 2 ** max(0, failures[index] - 1))
                log.warning("worker pid=%d died code=%s; restarting it in %.1fs", process.pid, process.exitcode, delay)
                restart_at[index] = now + delay
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:  # noqa: ARG002 - signal handler signature
        self.stopping = True

    def _stop_all(self) -> None:
        for process, _ in self.workers:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.serving.graceful_shutdown_seconds + 5.0
        for process, _ in self.workers:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.error("worker pid=%s did not stop in time; killing it", process.pid)
                process.kill()
                process.join()
