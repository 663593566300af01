"""Ingestion on Spark's executors: each partition's rows written to the online store where they are."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pyarrow as pa

from provender.backends import Role, load_backend
from provender.definitions import FeatureTable
from provender.errors import ProvenderError
from provender.ingestion.batch import IngestionJob, write_batches
from provender.offline.spark.failures import executor_error
from provender.offline.spark.staging import cast_batch
from provender.registry import codec

if TYPE_CHECKING:
    from provender.online.store import OnlineStore


class PartitionWriter:
    """The ``mapInArrow`` function of ingestion: one partition's rows to the online store, on its executor.

    Picklable by reference (a module-level class with plain attributes); the feature table
    travels as its registry JSON.
    """

    def __init__(
        self, *, store: str, options: dict[str, object], base_dir: str, project: str, table_json: str, schema: pa.Schema
    ) -> None:
        self.store, self.options, self.base_dir = store, options, base_dir
        self.project, self.table_json, self.schema = project, table_json, schema

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Write every batch; yield one row: how many rows were read and written."""
        table = codec.from_json(self.table_json)
        assert isinstance(table, FeatureTable)
        store_cls = cast("type[OnlineStore]", load_backend(Role.ONLINE_STORE, self.store))
        store = store_cls.from_options(self.options, base_dir=Path(self.base_dir), project=self.project)
        job = IngestionJob(table=table.name, description=f"a Spark partition of {table.name!r}")
        try:
            reader = pa.RecordBatchReader.from_batches(self.schema, (cast_batch(b, self.schema) for b in batches))
            write_batches(reader, lambda rows: store.write(table, rows), job)
        except ProvenderError as exc:
            raise executor_error(exc) from exc
        finally:
            store.close()
        yield pa.RecordBatch.from_pydict(
            {"rows_read": [job.rows_read], "rows_written": [job.rows_written]},
            schema=pa.schema([("rows_read", pa.int64()), ("rows_written", pa.int64())]),
        )
