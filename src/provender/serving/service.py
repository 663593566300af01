"""The transport-neutral core of the serving service: one :class:`FeatureService` per worker.

HTTP (``http.py``) and gRPC (``grpc.py``) parse a request into a :class:`FeatureQuery`, call
:meth:`FeatureService.read`, and render the :class:`QueryResult`. The service

* keeps one :class:`~provender.online.read.OnlineReader` (and online store) per project, made
  on the project's first request and cached, so the request's ``project`` selects its reader;
* keeps each project's registry snapshot fresh in a background thread
  (:class:`RegistryWatcher`): every ``registry_refresh_seconds`` it asks the registry for the
  projects' versions and re-reads only a project that changed. Requests never wait for the
  registry (except a project's very first one), and a newly applied table is served within
  ``registry_refresh_seconds``;
* fails fast while the online store is down (:class:`StoreBreaker`): after a retryable store
  error, requests get UNAVAILABLE at once, without touching the store, while a background thread
  pings it; the first successful ping lets requests through again. So an outage never stalls
  the event loop on connection retries, and the service recovers by itself;
* counts lookups by table and status, and store errors, in :mod:`~provender.serving.metrics`.

:meth:`FeatureService.read_async` is what both transports call on the event loop. With a store
that has ``capabilities.async_reads`` (Redis over TCP), the store round trip is awaited on the
loop itself (``online/redis_async.py``): no thread hand-off, and the commands of concurrent
requests share one write. Other stores are read by the synchronous :meth:`FeatureService.read`
on :attr:`FeatureService.executor` (``serving.threads``, default 2), so a slow store never
stalls the loop. Measured in ``benchmarks/serving.py`` (profile in ``docs/scaling.md``): the
thread hand-off and the GIL waits behind it were about half of a 1x5 request's CPU time.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from provender.auth import Authenticator
from provender.definitions import ValueType
from provender.definitions.request import FeatureRequest, check_passthrough_columns
from provender.errors import BackendError, ProjectNotServedError
from provender.online import codec as row_codec
from provender.online.read import FeatureStatus, OnlineReader, OnlineResponse, PlanCache
from provender.online.store import OnlineStore
from provender.registry.store import RegistrySnapshot, RegistryStore
from provender.runtime import Runtime
from provender.serving.limits import RequestLimits
from provender.serving.metrics import Metrics
from provender.serving.request_log import RequestLog
from provender.wire.codec import FLOAT_TYPES

log = logging.getLogger(__name__)

STORE_PROBE_SECONDS = 0.25
_PROJECT_RECHECK_SECONDS = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureQuery:
    """One online read, as both transports hand it to the service.

    Attributes:
        project: the project to read.
        features: the feature refs, as sent.
        entities: entity columns (and pass-through columns), each a list with one value per row.
        include_statuses: also return a status per value.
    """

    project: str
    features: tuple[str, ...]
    entities: Mapping[str, Sequence[object]]
    include_statuses: bool = False


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    """What the transports need to know about a query's result columns.

    Attributes:
        types: the registry type of each entity column of the requested tables and of each
            feature column.
        float_columns: feature columns of FLOAT/DOUBLE (list) type (JSON names NaN and infinities).
        feature_columns: the ``<table>__<feature>`` columns, in ref order.
        tables: ``(table, one of its feature columns)`` per requested table, for lookup metrics.
    """

    types: Mapping[str, ValueType]
    float_columns: tuple[str, ...]
    feature_columns: tuple[str, ...]
    tables: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class QueryResult:
    """The answer to a :class:`FeatureQuery`.

    Attributes:
        columns: entity columns as sent, then ``<table>__<feature>`` columns in ref order.
        statuses: ``{feature column: [status per row]}`` if asked for, else None.
        plan: the result's column types.
    """

    columns: dict[str, list[object]]
    statuses: dict[str, list[FeatureStatus]] | None
    plan: ColumnPlan


class RegistryWatcher:
    """Registry snapshots of the served projects, refreshed in a background thread.

    Args:
        registry: the registry to read.
        refresh_seconds: the refresh interval, i.e. the bound on staleness.
        on_error: called after a failed refresh (the last good snapshots stay in use).
    """

    def __init__(
        self,
        registry: RegistryStore,
        *,
        refresh_seconds: float,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        self._registry = registry
        self.refresh_seconds = refresh_seconds
        self._on_error = on_error
        self._snapshots: dict[str, RegistrySnapshot] = {}
        self._projects: frozenset[str] = frozenset()
        self._projects_read_at = -1e9
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.errors: dict[str, str] = {}

    def start(self) -> None:
        """Start the refresh thread."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="provender-registry-watcher", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop the refresh thread."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()

    def snapshot(self, project: str) -> RegistrySnapshot:
        """Return the project's cached snapshot, reading it on first use (then it is watched)."""
        snapshot = self._snapshots.get(project)
        if snapshot is None:
            snapshot = self._registry.read(project, skip_malformed=True)
            if snapshot.skipped:
                self._report(_skipped_text(snapshot), project)
            with self._lock:
                snapshot = self._snapshots.setdefault(project, snapshot)
        return snapshot

    def known_projects(self, *, recheck: bool = False) -> frozenset[str]:
        """Return the registry's project names (re-listed at most once a second when ``recheck``)."""
        if recheck and time.monotonic() - self._projects_read_at >= _PROJECT_RECHECK_SECONDS:
            self._list_projects()
        return self._projects

    def refresh(self) -> None:
        """Re-read every watched project whose registry version changed.

        A stored definition that cannot be decoded is skipped and the rest of its project served;
        it is reported (:attr:`errors`, ``on_error``, a log line naming it) until it is fixed. A
        project that cannot be read at all keeps its last good snapshot and is reported likewise;
        the other projects refresh.
        """
        versions = self._list_projects()
        with self._lock:
            watched = dict(self._snapshots)
        errors: dict[str, str] = {}
        for project, snapshot in watched.items():
            if versions.get(project, 0) == snapshot.version:
                if snapshot.skipped:  # still skipped: still reported
                    errors[project] = _skipped_text(snapshot)
                continue
            try:
                fresh = self._registry.read(project, skip_malformed=True)
            except Exception as exc:  # noqa: BLE001 - one bad project must not stop the others
                errors[project] = f"{type(exc).__name__}: {str(exc)[:500]}"
                self._report(errors[project], project)
                continue
            with self._lock:
                self._snapshots[project] = fresh
            log.info("registry changed project=%s version=%d", project, fresh.version)
            if fresh.skipped:
                errors[project] = _skipped_text(fresh)
                self._report(errors[project], project)
        self.errors = errors

    def _report(self, error: str, project: str) -> None:
        if self._on_error is not None:
            self._on_error()
        log.warning(
            "registry refresh problem (the rest is served) project=%s error=%s",
            project,
            error,
            extra={"project": project, "error": error},
        )

    def _list_projects(self) -> dict[str, int]:
        infos = self._registry.list_projects()
        self._projects = frozenset(info.name for info in infos)
        self._projects_read_at = time.monotonic()
        return {info.name: info.version for info in infos}

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            try:
                self.refresh()
            except Exception as exc:  # noqa: BLE001 - the watcher must survive anything
                self.last_error = f"{type(exc).__name__}: {str(exc)[:500]}"
                self._report(self.last_error, "*")
            else:
                self.last_error = None


