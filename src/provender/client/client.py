"""The SDK's entry point: :class:`Client` delegates to the registry, engines and stores.

The backends come from the composition root (:class:`~provender.runtime.Runtime`); the client
only delegates: registry rules live in ``registry/diff.py``, retrieval in ``offline/``, online
reads and writes in ``online/``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Self, cast, overload

from provender.client.historical import HistoricalJob, on_demand_job, to_entity_rows
from provender.client.ingest_sources import ingestion_lineage, pin_source
from provender.client.jobs import (
    CoreJobSubmitter,
    Job,
    JobReporter,
    error_text,
    new_record,
    report_stream_end,
    runner_name,
    stop_stream,
    track_run,
)
from provender.config import (
    Settings,
    StreamSection,
    load_settings,
    validate_backend_config,
    validate_settings,
)
from provender.definitions import Definition, Entity, Feature, FeatureTable, OnDemandFeatures
from provender.errors import (
    ConfigError,
    DataError,
    EntityNotFoundError,
    FeatureRefError,
    FeatureTableNotFoundError,
    OnDemandFeaturesNotFoundError,
    PermissionDeniedError,
)
from provender.ingestion import validation
from provender.ingestion.batch import (
    DEFAULT_BATCH_ROWS,
    IngestionJob,
    TileRebuild,
    counting_source_rows,
    rebuild_tiles,
    write_batches,
)
from provender.offline.drift import DriftReport, compare
from provender.offline.duckdb import StatisticsCollector
from provender.offline.engine import DistributedIngestion, OfflineEngine, StoreFactory
from provender.offline.plan import LatestPlan, TableJoin, build_retrieval_plan, table_join
from provender.offline.sql_source import check_sql_source
from provender.offline.statistics import StatisticsPlan, TableStatistics
from provender.on_demand import record_function
from provender.online.read import OnlineReader, OnlineResponse
from provender.online.store import OnlineStore
from provender.registry.diff import (
    ApplyPlan,
    MissingPolicy,
    plan_apply,
    plan_delete_entity,
    plan_delete_feature_table,
    plan_delete_on_demand_features,
)
from provender.registry.jobs import JobKind, JobStatus
from provender.registry.store import (
    ANONYMOUS,
    DEFAULT_HISTORY_LIMIT,
    ProjectInfo,
    RegistryChange,
    RegistryChangeRecord,
    RegistrySnapshot,
    RegistryStore,
)
from provender.runtime import Runtime
from provender.source_roots import SourceRoots

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import pyarrow as pa

    from provender.client.remote import RemoteReader
    from provender.ingestion.stream import StreamIngestionJob

# How long close() waits for a stopped stream job's end to be recorded.
_STREAM_REPORT_JOIN_SECONDS = 30.0


class Client:
    """Define, retrieve and serve features.

    Args:
        config: path to a ``provender.yaml`` (default: ``./provender.yaml`` if present, else
            the embedded defaults with state under ``./.provender/``).
        project: the project to work in (default: the ``project`` setting, ``"default"``).
        core_url: a registry URL overriding the ``registry`` setting (e.g. the core service).
        serving_url: read online features through this serving service.

    Examples:
        A client on a throw-away project (``Client()`` reads ``./provender.yaml``):

        >>> import tempfile
        >>> from provender import Entity, Feature, FeatureTable, FileSource, ValueType
        >>> from provender.config import validate_settings
        >>> workdir = tempfile.TemporaryDirectory()
        >>> client = Client(settings=validate_settings({"base_dir": workdir.name, "online": {"store": "memory"}}))
        >>> driver = Entity(name="driver_id", value_type=ValueType.INT64)
        >>> driver_statistics = FeatureTable(
        ...     name="driver_statistics",
        ...     entities=["driver_id"],
        ...     features=[Feature("conv_rate", ValueType.FLOAT)],
        ...     batch_source=FileSource(path="data/driver_statistics", event_timestamp_column="event_timestamp"),
        ... )
        >>> [(item.name, item.action.value) for item in client.apply([driver, driver_statistics]).items]
        [('driver_id', 'added'), ('driver_statistics', 'added')]
        >>> response = client.get_online_features(["driver_statistics"], [{"driver_id": 1001}])
        >>> response.to_dict()
        {'driver_id': [1001], 'driver_statistics__conv_rate': [None]}
        >>> response.statuses() == {"driver_statistics__conv_rate": ["NOT_FOUND"]}
        True
        >>> client.close()
        >>> workdir.cleanup()
    """

    def __init__(
        self,
        config: str | Path | None = None,
        project: str | None = None,
        *,
        core_url: str | None = None,
        serving_url: str | None = None,
        settings: Settings | None = None,
    ) -> None:
        if settings is None:
            overrides = {"project": project, "registry": core_url, "serving_url": serving_url}
            settings = load_settings(config, overrides=overrides)
        elif project is not None:
            settings = validate_settings({**dict(settings), "project": project})  # checks the name
        self.settings = settings
        # Validates every section at start-up, naming the key, rather than at the first retrieval or read.
        self._runtime = Runtime(settings)
        self._roots = SourceRoots.of(settings)
        self._registry: RegistryStore = self._runtime.open_registry()
        # Who the registry's history records changes as (the core service records the token subject).
        self.actor = ANONYMOUS
        self._offline: OfflineEngine | None = None
        self._online: OnlineStore | None = None
        self._online_reader: OnlineReader | None = None
        self._remote: RemoteReader | None = None
        # Stream jobs started here, each with the thread that records its end in the registry.
        self._stream_reports: list[tuple[StreamIngestionJob, threading.Thread]] = []
        self.runner = runner_name()
        """Where this client's jobs are recorded as running (``<host>:<pid>``)."""

    @property
    def project(self) -> str:
        """The project this client works in."""
        return self.settings.project

    def close(self) -> None:
        """Release connections held by the client's components.

        Stream jobs this client started are stopped first (they write through its store), and
        their ends are recorded before the registry closes.
        """
        for job, reporting in self._stream_reports:
            stop_stream(job)
            reporting.join(timeout=_STREAM_REPORT_JOIN_SECONDS)
        self._stream_reports.clear()
        self._registry.close()
        if self._offline is not None:
            self._offline.close()
        if self._online is not None:
            self._online.close()
            self._online, self._online_reader = None, None
        if self._remote is not None:
            self._remote.close()
            self._remote = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- registry ------------------------------------------------------------------------------

    def plan(self, definitions: Sequence[Definition] | Definition, *, missing: MissingPolicy = "ignore") -> ApplyPlan:
        """Return what :meth:`apply` would do (added, changed, unchanged, refused, ...), changing nothing.

        ``missing="report"`` adds a ``not defined`` item for each registered object that is not
        among ``definitions``; ``"prune"`` plans to delete them.

        Raises:
            SourcePathNotAllowedError: a batch source lies outside ``sources.allowed_roots``.
        """
        items = _as_tuple(definitions)
        self._roots.check_definitions(items)
        snapshot = self._registry.read(self.project)
        return plan_apply(snapshot, self._checked(snapshot, items), missing=missing)

    def apply(
        self,
        definitions: Sequence[Definition] | Definition,
        *,
        missing: MissingPolicy = "ignore",
        expected_version: int | None = None,
    ) -> ApplyPlan:
        """Create or update entities and feature tables, all or none; idempotent.

        Args:
            definitions: the entities and feature tables to register.
            missing: what to do with the registered entities and feature tables that are not
                among ``definitions``: keep them (``"ignore"``), keep them and list them in the plan
                (``"report"``), or delete them (``"prune"``; the deleted tables' online rows too).
            expected_version: apply only if the project is still at this registry version (the
                one a plan was made against).

        Returns:
            The plan that was applied.

        Raises:
            RegistryConflictError: the apply would break a reference; nothing was changed.
            RegistryVersionConflictError: the project is no longer at ``expected_version``.
            ProjectArchivedError: the project is archived.
            SourcePathNotAllowedError: a batch source lies outside ``sources.allowed_roots``.
        """
        items = _as_tuple(definitions)
        self._roots.check_definitions(items)
        items = self._checked(self._registry.read(self.project), items)
        if missing == "prune":  # online rows first: a failure below leaves the tables registered (re-ingest them)
            planned = self.plan(items, missing="prune")
            for name in () if planned.is_refused else planned.deleted("feature table"):
                self._online_store.delete_table(self.get_feature_table(name))
        applied: list[ApplyPlan] = []

        def decide(snapshot: RegistrySnapshot) -> RegistryChange:
            applied.append(plan_apply(snapshot, items, missing=missing))
            return applied[-1].to_change()

        self._registry.update(self.project, decide, actor=self.actor, expected_version=expected_version)
        self._registry_changed()
        return applied[-1]

    def _checked(self, snapshot: RegistrySnapshot, items: tuple[Definition, ...]) -> tuple[Definition, ...]:
        """``items``, after checking that the SQL sources among them run and give their tables' columns."""
        entities = {**snapshot.entities, **{d.name: d for d in items if isinstance(d, Entity)}}
        for table in items:
            if isinstance(table, FeatureTable):
                check_sql_source(table, entities, base_dir=self.settings.base_dir, storage=self.settings.storage)
        return items

    def get_entity(self, name: str) -> Entity:
        """Return the entity called ``name``; raise EntityNotFoundError if there is none."""
        snapshot = self._registry.read(self.project)
        entity = snapshot.entities.get(name)
        if entity is None:
            raise EntityNotFoundError(name, project=self.project, known=list(snapshot.entities))
        return entity

    def get_feature_table(self, name: str) -> FeatureTable:
        """Return the feature table called ``name``; raise FeatureTableNotFoundError if there is none."""
        snapshot = self._registry.read(self.project)
        table = snapshot.feature_tables.get(name)
        if table is None:
            raise FeatureTableNotFoundError(name, project=self.project, known=list(snapshot.feature_tables))
        return table

    def list_entities(self) -> list[Entity]:
        """Return the project's entities, sorted by name."""
        return sorted(self._registry.read(self.project).entities.values(), key=lambda e: e.name)

    def list_feature_tables(self) -> list[FeatureTable]:
        """Return the project's feature tables, sorted by name."""
        return sorted(self._registry.read(self.project).feature_tables.values(), key=lambda t: t.name)

    def get_on_demand_features(self, name: str) -> OnDemandFeatures:
        """Return the on-demand features called ``name``; raise OnDemandFeaturesNotFoundError if none."""
        snapshot = self._registry.read(self.project)
        found = snapshot.on_demand_features.get(name)
        if found is None:
            raise OnDemandFeaturesNotFoundError(name, project=self.project, known=list(snapshot.on_demand_features))
        return found

    def list_on_demand_features(self) -> list[OnDemandFeatures]:
        """Return the project's on-demand features, sorted by name."""
        return sorted(self._registry.read(self.project).on_demand_features.values(), key=lambda o: o.name)

    def delete_on_demand_features(self, name: str) -> None:
        """Delete on-demand features (nothing is stored online for them)."""
        self._registry.update(
            self.project, lambda snapshot: plan_delete_on_demand_features(snapshot, name), actor=self.actor
        )
        self._registry_changed()

    def list_projects(self) -> list[str]:
        """Return the names of all projects but archived ones (``default`` always among them)."""
        return [p.name for p in self._registry.list_projects()]

    def describe_projects(self, *, include_archived: bool = False) -> list[ProjectInfo]:
        """Return every project with its registry version, last change and archiving time."""
        return self._registry.list_projects(include_archived=include_archived)

    def archive_project(self, name: str) -> ProjectInfo:
        """Archive project ``name``: hidden from listings, read-only, its definitions kept.

        Raises:
            ProjectNotFoundError: no such project.
            ProjectArchivedError: it is archived already.
        """
        return self._registry.archive_project(name, actor=self.actor)

    def registry_history(
        self, limit: int = DEFAULT_HISTORY_LIMIT, *, all_projects: bool = False
    ) -> list[RegistryChangeRecord]:
        """Return the latest registry changes of this project (or of all), newest first.

        Each record says who made the change, when, the version before and after, and what it
        added, changed or deleted.
        """
        return self._registry.history(None if all_projects else self.project, limit=limit)

    def registry_version(self) -> int:
        """Return the project's registry version (bumped by every change)."""
        return self._registry.read(self.project).version

    def delete_feature_table(self, name: str) -> int:
        """Delete a feature table and its online rows; return how many online rows were deleted.

        The online rows go first: if the registry then fails, the table stays registered (and
        can be re-ingested or deleted again).

        Raises:
            FeatureTableNotFoundError: there is no such table.
        """
        plan_delete_feature_table(self._registry.read(self.project), name)  # refused before rows are deleted
        deleted = self._online_store.delete_table(self.get_feature_table(name))
        self._registry.update(
            self.project, lambda snapshot: plan_delete_feature_table(snapshot, name), actor=self.actor
        )
        self._registry_changed()
        return deleted

    def delete_entity(self, name: str) -> None:
        """Delete an entity; refused (RegistryConflictError) while a feature table uses it."""
        self._registry.update(self.project, lambda snapshot: plan_delete_entity(snapshot, name), actor=self.actor)
        self._registry_changed()

    # -- offline: historical retrieval -------------------------------------------------------------

    def get_historical_features(self, feature_refs: Sequence[str], entity_source: object) -> HistoricalJob:
        """Join entity rows with feature values as they were at each row's ``event_timestamp``.

        Point-in-time correct (DESIGN.md): no value newer than its row's time, none older than
        the table's ``max_age``; every entity row kept, in order, with its extra columns.

        Args:
            feature_refs: ``"<table>:<feature>"`` refs, or ``"<table>"`` for all its features.
            entity_source: a pandas DataFrame, a pyarrow Table, or a Parquet path (file,
                directory or glob) with the entity columns and ``event_timestamp``.

        Returns:
            A job: ``to_pandas()``, ``to_arrow()``, ``to_parquet(path)``. Columns are the entity
            source's, then ``<table>__<feature>`` in ref order.

        Raises:
            FeatureRefError, FeatureTableNotFoundError: a bad ref.
            DataError: a missing or mistyped column, an unreadable source (before heavy work).
            SourcePathNotAllowedError: a source or the entity rows' path is outside ``sources.allowed_roots``.
        """
        if isinstance(entity_source, str | Path):
            self._roots.check(entity_source, what="entity rows", walk=True, relative_to=Path.cwd())
        rows = to_entity_rows(entity_source, storage=self.settings.storage)
        snapshot = self._registry.read(self.project)
        plan = build_retrieval_plan(
            feature_refs,
            entity_schema=rows.schema,
            tables=snapshot.feature_tables,
            entities=snapshot.entities,
            project=self.project,
            on_demand_features=snapshot.on_demand_features,
        )
        for join in plan.joins:
            self._check_source(join.table)
        job = on_demand_job(self._offline_engine().retrieve(plan, rows), plan, rows.schema)
        tables = sorted({ref.split(":", 1)[0] for ref in feature_refs})
        return HistoricalJob(
            job,
            output_columns=plan.output_columns if plan.request is None else plan.request.columns,
            track=lambda: self._track_run(JobKind.HISTORICAL, tables[0] if len(tables) == 1 else ""),
            check_output=lambda path: self._roots.check(path, what="to_parquet output", relative_to=Path.cwd()),
            storage=self.settings.storage,
            expectations=[
                (join.table, join.join_keys, {f.name: join.output_column(f) for f in join.features})
                for join in plan.joins
            ],
        )

    def get_statistics(
        self,
        table: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        features: Sequence[str] | None = None,
        from_job: str | None = None,
    ) -> TableStatistics:
        """Compute, with the offline engine, the statistics of ``table``'s rows in ``[start, end)``.

        Every source row with ``start <= event_timestamp < end`` is described (not only the latest
        per key); :mod:`provender.offline.statistics` lists the statistics and their precision.

        Args:
            table: the feature table's name.
            start: window start, inclusive; naive times are UTC.
            end: window end, exclusive; naive times are UTC.
            features: the features to describe (default: all of the table's).
            from_job: instead of computing, read back the statistics an ingestion job of
                ``table`` recorded of the rows it wrote (``start`` and ``end`` are then not given).

        Raises:
            FeatureTableNotFoundError: an unknown table.
            FeatureRefError: an unknown feature.
            DataError: an empty window, an unreadable source.
        """
        if from_job is not None:
            return self._recorded_statistics(table, from_job, features, given=(start, end))
        if start is None or end is None:
            raise DataError("get_statistics needs start and end (or from_job=<an ingestion job's id>).")
        start_at, end_at = as_utc(start, "start"), as_utc(end, "end")
        if start_at >= end_at:
            raise DataError(f"start ({start_at.isoformat()}) must be before end ({end_at.isoformat()}).")
        snapshot = self._registry.read(self.project)
        definition = snapshot.feature_tables.get(table)
        if definition is None:
            raise FeatureTableNotFoundError(table, project=self.project, known=list(snapshot.feature_tables))
        by_name = {f.name: f for f in definition.features}
        for name in features or ():
            if name not in by_name:
                raise FeatureRefError(
                    f"{table}:{name}", f"feature table {table!r} has no feature {name!r}; known: {sorted(by_name)}"
                )
        chosen = definition.features if features is None else tuple(by_name[n] for n in features)
        join = self._checked_join(definition, chosen, snapshot)
        return self._offline_engine().compute_statistics(StatisticsPlan(join=join, start=start_at, end=end_at))

    def compare_statistics(
        self,
        baseline: TableStatistics,
        current: TableStatistics,
        *,
        psi_threshold: float = 0.2,
        js_threshold: float = 0.1,
    ) -> DriftReport:
        """Compare two statistics of a table per feature: PSI and Jensen-Shannon distance.

        Numbers by histogram on shared bin edges, strings by top values
        (:mod:`provender.offline.drift`); a feature whose PSI reaches ``psi_threshold`` or whose
        JS distance reaches ``js_threshold`` is marked drifted (``report.drifted``).
        """
        return compare(baseline, current, psi_threshold=psi_threshold, js_threshold=js_threshold)

    def _recorded_statistics(
        self, table: str, job_id: str, features: Sequence[str] | None, *, given: tuple[object, ...]
    ) -> TableStatistics:
        if any(v is not None for v in given):
            raise DataError("give either from_job or start and end, not both.")
        record = self._registry.get_job(job_id)
        if record.table != table:
            raise DataError(f"job {job_id} ingested feature table {record.table!r}, not {table!r}.")
        if record.statistics is None:
            raise DataError(
                f"job {job_id} ({record.status.value}) recorded no statistics: only a succeeded "
                "offline-to-online job records them."
            )
        stats = TableStatistics.from_dict(record.statistics)
        if features is None:
            return stats
        known = [f.name for f in stats.features]
        for name in features:
            if name not in known:
                raise FeatureRefError(f"{table}:{name}", f"job {job_id}'s statistics have no feature {name!r}")
        return replace(stats, features=tuple(stats[name] for name in features))

    def _track_run(
        self,
        kind: JobKind,
        table: str,
        *,
        progress: Callable[[], int] = lambda: 0,
        on_cancel: Callable[[], None] = lambda: None,
    ) -> JobReporter | None:
        """Record a job running now in this process (None, with a warning, if the registry refuses it)."""
        record = new_record(kind=kind, project=self.project, table=table, runner=self.runner)
        heartbeat = self.settings.jobs.heartbeat_seconds
        return track_run(self._registry, record, heartbeat_seconds=heartbeat, progress=progress, on_cancel=on_cancel)

    def _check_source(self, table: FeatureTable) -> None:
        """Check the table's batch source, and what it leads to on disk, against ``sources.allowed_roots``."""
        self._roots.check_source(table.batch_source, what=f"batch source of feature table {table.name!r}", walk=True)

    def _checked_join(self, table: FeatureTable, features: Sequence[Feature], snapshot: RegistrySnapshot) -> TableJoin:
        """:func:`table_join` of a table whose source was checked first (``_check_source``)."""
        self._check_source(table)
        return table_join(table, features, snapshot.entities)

    def _offline_engine(self) -> OfflineEngine:
        if self._offline is None:
            self._offline = self._runtime.open_offline_engine()
        return self._offline

    # -- ingestion ---------------------------------------------------------------------------------

    @overload
    def start_offline_to_online_ingestion(
        self,
        table: FeatureTable | str,
        *,
        start: datetime,
        end: datetime,
        batch_rows: int = ...,
        run_on: Literal["local"] = ...,
        validation_policy: str | None = ...,
        incremental: bool = ...,
    ) -> IngestionJob: ...

    @overload
    def start_offline_to_online_ingestion(
        self,
        table: FeatureTable | str,
        *,
        start: datetime,
        end: datetime,
        batch_rows: int = ...,
        run_on: Literal["core"],
        validation_policy: str | None = ...,
        incremental: bool = ...,
    ) -> Job: ...

    def start_offline_to_online_ingestion(  # noqa: PLR0913 - keyword-only options of one job
        self,
        table: FeatureTable | str,
        *,
        start: datetime,
        end: datetime,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        run_on: Literal["local", "core"] = "local",
        validation_policy: str | None = None,
        incremental: bool = False,
    ) -> IngestionJob | Job:
        """Start writing, per entity key, the latest row with ``start <= event_timestamp < end``.

        The rows are those the point-in-time rule picks at ``end`` (the same rule and code as
        :meth:`get_historical_features`). Stored values with a newer (event, created) time are
        never replaced, so jobs may be re-run, overlap, and race stream ingestion.

        Args:
            table: the feature table (its registered definition is used) or its name.
            start: window start, inclusive; naive times are UTC.
            end: window end, exclusive; naive times are UTC.
            batch_rows: rows per batch streamed from the engine to the store (bounds memory).
            run_on: ``"local"`` runs the job in this process; ``"core"`` runs it inside the core
                service (``registry: http://...``), with the service's stores and credentials,
                and it goes on if this process ends.
            validation_policy: ``"fail"``, ``"skip"`` or ``"warn"``, overriding the table's
                (:mod:`provender.ingestion.validation`); ``job.validation`` holds the report.
            incremental: for a Delta source, read only what was committed since the last
                succeeded ingestion of the table (:mod:`provender.client.ingest_sources`); the
                first one reads the whole window. The version read is in the job's lineage.

        Returns:
            A running job, recorded in the registry (``list_jobs``, ``get_job``): ``id``,
            ``wait()`` (raises the job's error), ``status``, ``rows_written``, ``error``,
            ``cancel()``.

        Raises:
            ConfigError: ``run_on="core"`` without a core service registry.
        """
        start_at, end_at = as_utc(start, "start"), as_utc(end, "end")
        if start_at >= end_at:
            raise DataError(f"start ({start_at.isoformat()}) must be before end ({end_at.isoformat()}).")
        name = table if isinstance(table, str) else table.name
        if run_on == "core":
            _refuse_on_core(incremental=incremental)
            return self._submit_to_core(
                name, start=start_at, end=end_at, batch_rows=batch_rows, validation_policy=validation_policy
            )
        if run_on != "local":
            raise ConfigError("run_on", f"{run_on!r} is not a place to run jobs; use 'local' or 'core'")
        snapshot = self._registry.read(self.project)
        definition = snapshot.feature_tables.get(name)
        if definition is None:
            raise FeatureTableNotFoundError(name, project=self.project, known=list(snapshot.feature_tables))
        join = pin_source(
            self._checked_join(definition, definition.features, snapshot),
            incremental=incremental,
            registry=self._registry,
            project=self.project,
            base_dir=self.settings.base_dir,
            storage=self.settings.storage,
        )
        plan = LatestPlan(join=join, start=start_at, end=end_at)
        policy = validation.validation_policy(definition, validation_policy)
        validated = validation.has_expectations(definition)
        engine = self._offline_engine()
        record = self._registry.put_job(
            new_record(kind=JobKind.OFFLINE_TO_ONLINE, project=self.project, table=name, runner=self.runner)
        )
        job = IngestionJob(
            table=name,
            description=f"ingestion of {name} [{start_at:%Y-%m-%d %H:%M}, {end_at:%Y-%m-%d %H:%M})",
            job_id=record.id,
        )
        reporter = JobReporter(
            self._registry,
            record,
            heartbeat_seconds=self.settings.jobs.heartbeat_seconds,
            progress=lambda: job.rows_written,
            on_cancel=job.cancel,
        )
        hooks = {
            "on_start": lambda _: reporter.started(),
            "on_finish": lambda j: reporter.finished(
                JobStatus(j.status.value),
                error=error_text(j.error),
                validation=None if j.validation is None else j.validation.to_dict(),
                statistics=None if j.statistics is None else j.statistics.to_dict(),
                lineage=ingestion_lineage(plan) if plan.inputs else None,
            ),
        }
        if engine.capabilities.is_distributed and not validated:  # validated rows pass through this process
            factory = self._runtime.online_store_factory(self.project)
            return job.start(
                _on_workers(
                    cast("DistributedIngestion", engine),
                    plan,
                    factory,
                    TileRebuild.of(definition, plan.end, self.settings.stream, batch_rows, store_factory=factory),
                ),
                **hooks,
            )
        store = self._online_store

        counted = replace(plan, count_source_rows=True)

        collector = StatisticsCollector(StatisticsPlan(join=join, start=start_at, end=end_at), engine=engine)

        def write(rows: pa.Table) -> int:
            collector.add(rows)
            return store.write(definition, rows)

        def run(j: IngestionJob) -> None:
            try:
                if not validated:
                    reader = counting_source_rows(engine.read_latest(counted, batch_rows=batch_rows), j)
                    write_batches(reader, write, j)
                else:
                    _validated(j)
                if definition.aggregations and definition.stream_source is not None:
                    rebuild_tiles(engine, plan, store, definition, self.settings.stream, batch_rows=batch_rows)
                j.statistics = collector.finish(job_id=j.id)
            finally:
                collector.close()

        def _validated(j: IngestionJob) -> None:
            try:
                j.validation = validation.ingest_validated(
                    definition,
                    policy=policy,
                    read=lambda: counting_source_rows(engine.read_latest(plan, batch_rows=batch_rows), j),
                    write=write,
                    job=j,
                )
            except validation.ExpectationError as exc:
                j.validation = exc.report
                raise
            if not j.validation.passed:
                log.warning("%s", j.validation)

        return job.start(run, **hooks)

    def _submit_to_core(
        self, table: str, *, start: datetime, end: datetime, batch_rows: int, validation_policy: str | None
    ) -> Job:
        if not isinstance(self._registry, CoreJobSubmitter):
            raise ConfigError(
                "run_on",
                "'core' needs the core service as the registry (registry: http://core:6565), "
                f"not {self.settings.registry!r}",
            )
        record = self._registry.submit_ingestion(
            self.project, table, start=start, end=end, batch_rows=batch_rows, validation_policy=validation_policy
        )
        return Job(self._registry, record, fail_stale=self._fail_stale_jobs)

    # -- jobs --------------------------------------------------------------------------------------

    @property
    def _stale_after(self) -> timedelta:
        return timedelta(seconds=self.settings.jobs.stale_after_seconds)

    def _fail_stale_jobs(self) -> None:
        """Fail the jobs whose runner died (the core service does it too; a token may lack the right)."""
        with contextlib.suppress(PermissionDeniedError):
            self._registry.fail_stale_jobs(self._stale_after)

    def list_jobs(self, table: str | None = None, *, include_finished: bool = False) -> list[Job]:
        """Return the project's jobs, newest first: unfinished ones only unless ``include_finished``.

        Args:
            table: only the jobs of this feature table.
            include_finished: also the SUCCEEDED, FAILED and CANCELLED ones.
        """
        self._fail_stale_jobs()
        records = self._registry.list_jobs(self.project, table=table, include_finished=include_finished)
        return [Job(self._registry, record, fail_stale=self._fail_stale_jobs) for record in records]

    def get_job(self, job_id: str) -> Job:
        """Return the job ``job_id`` (from any process); raise JobNotFoundError if there is none."""
        self._fail_stale_jobs()
        return Job(self._registry, self._registry.get_job(job_id), fail_stale=self._fail_stale_jobs)

    def start_stream_to_online_ingestion(
        self,
        table: FeatureTable | str,
        *,
        group_id: str | None = None,
        instance_id: str | None = None,
        offline_log: str | Path | None = None,
        batch_rows: int | None = None,
        linger_ms: int | None = None,
    ) -> StreamIngestionJob:
        """Start consuming the table's ``stream_source`` into the online store, in the background.

        Records are validated against the table's types, written in micro-batches under the
        event-time guard (so stream and batch ingestion converge to the newest values), and
        their offsets committed after the write: at-least-once, and replays are harmless. Bad
        records go to ``<topic>.dlq`` with the reason in their headers. Settings not given here
        come from the ``stream:`` section of the configuration.

        Args:
            table: the feature table (its registered definition is used) or its name.
            group_id: the Kafka consumer group (default ``provender-<project>-<table>``); jobs
                and processes with the same group share the topic's partitions.
            instance_id: a static group member id, stable across restarts of this consumer
                (e.g. a pod name): a restart then takes its partitions back at once.
            offline_log: also append the records to date-partitioned Parquet files under this
                path (relative to the config file), for historical retrieval.
            batch_rows: the most records in one micro-batch.
            linger_ms: how long a micro-batch waits for more records after its first.

        Returns:
            The running job: ``stop()``, ``status``, ``records_consumed``, ``records_written``,
            ``records_dead_lettered``, ``batches``, ``lag``, ``freshness_seconds()``.

        Raises:
            FeatureTableNotFoundError: no such table.
            DefinitionError: the table has no stream source.
            DataError: its Avro schema lacks a field of the table, or the type does not fit.
            MissingExtraError: the ``kafka`` extra is not installed.
        """
        from provender.ingestion.stream import StreamJobSpec, start_stream_job

        snapshot = self._registry.read(self.project)
        name = table if isinstance(table, str) else table.name
        definition = snapshot.feature_tables.get(name)
        if definition is None:
            raise FeatureTableNotFoundError(name, project=self.project, known=list(snapshot.feature_tables))
        if offline_log is not None:
            self._roots.check(offline_log, what=f"offline log of stream job of {name!r}")
        overrides = {k: v for k, v in {"batch_rows": batch_rows, "linger_ms": linger_ms}.items() if v is not None}
        values = {**self.settings.stream.model_dump(), **overrides}
        options = cast("StreamSection", validate_backend_config(StreamSection, "stream", values))
        spec = StreamJobSpec(
            table=definition,
            entity_types={entity.name: entity.value_type for entity in snapshot.entities.values()},
            group_id=group_id or f"provender-{self.project}-{name}",
            instance_id=instance_id,
            offline_log=None if offline_log is None else self.settings.resolve_path(offline_log),
            options=options,
        )
        store = self._online_store
        job = start_stream_job(spec, lambda rows: store.write(definition, rows), tiles=store)
        reporter = self._track_run(
            JobKind.STREAM_TO_ONLINE, name, progress=lambda: job.records_written, on_cancel=lambda: stop_stream(job)
        )
        if reporter is not None:
            reporting = threading.Thread(
                target=report_stream_end,
                args=(job, reporter),
                name=f"provender-report-{reporter.record.id}",
                daemon=True,
            )
            reporting.start()
            self._stream_reports.append((job, reporting))
        return job

    # -- online: serving -----------------------------------------------------------------------

    def get_online_features(
        self, feature_refs: Sequence[str], entity_rows: Sequence[Mapping[str, object]]
    ) -> OnlineResponse:
        """Return the latest stored values of ``feature_refs`` for each entity row.

        One call reads every table for every row in one round trip to the online store.

        Args:
            feature_refs: ``"<table>:<feature>"`` refs, or ``"<table>"`` for all its features.
            entity_rows: one mapping per row with every entity the tables are keyed by, e.g.
                ``[{"driver_id": 1001}, {"driver_id": 1002}]``; other keys pass through.

        Returns:
            ``to_dict()`` gives the entity columns (the rows' keys, in order), then
            ``<table>__<feature>`` in ref order; ``statuses()`` gives PRESENT, NOT_FOUND,
            OUTSIDE_MAX_AGE (older than now - ``max_age``; the value is null), NULL_VALUE or
            CORRUPT (the stored bytes cannot be decoded; the value is null).

        Raises:
            FeatureRefError, FeatureTableNotFoundError: a bad ref (with a "did you mean").
            DataError: a missing entity column or a key of the wrong type, naming row and column.
            BackendError: the online store failed (``retryable`` for connection errors).

        With ``serving_url`` set, the read goes through the serving service (HTTP, or gRPC for
        ``grpc://`` URLs) and returns the same values and raises the same errors.
        """
        if self.settings.serving_url is not None:
            return self._remote_reader().read(feature_refs, entity_rows)
        reader = self._online_reader
        if reader is None:
            reader = self._online_reader = OnlineReader(
                self._online_store, load_catalog=lambda: self._registry.read(self.project)
            )
        return reader.read(feature_refs, entity_rows)

    def _remote_reader(self) -> RemoteReader:
        """The serving-service reader of ``settings.serving_url``, connected on first use."""
        if self._remote is None:
            from provender.client import remote

            token = self.settings.serving_token
            url = self.settings.serving_url
            assert url is not None
            self._remote = remote.connect(
                url, project=self.project, token=None if token is None else token.get_secret_value()
            )
        return self._remote

    @property
    def _online_store(self) -> OnlineStore:
        """The online store of ``settings.online``, opened for this project on first use."""
        if self._online is None:
            self._online = self._runtime.open_online_store(self.project)
        return self._online

    def _registry_changed(self) -> None:
        if self._online_reader is not None:
            self._online_reader.invalidate()


