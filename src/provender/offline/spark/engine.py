"""The distributed offline engine: Apache Spark (``offline: {engine: spark, master: ...}``).

Compiles :mod:`provender.offline.plan` to DataFrame jobs (:mod:`.compile`); where the work runs
changes, never the answer. A retrieval's result is written as Parquet under ``staging_path``
and read back by its job handle (:mod:`.retrieval`). Ingestion either streams the latest rows
through the driver (:meth:`SparkEngine.read_latest`) or has the executors write them to the
online store (:meth:`SparkEngine.ingest_to_online`, :mod:`.executors`), the driver never
holding the rows; the events that rebuild a table's tiles take the same two ways
(:meth:`SparkEngine.read_events`, or the executors).
"""

from __future__ import annotations

import logging
import sys
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import ClassVar, Self

import pyarrow as pa
from py4j.protocol import Py4JError  # type: ignore[import-untyped]
from pydantic import BaseModel
from pyspark import InheritableThread, SparkContext
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from provender.config import StorageSection, validate_backend_config
from provender.errors import BackendError, ConfigError, JobCancelledError, ProvenderError
from provender.offline.engine import EngineCapabilities, EntityRows, EventSink, IngestionProgress, StoreFactory
from provender.offline.files import DateRange, lower_event_bound
from provender.offline.lineage import SourceInput
from provender.offline.objectstore import is_object_store_url, read_rows
from provender.offline.plan import LatestPlan, RetrievalPlan, refuse_aggregations
from provender.offline.spark.compile import compile_events, compile_latest, compile_latest_windows, compile_retrieval
from provender.offline.spark.executors import PartitionEvents, PartitionWriter
from provender.offline.spark.failures import run_in_group
from provender.offline.spark.retrieval import SparkRetrievalJob
from provender.offline.spark.schemas import events_schema, latest_schema, result_schema
from provender.offline.spark.session import SparkConfig, session_conf
from provender.offline.spark.sources import SourceContext, entity_frame, source_frame
from provender.offline.spark.staging import Staging
from provender.offline.spark.statistics import frame_statistics, spark_statistics
from provender.offline.statistics import StatisticsPlan, TableStatistics

log = logging.getLogger(__name__)