def _skipped_text(snapshot: RegistrySnapshot) -> str:
    """Describe a snapshot's skipped definitions (for the log, ``/v1/ready`` and :attr:`RegistryWatcher.errors`)."""
    return "skipped malformed definitions: " + "; ".join(
        f"{name}: {error}" for name, error in sorted(snapshot.skipped.items())
    )


class StoreUnavailableError(BackendError):
    """The online store failed recently and has not answered a ping since."""


class StoreBreaker:
    """Fail fast while the store is down; a background thread pings it until it answers.

    Args:
        ping: checks the store (raises BackendError when it is down).
        probe_seconds: how often to ping while open.
    """

    def __init__(self, ping: Callable[[], None], *, probe_seconds: float = STORE_PROBE_SECONDS) -> None:
        self._ping = ping
        self._probe_seconds = probe_seconds
        self.is_open = False
        self._reason = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> None:
        """Raise StoreUnavailableError while the store is known to be down."""
        if self.is_open:
            raise StoreUnavailableError(
                f"The online store is unavailable ({self._reason}); retry later.", retryable=True
            )

    def trip(self, error: BackendError) -> None:
        """Open after a retryable store error and start pinging the store."""
        with self._lock:
            self._reason = str(error)
            if self.is_open:
                return
            self.is_open = True
            log.warning("online store down, failing fast until it answers error=%s", error)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._probe, name="provender-store-probe", daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Stop pinging."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join()

    def _probe(self) -> None:
        while not self._stop.wait(self._probe_seconds):
            try:
                self._ping()
            except BackendError as exc:
                self._reason = str(exc)
                continue
            with self._lock:
                self.is_open = False
            log.warning("online store answers again")
            return


