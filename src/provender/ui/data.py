"""What the UI shows, read from the registry: projects with counts, snapshots, the search index.

Everything is read through a :class:`~provender.registry.store.RegistryStore` and filtered by the
caller's :class:`~provender.auth.Grant`; the freshness of online values comes from the online
store (:meth:`~provender.online.store.OnlineStore.freshness`, one cheap read for all of a
project's tables), opened once per project. Per project, the decoded snapshot and its search entries
are kept for the registry version they were read at, so a page or a search over a project with
1,000 tables costs one version check, not a decode.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from provender.auth import Grant
from provender.errors import ProvenderError
from provender.online.store import OnlineStore, TableFreshness
from provender.registry.jobs import JobRecord
from provender.registry.store import ProjectInfo, RegistryChangeRecord, RegistrySnapshot, RegistryStore

MAX_RESULTS = 50
ONLINE_RETRY_SECONDS = 30.0  # after a failed freshness read, pages say so without asking the store again
OpenOnline = Callable[[str], OnlineStore | None]  # a project -> its online store (None: it has no data yet)
NO_ONLINE_DATA = "no online store data yet: an ingestion job writes the first values"

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Entry:
    """One searchable thing: a table, a feature, an entity, or on-demand features and their features."""

    kind: str  # "table" | "feature" | "entity" | "on-demand" | "on-demand feature"
    project: str
    table: str  # the table (or on-demand view) of a feature, or the table itself; "" for an entity
    name: str
    description: str
    labels: str
    value_type: str
    text: str  # everything above, lower-cased, for matching
    lower_name: str
    lower_table: str


@dataclass(frozen=True, slots=True)
class Hit:
    """A search result and its score (higher first)."""

    entry: Entry
    score: int


@dataclass(frozen=True, slots=True)
class ProjectSummary:
    """A project and how much is in it."""

    info: ProjectInfo
    entities: int
    tables: int
    features: int
    on_demand: int = 0  # on-demand feature views


@dataclass(frozen=True, slots=True)
class OnlineFreshness:
    """What the online store says about a project's tables (or why it cannot say).

    Attributes:
        tables: per table written to, its newest event time and last write.
        problem: why nothing could be read ("" when it was read).
    """

    tables: dict[str, TableFreshness] = field(default_factory=dict)
    problem: str = ""


def _entries(snapshot: RegistrySnapshot) -> tuple[Entry, ...]:
    found: list[Entry] = []
    project = snapshot.project
    for entity in snapshot.entities.values():
        labels = " ".join(f"{k}={v}" for k, v in entity.labels.items())
        found.append(_entry("entity", project, "", entity.name, entity.description, labels, entity.value_type.value))
    for table in snapshot.feature_tables.values():
        labels = " ".join(f"{k}={v}" for k, v in table.labels.items())
        found.append(_entry("table", project, table.name, table.name, "", labels, ", ".join(table.entities)))
        for feature in table.features:
            found.append(
                _entry("feature", project, table.name, feature.name, feature.description, labels, feature.value_type)
            )
    for view in snapshot.on_demand_features.values():
        labels = " ".join(f"{k}={v}" for k, v in view.labels.items())
        found.append(_entry("on-demand", project, view.name, view.name, view.description, labels, view.mode))
        for feature in view.features:
            found.append(
                _entry("on-demand feature", project, view.name, feature.name, feature.description, labels,
                       feature.value_type)
            )  # fmt: skip
    return tuple(found)


def _entry(  # noqa: PLR0913, PLR0917 - one argument per field
    kind: str, project: str, table: str, name: str, description: str, labels: str, value_type: str
) -> Entry:
    text = f"{name} {table} {description} {labels}".lower()
    return Entry(kind, project, table, name, description, labels, str(value_type), text, name.lower(), table.lower())


def score(entry: Entry, words: list[str]) -> int:
    """Return how well ``entry`` matches every one of ``words`` (0: it does not)."""
    total = 0
    name = entry.lower_name
    for word in words:
        if word not in entry.text:
            return 0
        if name == word:
            total += 100
        elif name.startswith(word):
            total += 50
        elif word in name:
            total += 30
        elif word in entry.lower_table:
            total += 15
        else:
            total += 10
    return total + _KIND_BONUS.get(entry.kind, 0)


_KIND_BONUS = {"table": 3, "on-demand": 3, "feature": 2, "on-demand feature": 2, "entity": 1}


class UiData:
    """The registry as the UI reads it, cached per project version.

    Args:
        store: the registry.
        open_online: opens a project's online store, for freshness (None: not shown).
        online_retry_seconds: after a failed read of a project's online store, how long pages
            report that failure without asking the store again (an unreachable store would
            otherwise cost every page its connect timeout).
    """

    def __init__(
        self,
        store: RegistryStore,
        *,
        open_online: OpenOnline | None = None,
        online_retry_seconds: float = ONLINE_RETRY_SECONDS,
    ) -> None:
        self.store = store
        self.open_online = open_online
        self.online_retry_seconds = online_retry_seconds
        self._online_failed: dict[str, tuple[float, str]] = {}  # project -> (retry after, problem)
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[RegistrySnapshot, tuple[Entry, ...]]] = {}
        self._online: dict[str, OnlineStore] = {}

    def projects(self, grant: Grant) -> list[ProjectSummary]:
        """Return the projects ``grant`` may read, with their counts."""
        summaries = []
        for info in self.store.list_projects():
            if not grant.allows(info.name):
                continue
            snapshot, _ = self._load(info.name, info.version)
            features = sum(len(t.features) for t in snapshot.feature_tables.values())
            features += sum(len(v.features) for v in snapshot.on_demand_features.values())
            summaries.append(ProjectSummary(info, len(snapshot.entities), len(snapshot.feature_tables), features,
                                            len(snapshot.on_demand_features)))  # fmt: skip
        return summaries

    def snapshot(self, project: str) -> RegistrySnapshot:
        """Return the project's current snapshot (decoded once per version)."""
        return self._load(project, None)[0]

    def _load(self, project: str, version: int | None) -> tuple[RegistrySnapshot, tuple[Entry, ...]]:
        with self._lock:
            cached = self._cache.get(project)
        if cached is not None and version is not None and cached[0].version == version:
            return cached
        snapshot = self.store.read(project)
        if cached is not None and cached[0].version == snapshot.version:
            return cached
        loaded = (snapshot, _entries(snapshot))
        with self._lock:
            self._cache[project] = loaded
        return loaded

    def search(self, grant: Grant, query: str, *, project: str | None = None) -> list[Hit]:
        """Return the best :data:`MAX_RESULTS` matches of every word of ``query``, best first."""
        words = query.lower().split()
        if not words:
            return []
        hits: list[tuple[int, Entry]] = []
        for info in self.store.list_projects():
            if not grant.allows(info.name) or (project is not None and info.name != project):
                continue
            entries = self._load(info.name, info.version)[1]
            hits.extend((points, entry) for entry in entries if (points := score(entry, words)))
        best = heapq.nsmallest(MAX_RESULTS, hits, key=lambda h: (-h[0], h[1].project, h[1].table, h[1].name))
        return [Hit(entry, points) for points, entry in best]

    def jobs(self, project: str, *, table: str | None = None) -> list[JobRecord]:
        """Return the project's jobs (finished ones too), newest first."""
        jobs = self.store.list_jobs(project, table=table, include_finished=True)
        return sorted(jobs, key=lambda j: j.created_at, reverse=True)

    def job(self, job_id: str) -> JobRecord:
        """Return one job record."""
        return self.store.get_job(job_id)

    def history(self, project: str, *, limit: int = 100) -> list[RegistryChangeRecord]:
        """Return the project's audited changes, newest first."""
        return self.store.history(project, limit=limit)

    def online_freshness(self, project: str, tables: Sequence[str]) -> OnlineFreshness:
        """Return the online store's freshness of ``tables`` (never raises: a problem is reported)."""
        if self.open_online is None:
            return OnlineFreshness(problem="no online store is configured for this UI")
        with self._lock:
            failed = self._online_failed.get(project)
        if failed is not None and time.monotonic() < failed[0]:
            return OnlineFreshness(problem=failed[1])
        try:
            online = self._online_store(project)
            if online is None:  # nothing was created to find that out; asked again on the next page
                return OnlineFreshness(problem=NO_ONLINE_DATA)
            if not online.capabilities.is_shared:
                return OnlineFreshness(problem="the online store lives inside each process (not shared): "
                                       "its values cannot be seen from here")  # fmt: skip
            return OnlineFreshness(tables=online.freshness(tables))
        except ProvenderError as exc:
            log.warning("ui cannot read the online store's freshness project=%s error=%s", project, exc)
            problem = f"cannot read the online store: {exc} (tried again after {self.online_retry_seconds:g} s)"
            with self._lock:
                self._online_failed[project] = (time.monotonic() + self.online_retry_seconds, problem)
            return OnlineFreshness(problem=problem)

    def _online_store(self, project: str) -> OnlineStore | None:
        assert self.open_online is not None
        with self._lock:
            online = self._online.get(project)
            if online is None:
                online = self.open_online(project)
                if online is not None:
                    self._online[project] = online
            return online

    def close(self) -> None:
        """Close the online stores opened for freshness."""
        with self._lock:
            stores, self._online = list(self._online.values()), {}
        for online in stores:
            online.close()