class SparkEngine:
    """Point-in-time retrieval and ingestion as Spark jobs; see the module docstring.

    Spark allows one session per process: the engine joins a running one, else starts it with
    :func:`session_conf`. A session the engines started stops when the last of them closes; one
    started by someone else is left running.
    """

    _lock: ClassVar[threading.Lock] = threading.Lock()
    _open: ClassVar[int] = 0  # engines open in this process
    _started: ClassVar[bool] = False  # whether an engine started the running session

    capabilities: ClassVar[EngineCapabilities] = EngineCapabilities(is_distributed=True)
    config_model: ClassVar[type[BaseModel]] = SparkConfig

    def __init__(self, config: SparkConfig, *, base_dir: Path, storage: StorageSection | None = None) -> None:
        self.config = config
        self.base_dir = base_dir
        self.storage = storage
        self.staging = Staging(config.staging_path, base_dir=base_dir)
        conf = session_conf(config)
        builder = SparkSession.builder.master(config.master).appName(config.app_name)
        for key, value in conf.items():
            builder = builder.config(key, value)
        with SparkEngine._lock:
            starting = SparkContext._active_spark_context is None
            try:
                self.session = builder.getOrCreate()
            except (PySparkException, Py4JError, OSError) as exc:
                raise BackendError(f"cannot start Spark (master {config.master!r}): {exc}") from exc
            SparkEngine._started = SparkEngine._started or starting
            SparkEngine._open += 1
        self._closed = False
        context = self.session.sparkContext
        if not starting and context.master != config.master:
            log.warning("spark session reused master=%s configured=%s", context.master, config.master)
        # Python workers (ingestion) run this interpreter unless configured: PySpark's default,
        # a bare "python3" on PATH, rarely has pyarrow and Provender.
        if "spark.pyspark.python" in conf:
            context.pythonExec = conf["spark.pyspark.python"]
        elif context.pythonExec == "python3":
            context.pythonExec = sys.executable
        self._jobs: weakref.WeakSet[SparkRetrievalJob] = weakref.WeakSet()
        log.info("spark session master=%s app=%s", context.master, context.applicationId)

    @classmethod
    def from_options(
        cls, options: Mapping[str, object], *, base_dir: Path, storage: StorageSection | None = None
    ) -> Self:
        """Build the engine (starting or joining the process's Spark session) from ``offline:``.

        ``storage`` (the object stores' settings) reaches ``s3://`` and ``gs://`` sources, which the driver
        stages through pyarrow (:func:`provender.offline.spark.sources.source_frame`).
        """
        config = validate_backend_config(SparkConfig, "offline", options)
        assert isinstance(config, SparkConfig)
        return cls(config, base_dir=base_dir, storage=storage)

    def _context(self, stage_dir: str, inputs: list[SourceInput] | None = None) -> SourceContext:
        return SourceContext(
            base_dir=self.base_dir,
            storage=self.storage,
            staging=self.staging,
            stage_dir=stage_dir,
            inputs=[] if inputs is None else inputs,
        )

    @property
    def application_id(self) -> str:
        """The Spark application id (as the cluster's master shows it)."""
        return str(self.session.sparkContext.applicationId)

    def close(self) -> None:
        """Delete this engine's staged results; the last engine open stops the session engines started."""
        for job in list(self._jobs):
            job.close()
        with SparkEngine._lock:
            if self._closed:
                return
            self._closed = True
            SparkEngine._open -= 1
            if SparkEngine._open == 0 and SparkEngine._started:
                SparkEngine._started = False
                self.session.stop()

    # -- retrieval -----------------------------------------------------------------------------

    def retrieve(self, plan: RetrievalPlan, entity_rows: EntityRows) -> SparkRetrievalJob:
        """Check the sources, stage the entity rows and start the Spark job computing ``plan``."""
        if entity_rows.paths and is_object_store_url(entity_rows.paths[0]):
            # Read by the driver, as DuckDB does (Spark has no S3A/GCS connector here), then staged.
            table = read_rows(self.storage, list(entity_rows.paths))
            entity_rows = EntityRows(schema=table.schema, table=table)
        job_dir = self.staging.new_dir("retrieval")
        context = self._context(job_dir)
        try:
            entities, (earliest, latest) = entity_frame(
                self.session, plan, entity_rows, staging=self.staging, job_dir=job_dir
            )
            sources = [
                source_frame(
                    self.session,
                    join,
                    DateRange.for_window(earliest, latest, join.lookback),
                    context=context,
                    lower=lower_event_bound(earliest, join.lookback),
                    upper=latest,
                )
                for join in plan.joins
            ]
        except BaseException:
            self.staging.remove(job_dir)
            raise
        staged = entity_rows.table is not None
        result = compile_retrieval(plan, entities, sources, passthrough=not staged)
        job = SparkRetrievalJob(
            self.session,
            result,
            staging=self.staging,
            job_dir=job_dir,
            schema=result_schema(plan, entity_rows),
            entity_table=entity_rows.table,
        )
        job.inputs = tuple(context.inputs)
        self._jobs.add(job)
        return job

    # -- statistics ----------------------------------------------------------------------------

    def compute_statistics(self, plan: StatisticsPlan) -> TableStatistics:
        """Compute the statistics of the source rows in ``[start, end)`` (:mod:`.statistics`)."""
        refuse_aggregations([plan.join], engine="spark", what="statistics")
        stage_dir = self.staging.new_dir("statistics")
        try:
            return spark_statistics(self.session, plan, context=self._context(stage_dir))
        finally:
            self.staging.remove(stage_dir)

    # -- ingestion -----------------------------------------------------------------------------

    def _latest_frame(self, plan: LatestPlan, stage_dir: str) -> DataFrame:
        if plan.join.aggregations:
            longest = max(aggregation.window for _, aggregation in plan.join.aggregations)
            lower = min(plan.start, plan.end - longest)
            dates = DateRange.for_interval(lower, plan.end)
            context = self._context(stage_dir, plan.inputs)
            rows = source_frame(self.session, plan.join, dates, context=context, lower=lower, upper=plan.end)
            return compile_latest_windows(plan, rows)
        dates = DateRange.for_interval(plan.start, plan.end)
        context = self._context(stage_dir, plan.inputs)
        source = source_frame(self.session, plan.join, dates, context=context, lower=plan.start, upper=plan.end)
        return compile_latest(plan, source)

    def read_latest(self, plan: LatestPlan, *, batch_rows: int) -> pa.RecordBatchReader:
        """Stream the latest row per entity key in ``[start, end)`` through the driver.

        Spark writes the rows under ``staging_path``; the reader streams those files and deletes
        them when done. :meth:`ingest_to_online` keeps the rows off the driver altogether.
        """
        what = f"ingestion of feature table {plan.join.name!r}"
        return self._through_staging(
            "latest", what, lambda job_dir: self._latest_frame(plan, job_dir), latest_schema(plan.join), batch_rows
        )

    def _events_frame(self, plan: LatestPlan, stage_dir: str, lower: datetime) -> DataFrame:
        """The events with ``lower < event <= end``, partitioned and sorted by key (:func:`compile_events`)."""
        dates = DateRange.for_interval(lower, plan.end)
        source = source_frame(
            self.session, plan.join, dates, context=self._context(stage_dir), lower=lower, upper=plan.end
        )
        return compile_events(plan, source, lower=lower)

    def read_events(self, plan: LatestPlan, *, lower: datetime, batch_rows: int) -> pa.RecordBatchReader:
        """Stream the events with ``lower < event_timestamp <= end`` through the driver, each key's contiguous.

        Spark writes them under ``staging_path``, partitioned and sorted by key (a key's events
        are in one file, by time); the reader streams the files in turn, a batch at a time, and
        deletes them when done. Batch ingestion rebuilds the keys' tiles from them
        (``tile_writer.TileWriter.rebuild``); :meth:`ingest_to_online` does it on the executors.
        """
        what = f"reading the events of feature table {plan.join.name!r}"
        return self._through_staging(
            "events",
            what,
            lambda job_dir: self._events_frame(plan, job_dir, lower),
            events_schema(plan.join),
            batch_rows,
        )

    def _through_staging(
        self, kind: str, what: str, frame_of: Callable[[str], DataFrame], schema: pa.Schema, batch_rows: int
    ) -> pa.RecordBatchReader:
        """Have Spark write ``frame_of(job_dir)`` under ``staging_path``; stream it back, deleted when done."""
        job_dir = self.staging.new_dir(kind)
        try:
            frame = frame_of(job_dir)
            run_in_group(
                self.session,
                f"provender-{job_dir}",
                what,
                lambda: frame.write.parquet(self.staging.spark_path(f"{job_dir}/{kind}")),
            )
        except BaseException:
            self.staging.remove(job_dir)
            raise

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                yield from self.staging.read(f"{job_dir}/{kind}", schema, batch_rows=batch_rows)
            finally:
                self.staging.remove(job_dir)

        return pa.RecordBatchReader.from_batches(schema, batches())

    def ingest_to_online(
        self,
        plan: LatestPlan,
        *,
        store_factory: StoreFactory,
        progress: IngestionProgress,
        events: EventSink | None = None,
    ) -> TableStatistics:
        """Write the latest row per entity key in ``[start, end)`` to the online store, from the executors.

        ``store_factory`` is called once here, to check that the store is
        ``reachable_from_executors`` (and its options good), then pickled to the executors: each
        partition opens its own store and writes its rows in Arrow batches under the store's
        event-time guard, reading the next batch while it writes one. Only per-partition counts
        reach the driver (``progress.rows_read``, ``progress.rows_written``). Runs in the calling
        thread; a cancelled ``progress`` cancels the Spark job.

        The rows are cached as they are written; the statistics of what was written are then
        computed over the cache, in Spark (the same SQL and numbers as every engine's), so the
        source is read and the rows chosen once.

        With ``events`` (a table with aggregations and a stream source), the executors then
        rebuild the tiles: the events in ``(events.lower, end]`` are partitioned by key and
        sorted (:func:`compile_events`), and each partition is handed to ``events``
        (:class:`~provender.offline.spark.executors.PartitionEvents`), which rebuilds its keys
        in bounded chunks; the driver receives a count per partition.

        Returns:
            The statistics of the rows written.

        Raises:
            ConfigError: a store the executors cannot reach (a local file; one process's memory).
            JobCancelledError: the job was cancelled.
            DataError, BackendError: Spark's or the store's error, with its message.
        """
        store = store_factory()
        reachable, kind = store.capabilities.reachable_from_executors, type(store).__name__
        store.close()
        if not reachable:
            raise ConfigError(
                "online.store",
                f"the Spark engine writes from its executors, which cannot reach a {kind} "
                "(one local file or process); use `online: {store: redis, url: ...}`, or the DuckDB engine.",
            )
        writer = PartitionWriter(store_factory=store_factory, table=plan.join.table, schema=latest_schema(plan.join))
        stage_dir = self.staging.new_dir("ingest")
        latest = self._latest_frame(plan, stage_dir).persist()
        try:
            return self._write_from_executors(plan, latest, writer, progress, events)
        finally:
            latest.unpersist()
            self.staging.remove(stage_dir)

    def _write_from_executors(
        self,
        plan: LatestPlan,
        latest: DataFrame,
        writer: PartitionWriter,
        progress: IngestionProgress,
        events: EventSink | None,
    ) -> TableStatistics:
        counts = latest.mapInArrow(writer, "rows_read long, rows_written long")
        total = counts.agg(F.sum("rows_read"), F.sum("rows_written"))
        what = f"ingestion of feature table {plan.join.name!r}"
        group, done = f"provender-ingest-{progress.id}", threading.Event()
        log.info("spark ingestion table=%s app=%s group=%s", plan.join.name, self.application_id, group)

        def watch() -> None:  # cancels until the job ends: a job submitted after a cancel is not yet in the group
            while not done.wait(0.1):
                if progress.is_cancelled:
                    self.session.sparkContext.cancelJobGroup(group)

        InheritableThread(target=watch, daemon=True).start()
        try:
            row = run_in_group(self.session, group, what, total.first)
            assert row is not None
            progress.rows_read, progress.rows_written = int(row[0] or 0), int(row[1] or 0)
            written = StatisticsPlan(join=plan.join, start=plan.start, end=plan.end)
            statistics = frame_statistics(self.session, latest, written, group=group)
            if events is not None:
                self._rebuild_from_executors(plan, events, group, f"{what}: rebuilding the tiles")
            return statistics
        except ProvenderError as exc:
            if progress.is_cancelled:
                raise JobCancelledError(f"job {progress.id} was cancelled: {exc}") from exc
            raise
        finally:
            done.set()

    def _rebuild_from_executors(self, plan: LatestPlan, events: EventSink, group: str, what: str) -> None:
        """Hand each partition of the events in ``(events.lower, end]`` to ``events`` on its executor."""
        stage_dir = self.staging.new_dir("events")  # a source staged for the rows has its own directory
        try:
            rebuild = PartitionEvents(sink=events, schema=events_schema(plan.join))
            keys = self._events_frame(plan, stage_dir, events.lower).mapInArrow(rebuild, "keys long")
            rebuilt = run_in_group(self.session, group, what, keys.agg(F.sum("keys")).first)
            assert rebuilt is not None
            log.info("tiles rebuilt table=%s keys=%d", plan.join.name, int(rebuilt[0] or 0))
        finally:
            self.staging.remove(stage_dir)