class _Project:
    """One served project: its store and reader, and cached column plans."""

    __slots__ = ("bytes_entities", "name", "plans", "reader", "store", "version")

    def __init__(self, name: str, store: OnlineStore, reader: OnlineReader) -> None:
        self.name, self.store, self.reader = name, store, reader
        self.plans: PlanCache[ColumnPlan] = PlanCache()
        self.version = -1
        self.bytes_entities: frozenset[str] = frozenset()


class FeatureService:
    """Serve online reads for every project of one configuration.

    Args:
        runtime: the backends of the configuration (its ``online``, ``registry`` and
            ``serving`` sections are used).
        metrics: where to count (default: a fresh :class:`Metrics`).
    """

    def __init__(self, runtime: Runtime, *, metrics: Metrics | None = None) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.settings = settings
        self.serving = settings.serving
        self.default_project = settings.project
        self.limits = RequestLimits.of(self.serving)
        self.metrics = metrics if metrics is not None else Metrics()
        self.auth = Authenticator(self.serving.auth)
        self.request_log = RequestLog(
            self.serving.request_log,
            base_dir=settings.base_dir,
            on_written=self.metrics.log_written.inc,
            on_dropped=self.metrics.log_dropped.inc,
        )
        self._registry = runtime.open_registry()
        self.watcher = RegistryWatcher(
            self._registry,
            refresh_seconds=self.serving.registry_refresh_seconds,
            on_error=self.metrics.registry_refresh_errors.inc,
        )
        self._projects: dict[str, _Project] = {}
        self._served = None if self.serving.projects is None else frozenset(self.serving.projects)
        self._lock = threading.Lock()
        self.breaker = StoreBreaker(self._ping)
        self.executor = ThreadPoolExecutor(self.serving.threads, thread_name_prefix="provender-read")

    # -- lifecycle

    def start(self) -> None:
        """Open the default project's store, and start the registry and request-log threads."""
        if self._served is None or self.default_project in self._served:
            self._project(self.default_project)
        self.watcher.start()
        self.request_log.start()
        row_codec.CORRUPT_ROW_LISTENERS.append(self._count_corrupt)

    def close(self) -> None:
        """Stop the threads and close every store and the registry."""
        if self._count_corrupt in row_codec.CORRUPT_ROW_LISTENERS:
            row_codec.CORRUPT_ROW_LISTENERS.remove(self._count_corrupt)
        self.watcher.close()
        self.breaker.close()
        self.executor.shutdown(wait=True)
        self.request_log.close()
        with self._lock:
            projects, self._projects = list(self._projects.values()), {}
        for project in projects:
            project.store.close()
        self._registry.close()

    # -- requests

    def read(self, query: FeatureQuery) -> QueryResult:
        """Read a query's features (blocking: call it on :attr:`executor` from an event loop).

        Raises:
            ProjectNotServedError: the project is not served.
            FeatureRefError, NotFoundError, DataError: a bad request.
            RequestTooLargeError: the query is over a ``serving.max_*`` limit.
            BackendError: the store failed (retryable: it is down; retry later).
        """
        project, rows = self._begin(query)
        try:
            response = project.reader.read(query.features, rows)
        except BackendError as exc:
            self._store_failed(project, exc)
            raise
        return self._result(project, query, response)

    async def read_async(self, query: FeatureQuery) -> QueryResult:
        """:meth:`read` for the event loop: the store is awaited on the loop when it can be.

        A store with ``capabilities.async_reads`` (Redis over TCP) is read without leaving the
        loop's thread; any other store, and a project's first request (which may read the
        registry and open the store), run :meth:`read` on :attr:`executor`.

        Raises:
            The errors of :meth:`read`.
        """
        project = self._projects.get(query.project)
        if project is None or not project.reader.reads_async:
            return await asyncio.get_running_loop().run_in_executor(self.executor, self.read, query)
        project, rows = self._begin(query)
        try:
            response = await project.reader.read_async(query.features, rows, executor=self.executor)
        except BackendError as exc:
            self._store_failed(project, exc)
            raise
        return self._result(project, query, response)

    def _begin(self, query: FeatureQuery) -> tuple[_Project, list[dict[str, object]]]:
        """Check the limits and the breaker; return the project and the entity rows."""
        self.limits.check(query.features, query.entities)
        self.breaker.check()
        project = self._project(query.project)
        entities = query.entities
        rows: list[dict[str, object]]
        if len(entities) == 1:
            ((name, values),) = entities.items()
            rows = [{name: value} for value in values]
        else:
            names = tuple(entities)
            rows = [dict(zip(names, values, strict=True)) for values in zip(*entities.values(), strict=True)]
        return project, rows

    def _store_failed(self, project: _Project, error: BackendError) -> None:
        self.metrics.store_error(project.name, retryable=error.retryable)
        if error.retryable:
            self.breaker.trip(error)

    def _result(self, project: _Project, query: FeatureQuery, response: OnlineResponse) -> QueryResult:
        plan = self._column_plan(project, query.features)
        check_passthrough_columns(query.entities, plan.feature_columns, where="request's entity columns")
        columns = response.to_dict()
        statuses = response.statuses() if query.include_statuses else None
        count = self.metrics.count_lookups
        for table, column in plan.tables:
            values = columns[column]
            if None not in values:  # every row found (the common case): no statuses needed
                count(project.name, table, ("PRESENT",), len(values))
                continue
            if statuses is None:
                statuses = response.statuses()
            count(project.name, table, [_ROW_STATUS[status] for status in statuses[column]])
        return QueryResult(columns, statuses if query.include_statuses else None, plan)

    def bytes_entities(self, project: str) -> frozenset[str]:
        """Return the project's BYTES entities (their JSON values are base64 strings)."""
        state = self._project(project)
        snapshot = self.watcher.snapshot(project)
        if state.version != snapshot.version:
            state.bytes_entities = frozenset(
                name for name, entity in snapshot.entities.items() if entity.value_type is ValueType.BYTES
            )
            state.version = snapshot.version
        return state.bytes_entities

    def _count_corrupt(self, table: str) -> None:
        self.metrics.corrupt_rows.labels(table).inc()

    def check_ready(self) -> None:
        """Check that the default project's store answers; raise BackendError if not."""
        self.breaker.check()
        self._ping()

    def registry_problems(self) -> str | None:
        """Describe the registry refreshes failing now (the last good snapshots are served), or None."""
        problems = dict(self.watcher.errors)
        if self.watcher.last_error is not None:
            problems["*"] = self.watcher.last_error
        if not problems:
            return None
        return "; ".join(
            f"registry refresh failed for {'the registry' if project == '*' else f'project {project!r}'}: {error}"
            for project, error in sorted(problems.items())
        )

    def _ping(self) -> None:
        with self._lock:
            project = next(iter(self._projects.values()), None)
        if project is None:
            project = self._project(self.default_project if self._served is None else min(self._served))
        project.store.ping()

    # -- projects

    def _project(self, name: str) -> _Project:
        project = self._projects.get(name)
        if project is not None:
            return project
        self._check_served(name)
        with self._lock:
            project = self._projects.get(name)
            if project is None:
                store = self.runtime.open_online_store(name)
                reader = OnlineReader(store, load_catalog=lambda: self.watcher.snapshot(name), refresh_seconds=0.0)
                project = self._projects[name] = _Project(name, store, reader)
                log.info("serving project=%s", name)
        return project

    def _check_served(self, name: str) -> None:
        if self._served is not None:
            if name not in self._served:
                raise ProjectNotServedError(name, served=sorted(self._served))
            return
        if name == self.default_project or name in self.watcher.known_projects():
            return
        known = self.watcher.known_projects(recheck=True)
        if name not in known:
            raise ProjectNotServedError(name, served=sorted(known))

    def _column_plan(self, project: _Project, features: tuple[str, ...]) -> ColumnPlan:
        snapshot = self.watcher.snapshot(project.name)
        key = (snapshot.version, features)
        plan = project.plans.get(key)
        if plan is None:
            plan = _plan_columns(snapshot, features)
            project.plans.put(key, plan)
        return plan


