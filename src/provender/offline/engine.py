"""The offline engine seam: what DuckDB and Spark each implement."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar, Protocol, Self

import pyarrow as pa
from pydantic import BaseModel

from provender.config import StorageSection
from provender.definitions import FeatureTable
from provender.definitions.jobs import JobStatus as JobStatus  # re-exported: engines report job states
from provender.offline.plan import LatestPlan, RetrievalPlan
from provender.offline.statistics import StatisticsPlan, TableStatistics


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineCapabilities:
    """What an engine can do, as data (callers and tests select engines by it, never by name).

    Attributes:
        is_distributed: the engine runs on a cluster and writes ingestion batches from its
            executors (it implements :class:`DistributedIngestion`).
    """

    is_distributed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class EntityRows:
    """Entity rows for a retrieval: an Arrow table in memory, or Parquet files on disk.

    Exactly one of ``table`` and ``paths`` is set. ``schema`` is always known.
    """

    schema: pa.Schema
    table: pa.Table | None = None
    paths: tuple[str, ...] = ()


class RetrievalJob(Protocol):
    """A planned retrieval; the work runs when a result is asked for."""

    def to_arrow(self) -> pa.Table:
        """Run the retrieval and return the result as an Arrow table."""
        ...

    def to_arrow_reader(self) -> pa.RecordBatchReader:
        """Run the retrieval and stream the result in record batches."""
        ...

    def to_parquet(self, path: str | Path) -> int:
        """Run the retrieval and stream the result to a Parquet file; return the row count."""
        ...


class OfflineEngine(Protocol):
    """Computes point-in-time joins and ingestion batches over batch sources."""

    capabilities: ClassVar[EngineCapabilities]
    config_model: ClassVar[type[BaseModel]]
    """The pydantic model of the engine's options (the whole ``offline:`` section)."""

    @classmethod
    def from_options(
        cls, options: Mapping[str, object], *, base_dir: Path, storage: StorageSection | None = None
    ) -> Self:
        """Build the engine from the ``offline:`` section (validated by the engine's Config).

        ``storage`` holds the ``storage`` settings, for object-store sources (``s3://``, ``gs://``).
        """
        ...

    def retrieve(self, plan: RetrievalPlan, entity_rows: EntityRows) -> RetrievalJob:
        """Return a job computing ``plan`` for ``entity_rows``; sources are checked first."""
        ...

    def read_latest(self, plan: LatestPlan, *, batch_rows: int) -> pa.RecordBatchReader:
        """Stream, per entity key, the row the rule picks in ``[start, end)``, normalized for writing."""
        ...

    def compute_statistics(self, plan: StatisticsPlan) -> TableStatistics:
        """Compute the statistics of the source rows in ``[start, end)`` (:mod:`provender.offline.statistics`)."""
        ...

    def close(self) -> None:
        """Release the engine's resources."""
        ...


class IngestionProgress(Protocol):
    """What a distributed ingestion reports to, and asks of, the job it runs for (an ``IngestionJob``).

    Attributes:
        rows_read: rows the workers read, set when the work ends.
        rows_written: rows the workers wrote, set when the work ends.
    """

    rows_read: int
    rows_written: int

    @property
    def id(self) -> str:
        """The job's id (the engine names its own work after it)."""
        ...

    @property
    def is_cancelled(self) -> bool:
        """Whether the job was asked to stop (the engine then cancels its work)."""
        ...


class ExecutorReach(Protocol):
    """The store capability a distributed engine checks (``online.store.StoreCapabilities`` has it)."""

    @property
    def reachable_from_executors(self) -> bool:
        """Whether processes on other machines can open the store from the same options."""
        ...


class TargetStore(Protocol):
    """What a distributed engine's workers need of the online store (any ``OnlineStore``).

    Declared here, not imported from ``online/``: the offline and online layers are siblings.
    """

    @property
    def capabilities(self) -> ExecutorReach:
        """The store's capabilities (only ``reachable_from_executors`` is read)."""
        ...

    def write(self, table: FeatureTable, rows: pa.Table) -> int:
        """Write a normalized batch of ``table``'s rows under the event-time guard; return the rows written."""
        ...

    def close(self) -> None:
        """Release the store's connections."""
        ...


StoreFactory = Callable[[], TargetStore]
"""A picklable zero-argument callable opening the online store, on the driver or on a worker."""


class EventSink(Protocol):
    """A picklable consumer of a table's events, on a worker: batch ingestion rebuilding the tiles.

    Attributes:
        lower: the events it takes have ``lower < event_timestamp <= end`` (the plan's end).
    """

    @property
    def lower(self) -> datetime:
        """The events' exclusive lower bound."""
        ...

    def __call__(self, batches: Iterable[pa.RecordBatch]) -> int:
        """Consume one worker's events and return how many keys they held.

        ``batches`` hold the entity keys, the aggregations' inputs, ``event_timestamp`` and
        ``created_timestamp``, each key's events contiguous and by time, every event of a key
        in the same call.
        """
        ...


class DistributedIngestion(Protocol):
    """An engine (``capabilities.is_distributed``) whose workers write to the online store.

    The workers write the rows themselves, so the driver never collects them.
    """

    def ingest_to_online(
        self,
        plan: LatestPlan,
        *,
        store_factory: StoreFactory,
        progress: IngestionProgress,
        events: EventSink | None = None,
    ) -> TableStatistics:
        """Write the rows of ``plan`` to the online store each worker opens with ``store_factory``; describe them.

        Args:
            plan: the latest row per entity key in ``[start, end)``.
            store_factory: a picklable zero-argument callable opening the online store (see
                :meth:`provender.runtime.Runtime.online_store_factory`); called on the driver
                to check the store is ``reachable_from_executors``, then on every worker.
            progress: the job, counted on and watched for cancellation.
            events: given (a table with aggregations and a stream source), the workers then
                hand it the source's events in ``(events.lower, end]``, each key's whole to one
                call, to rebuild the tiles.

        Returns:
            The statistics of the rows written (:mod:`provender.offline.statistics`), computed by
            the engine in the same job, so every engine's ingestion records them.

        Raises:
            ConfigError: a store the workers cannot reach.
            JobCancelledError: the job was cancelled.
        """
        ...
