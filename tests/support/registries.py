"""The registry the suite's test projects use: SQLite, PostgreSQL or a core service (``PROVENDER_TEST_REGISTRY``).

Test projects get their registry URL from :func:`registry_url` (the shared builders, the serving
and online fixtures, the CLI projects do). By default it is the SQLite file the test names. With
``PROVENDER_TEST_REGISTRY=postgresql`` each distinct file a test names becomes a fresh database of
its own on the session's real PostgreSQL server; with ``PROVENDER_TEST_REGISTRY=core`` it becomes
a real core service (the ``provender core`` application under uvicorn, in a thread of the test
process, on a free loopback port) over such a database, and the project's ``registry:`` is its
``http://127.0.0.1:PORT``. Every database and service a test got is dropped or stopped at its
teardown. Tests of one backend's own behaviour (the SQLite file, a core they start themselves)
keep writing their URLs directly.

``scripts/run_suite.sh`` runs the registry-using groups with each value (see docs/registry.md).
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from provender.asgi import BACKLOG, KEEP_ALIVE_SECONDS, HttpServer, bind_socket, bounded_http_protocol
from provender.auth import Authenticator
from provender.config import Settings
from provender.core.http import CoreApp, create_app
from provender.core.jobs import CoreJobs
from provender.core.metrics import CoreMetrics
from provender.core.service import CoreService, open_registry
from tests.support.services import HOST, START_TIMEOUT, PostgresServer

REGISTRY_ENV = "PROVENDER_TEST_REGISTRY"
BACKENDS = ("sqlite", "postgresql", "core")
SQLITE_SCHEME = "sqlite:///"
STOP_TIMEOUT_SECONDS = 30.0


def selected_backend() -> str:
    """The backend ``PROVENDER_TEST_REGISTRY`` selects (``sqlite`` if unset)."""
    backend = os.environ.get(REGISTRY_ENV, "").strip() or "sqlite"
    if backend not in BACKENDS:
        raise pytest.UsageError(f"{REGISTRY_ENV}={backend!r}: expected one of {', '.join(BACKENDS)}")
    return backend


BACKEND = selected_backend()
"""Read once, when the suite starts (tests remove ``PROVENDER_*`` variables from their environment)."""


def registry_url(project_dir: Path, default: str = "sqlite:///registry.db") -> str:
    """The registry URL of a test project in ``project_dir``.

    Args:
        project_dir: the project's directory (a relative SQLite path is relative to it).
        default: the SQLite URL the test would use; returned unchanged on the SQLite backend.

    Returns:
        ``default``, or the URL of the PostgreSQL database or core service standing for that
        SQLite file in this test (the same file gives the same registry).
    """
    if BACKEND == "sqlite":
        return default
    registries = _current or _session  # module-scoped fixtures get registries that last the session
    if registries is None:
        raise RuntimeError("registry_url called outside the test session's fixtures")
    if not default.startswith(SQLITE_SCHEME):
        raise ValueError(f"registry_url expects a sqlite:/// URL, not {default!r}")
    path = Path(default.removeprefix(SQLITE_SCHEME))
    return registries.url_for(str((path if path.is_absolute() else project_dir / path).resolve()))


def use_test_registry(config: Path) -> Path:
    """Point the ``registry:`` line of ``config`` (written by ``provender init``) at the test's registry.

    A no-op on the SQLite backend; otherwise only that line changes (the template's comments stay).
    """
    if BACKEND == "sqlite":
        return config
    lines = config.read_text(encoding="utf-8").splitlines(keepends=True)
    for n, line in enumerate(lines):
        if line.startswith("registry:"):
            url = registry_url(config.parent, line.removeprefix("registry:").strip())
            lines[n] = f"registry: {url}\n"
            break
    else:
        raise ValueError(f"{config} has no registry: line")
    config.write_text("".join(lines), encoding="utf-8")
    return config


def is_sqlite() -> bool:
    """True when test projects' registries are SQLite files (their files can be inspected)."""
    return BACKEND == "sqlite"


class InProcessCore:
    """The core service's application served by uvicorn in a thread, over the registry ``registry``.

    The same pieces as ``provender core`` (``provender.core.server``): the registry, the job
    service (reaper included), auth (off) and the ASGI app, on a socket bound to a free port.
    """

    def __init__(self, registry: str, base_dir: Path) -> None:
        self.settings = Settings(registry=registry, base_dir=base_dir)
        self.metrics = CoreMetrics()
        self.store = open_registry(self.settings)
        self.jobs = CoreJobs(self.settings, self.store, metrics=self.metrics)
        self.service = CoreService(self.store, Authenticator(self.settings.core.auth), jobs=self.jobs)
        self.app: CoreApp = create_app(self.service, metrics=self.metrics, threads=self.settings.core.threads)
        self.sock = bind_socket(HOST, 0, reuse_port=False)
        self.port: int = self.sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            http=bounded_http_protocol(),  # as provender.core.server: heads bounded in size and time
            lifespan="off",
            access_log=False,
            log_config=None,
            server_header=False,
            backlog=BACKLOG,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            timeout_graceful_shutdown=math.ceil(self.settings.core.graceful_shutdown_seconds),
        )
        self.server = HttpServer(config)
        self.thread = threading.Thread(target=self._run, name=f"test-core-{self.port}", daemon=True)
        self.error: BaseException | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{HOST}:{self.port}"

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve(sockets=[self.sock]))
        except BaseException as exc:  # noqa: BLE001 - reported by start() or stop()
            self.error = exc

    def start(self) -> InProcessCore:
        """Start serving and the job service; return once uvicorn has started."""
        self.jobs.start()
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"in-process core on port {self.port} did not start: {self.error!r}")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Stop serving (in-flight requests finish), the job service, and close the registry."""
        self.server.should_exit = True
        if self.thread.ident is not None:
            self.thread.join(STOP_TIMEOUT_SECONDS)
        self.sock.close()
        self.jobs.stop()
        self.app.close()
        self.service.close()
        if self.thread.is_alive():
            raise RuntimeError(f"in-process core on port {self.port} did not stop within {STOP_TIMEOUT_SECONDS}s")
        if self.error is not None:
            raise RuntimeError(f"in-process core on port {self.port} failed: {self.error!r}") from self.error


@dataclass
class Provisioned:
    """One registry given to a test: its URL, its database, and the core serving it (if any)."""

    url: str
    database: str
    core: InProcessCore | None = None


class ProjectRegistries:
    """The registries one test got, by the SQLite file each stands for; released at teardown.

    A test making many projects one after the other (a property test's examples) keeps only the
    last ``MAX_LIVE`` registries: older ones are released as new ones are made.
    """

    MAX_LIVE = 8

    def __init__(self, request: pytest.FixtureRequest, backend: str) -> None:
        self.request = request
        self.backend = backend
        self.live: dict[str, Provisioned] = {}

    def url_for(self, key: str) -> str:
        """The registry standing for SQLite file ``key`` (created on first use)."""
        if key not in self.live:
            while len(self.live) >= self.MAX_LIVE:
                self._release(self.live.pop(next(iter(self.live))))
            server = self._server()
            name = f"reg_{uuid.uuid4().hex[:12]}"
            provisioned = Provisioned(url=server.create_database(name), database=name)
            self.live[key] = provisioned
            if self.backend == "core":
                base_dir = Path(key).parent
                base_dir.mkdir(parents=True, exist_ok=True)
                provisioned.core = InProcessCore(provisioned.url, base_dir)
                provisioned.url = provisioned.core.start().url
        return self.live[key].url

    def _server(self) -> PostgresServer:
        server: PostgresServer = self.request.getfixturevalue("postgres_server")
        return server

    def _release(self, provisioned: Provisioned) -> None:
        try:
            if provisioned.core is not None:
                provisioned.core.stop()
        finally:
            self._server().drop_database(provisioned.database)

    def close(self) -> None:
        """Stop the cores, then drop the databases."""
        errors: list[str] = []
        live, self.live = list(self.live.values()), {}
        for provisioned in live:
            try:
                self._release(provisioned)
            except RuntimeError as exc:
                errors.append(str(exc))
        if errors:
            raise RuntimeError("; ".join(errors))


_current: ProjectRegistries | None = None
_session: ProjectRegistries | None = None


@pytest.fixture(scope="session", autouse=True)
def session_registries(request: pytest.FixtureRequest) -> Iterator[ProjectRegistries | None]:
    """Registries asked for outside a test (by module-scoped fixtures); released at the session's end."""
    global _session
    if BACKEND == "sqlite":
        yield None
        return
    request.getfixturevalue("postgres_server")  # set up first, so it is torn down after the registries
    _session = ProjectRegistries(request, BACKEND)
    try:
        yield _session
    finally:
        registries, _session = _session, None
        registries.close()


@pytest.fixture(autouse=True)
def project_registries(
    request: pytest.FixtureRequest, session_registries: ProjectRegistries | None
) -> Iterator[ProjectRegistries | None]:
    """This test's registries on the selected backend (None on SQLite: nothing to provision)."""
    global _current
    if BACKEND == "sqlite":
        yield None
        return
    _current = ProjectRegistries(request, BACKEND)
    try:
        yield _current
    finally:
        registries, _current = _current, None
        registries.close()