def as_utc(at: datetime, name: str) -> datetime:
    """Return ``at`` as an aware UTC datetime (naive times are UTC)."""
    if not isinstance(at, datetime):
        raise DataError(f"{name} must be a datetime, got {type(at).__name__}")
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _as_tuple(definitions: Sequence[Definition] | Definition) -> tuple[Definition, ...]:
    """The definitions as a tuple, on-demand features with their function's version recorded (imported)."""
    items = (definitions,) if isinstance(definitions, Entity | FeatureTable | OnDemandFeatures) else tuple(definitions)
    return tuple(record_function(d) if isinstance(d, OnDemandFeatures) else d for d in items)


def _on_workers(
    engine: DistributedIngestion, plan: LatestPlan, factory: StoreFactory, events: TileRebuild | None
) -> Callable[[IngestionJob], None]:
    """The run of a job whose rows the engine's workers write (and tiles rebuild); the engine describes the rows."""

    def run(job: IngestionJob) -> None:
        stats = engine.ingest_to_online(plan, store_factory=factory, progress=job, events=events)
        note = "statistics of the rows the job wrote (latest per key), computed by the engine's workers"
        job.statistics = replace(stats, job_id=job.id, notes=(note,))

    return run


def _refuse_on_core(*, incremental: bool) -> None:
    """Refuse the ingestion options a job run by the core service cannot take yet."""
    if incremental:
        raise ConfigError("incremental", "is not available for run_on='core' yet; run the job locally")