# A table's row-level lookup status, from the status of one of its features.
_ROW_STATUS = {
    FeatureStatus.PRESENT: "PRESENT",
    FeatureStatus.NULL_VALUE: "PRESENT",
    FeatureStatus.NOT_FOUND: "NOT_FOUND",
    FeatureStatus.OUTSIDE_MAX_AGE: "OUTSIDE_MAX_AGE",
    FeatureStatus.CORRUPT: "CORRUPT",
}


def _plan_columns(snapshot: RegistrySnapshot, features: Sequence[str]) -> ColumnPlan:
    """Resolve the result columns' types with the one resolver (the refs were already checked by the read)."""
    request = FeatureRequest.resolve(
        features,
        feature_tables=snapshot.feature_tables,
        entities=snapshot.entities,
        project=snapshot.project,
        on_demand_features=snapshot.on_demand_features,
    )
    types = request.types
    floats = tuple(name for name in request.columns if types[name] in FLOAT_TYPES)
    # Lookups are counted per table by a returned column (tables read only for on-demand inputs are not).
    returned = set(request.columns)
    firsts = ((t.name, next((c for c in t.columns if c in returned), None)) for t in request.tables)
    tables = tuple((name, column) for name, column in firsts if column is not None)
    return ColumnPlan(types, floats, request.columns, tables)
