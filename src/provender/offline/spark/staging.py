"""Where the Spark engine stages entity rows and results: a directory Spark and Arrow both see."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from provender.offline.files import is_remote

log = logging.getLogger(__name__)


class Staging:
    """A directory (local or object store) for entity rows and results, seen by Spark and Arrow."""

    def __init__(self, location: str, *, base_dir: Path) -> None:
        if is_remote(location):
            self.fs, root = pafs.FileSystem.from_uri(location.replace("s3a://", "s3://", 1))
            self.spark_root = location.rstrip("/")
        else:
            path = Path(location.removeprefix("file://")).expanduser()
            path = path if path.is_absolute() else base_dir / path
            self.fs, root = pafs.LocalFileSystem(), str(path)
            self.spark_root = path.as_uri()
        self.root = root.rstrip("/")

    def new_dir(self, kind: str) -> str:
        """Create a fresh directory and return its name (relative to the root)."""
        name = f"{kind}-{uuid.uuid4().hex[:12]}"
        self.fs.create_dir(f"{self.root}/{name}", recursive=True)
        return name

    def arrow_path(self, name: str) -> str:
        """``name``'s path for :attr:`fs`."""
        return f"{self.root}/{name}"

    def spark_path(self, name: str) -> str:
        """``name``'s URI for Spark."""
        return f"{self.spark_root}/{name}"

    def parquet_files(self, name: str) -> list[str]:
        """The Parquet files Spark wrote under ``name``, in partition order (``part-00000...``)."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.arrow_path(name), allow_not_found=True))
        paths = [i.path for i in infos if i.is_file and i.path.endswith(".parquet")]
        return sorted(p for p in paths if not p.rsplit("/", 1)[-1].startswith(("_", ".")))

    def read(self, name: str, schema: pa.Schema, *, batch_rows: int | None = None) -> Iterator[pa.RecordBatch]:
        """Stream the Parquet files under ``name``, in order, cast to ``schema``."""
        for path in self.parquet_files(name):
            with self.fs.open_input_file(path) as handle:
                kwargs = {} if batch_rows is None else {"batch_size": batch_rows}
                for batch in pq.ParquetFile(handle).iter_batches(**kwargs):
                    yield cast_batch(batch, schema)

    def remove(self, name: str) -> None:
        """Delete ``name`` and everything under it (quietly, if it is already gone)."""
        try:
            self.fs.delete_dir(self.arrow_path(name))
        except OSError:
            log.debug("could not remove staged %s", name)


def cast_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Select ``schema``'s columns of ``batch``, in order, with its types where they cast.

    Spark has no unsigned integers, and nanosecond columns come back as integers; casting
    restores the types the user's data had, and the declared types of features.
    """
    arrays = []
    for field in schema:
        array = batch.column(field.name)
        if array.type != field.type:
            try:
                array = array.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                log.debug("keeping column=%s type=%s (cannot cast to %s)", field.name, array.type, field.type)
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, names=schema.names)
