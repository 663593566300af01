"""Running the core service: ``provender core`` calls :func:`run`.

One process: a uvloop event loop running uvicorn (no access log) over the registry, plus the
job service's threads (ingestion jobs run with ``run_on="core"``, and the reaper that fails
jobs whose runner stopped beating). It keeps no state of its own: run several replicas over one
PostgreSQL registry behind a load balancer. On SIGTERM or SIGINT it stops accepting connections,
lets in-flight requests finish (at most ``core.graceful_shutdown_seconds``) and exits.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal

import uvicorn
import uvloop

from provender.asgi import BACKLOG, KEEP_ALIVE_SECONDS, HttpServer, bind_socket, bounded_http_protocol
from provender.auth import Authenticator
from provender.config import Settings
from provender.core.http import create_app
from provender.core.jobs import CoreJobs
from provender.core.metrics import CoreMetrics
from provender.core.service import CoreService, open_registry
from provender.runtime import Runtime
from provender.source_roots import SourceRoots

log = logging.getLogger(__name__)

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def run(settings: Settings) -> None:
    """Serve the registry of ``settings`` until SIGTERM or SIGINT.

    Raises:
        ProvenderError: a configuration or registry problem found while starting.
    """
    uvloop.run(_serve(settings))


async def _serve(settings: Settings) -> None:
    core = settings.core
    metrics = CoreMetrics()
    store = open_registry(settings)
    jobs = CoreJobs(settings, store, metrics=metrics)
    service = CoreService(store, Authenticator(core.auth), jobs=jobs, roots=SourceRoots.of(settings))
    app = create_app(service, metrics=metrics, threads=core.threads, open_online=Runtime(settings).open_online_store)
    try:
        sock = bind_socket(core.host, core.port, reuse_port=False)
        config = uvicorn.Config(
            app,
            http=bounded_http_protocol(),  # heads bounded in size and time, as the serving's
            lifespan="off",
            access_log=False,
            log_config=None,
            server_header=False,
            backlog=BACKLOG,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            timeout_graceful_shutdown=math.ceil(core.graceful_shutdown_seconds),
        )
        http = HttpServer(config)
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for signum in _STOP_SIGNALS:
            loop.add_signal_handler(signum, stopping.set)
        jobs.start()
        http_task = asyncio.create_task(http.serve(sockets=[sock]))
        log.info(
            "core serving http=%s:%d registry=%s auth=%s pid=%d",
            core.host,
            sock.getsockname()[1],
            settings.registry.split("://", 1)[0],
            core.auth.mode,
            os.getpid(),
        )
        stop_task = asyncio.create_task(stopping.wait())
        await asyncio.wait({http_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        log.info("stopping: finishing in-flight requests (at most %.0fs)", core.graceful_shutdown_seconds)
        http.should_exit = True
        await http_task
        stop_task.cancel()
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)
        log.info("stopped")
    finally:
        jobs.stop()
        app.close()
        service.close()
