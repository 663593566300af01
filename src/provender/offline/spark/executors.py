"""Ingestion on Spark's executors: each partition's rows written to the online store where they are.

A table with aggregations and a stream source then has each partition's events rebuild its keys' tiles.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

from provender.definitions import FeatureTable
from provender.errors import ProvenderError
from provender.offline.batches import write_batches
from provender.offline.engine import EventSink, StoreFactory
from provender.offline.spark.failures import executor_error
from provender.offline.spark.staging import cast_batch

_COUNTS = pa.schema([("rows_read", pa.int64()), ("rows_written", pa.int64())])
_KEYS = pa.schema([("keys", pa.int64())])


class PartitionWriter:
    """The ``mapInArrow`` function of ingestion: one partition's rows to the online store, on its executor.

    Pickled to the executors with what it holds: the store factory (a store class by reference
    and its options), the feature table (a frozen definition) and the rows' schema.
    """

    def __init__(self, *, store_factory: StoreFactory, table: FeatureTable, schema: pa.Schema) -> None:
        self.store_factory, self.table, self.schema = store_factory, table, schema

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Write every batch; yield one row: how many rows were read and written."""
        store = self.store_factory()
        counts = _PartitionCounts(id=self.table.name, description=f"a Spark partition of {self.table.name!r}")
        try:
            reader = pa.RecordBatchReader.from_batches(self.schema, (cast_batch(b, self.schema) for b in batches))
            write_batches(reader, lambda rows: store.write(self.table, rows), counts)
        except ProvenderError as exc:
            raise executor_error(exc) from exc
        finally:
            store.close()
        yield pa.RecordBatch.from_pydict(
            {"rows_read": [counts.rows_read], "rows_written": [counts.rows_written]}, schema=_COUNTS
        )


class PartitionEvents:
    """The ``mapInArrow`` function rebuilding tiles: one partition's events (each key's contiguous) to the sink.

    Pickled to the executors with the sink (which opens its own store) and the events' schema.
    """

    def __init__(self, *, sink: EventSink, schema: pa.Schema) -> None:
        self.sink, self.schema = sink, schema

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Hand every batch to the sink; yield one row: how many keys it rebuilt."""
        try:
            keys = self.sink(cast_batch(b, self.schema) for b in batches)
        except ProvenderError as exc:
            raise executor_error(exc) from exc
        yield pa.RecordBatch.from_pydict({"keys": [keys]}, schema=_KEYS)


@dataclass
class _PartitionCounts:
    """A partition's progress; cancelling is Spark's (the driver cancels the job group)."""

    id: str
    description: str
    rows_read: int = 0
    rows_written: int = 0
    is_cancelled: bool = False
