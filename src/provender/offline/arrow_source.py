"""Sources read through pyarrow: Delta snapshots and object-store Parquet, shared by every engine.

DuckDB scans the dataset in place (registered, with projections and filters pushed down); Spark,
which has no S3 connector or Delta reader here, stages it as local Parquet first
(:mod:`provender.offline.spark.sources`). Either way the same files are read: those left after
date-partition pruning (object stores) or the Delta log's statistics (Delta), recorded as the
read's lineage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.dataset as ds

from provender.config import StorageSection
from provender.definitions import DeltaSource, FileSource
from provender.offline.delta import open_delta
from provender.offline.files import DateRange, is_remote
from provender.offline.lineage import InputFile, SourceInput
from provender.offline.objectstore import ObjectStore, open_store, source_files, store_dataset
from provender.offline.plan import TableJoin


@dataclass(frozen=True, slots=True)
class ArrowSource:
    """A source opened for reading: its rows (None when every partition was pruned) and lineage.

    Attributes:
        dataset: the rows of the files kept, or None.
        input: what is read (files, sizes, times; the Delta version).
        scrub: removes secrets from an error message about this source.
        store: the object store of a file source (None for Delta tables).
    """

    dataset: ds.Dataset | None
    input: SourceInput
    scrub: Callable[[str], str] = str
    store: ObjectStore | None = None


def reads_through_arrow(join: TableJoin) -> bool:
    """Whether ``join``'s source is a Delta table or an object-store file source."""
    return isinstance(join.source, DeltaSource) or is_remote(join.source.path)


def open_arrow_source(  # noqa: PLR0913 - keyword-only: where the source is, its window, what to build
    join: TableJoin,
    dates: DateRange,
    *,
    base_dir: Path,
    storage: StorageSection | None,
    lower: datetime | None,
    upper: datetime | None,
    dataset: bool = True,
) -> ArrowSource:
    """Open ``join``'s Delta or object-store source, pruned to event times in ``[lower, upper]``.

    With ``dataset=False``, an object-store file source is only listed (its ``dataset`` is None:
    the caller reads the listed files itself); Delta tables always get their dataset.

    Raises:
        DataError: the source cannot be listed or opened (the message names the table and the
            cause, never a secret).
    """
    name, path = join.name, join.source.path
    what = f"Feature table {name!r} (batch source {path})"
    if isinstance(join.source, DeltaSource):
        snapshot = open_delta(
            join.source,
            what=what,
            base_dir=base_dir,
            storage=storage,
            lower=lower,
            upper=upper,
            since=join.delta_since,
        )
        source_input = SourceInput(
            table=name,
            path=path,
            files=snapshot.files,
            delta_version=snapshot.version,
            changes_since=snapshot.changes_since,
            note=snapshot.note,
        )
        return ArrowSource(snapshot.dataset, source_input)  # even with no file kept: its schema is checked
    assert isinstance(join.source, FileSource)  # SQL sources are read by each engine itself
    store = open_store(path, storage, what)
    infos = source_files(store, join.source, dates, what)  # one listing: sizes and times come with it
    read = tuple(
        InputFile(path=store.url(i.path), size=i.size, modified=None if i.mtime is None else i.mtime.astimezone(UTC))
        for i in infos
    )
    source_input = SourceInput(table=name, path=path, files=read)
    files = [f.path for f in read]
    root = None if files == [path] else path
    sizes = {f.path: f.size for f in read}
    rows = store_dataset(store, files, root=root, sizes=sizes) if files and dataset else None
    return ArrowSource(rows, source_input, store.scrub, store)
