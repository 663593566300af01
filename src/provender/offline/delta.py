"""Delta Lake sources: one pinned snapshot per read, files pruned by their statistics.

A :class:`~provender.definitions.DeltaSource` is opened at its pinned ``version`` or
``timestamp`` (else the latest version when the read starts), so a retrieval reads one
consistent snapshot. The snapshot becomes a pyarrow dataset whose fragments carry each file's
min/max statistics from the Delta log; filtering it on the event-time window skips every file
whose statistics cannot hold a row in the window, before the file is opened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from provender.config import S3Storage
from provender.definitions import DeltaSource
from provender.errors import DataError, MissingExtraError
from provender.offline.files import is_remote
from provender.offline.lineage import InputFile
from provender.offline.objectstore import open_s3


@dataclass(frozen=True, slots=True)
class DeltaSnapshot:
    """The snapshot a read uses: its table version, the files kept, and their rows as a dataset."""

    version: int
    files: tuple[InputFile, ...]
    dataset: ds.Dataset


def open_delta(
    source: DeltaSource,
    *,
    what: str,
    base_dir: Path,
    storage: S3Storage | None,
    lower: datetime | None = None,
    upper: datetime | None = None,
) -> DeltaSnapshot:
    """Open ``source``'s snapshot, its files outside ``[lower, upper]`` (event time) pruned.

    Raises:
        DataError: the table does not exist, the pinned version or time is not in its history,
            or the object store refuses access (messages name ``what``, never a secret).
        MissingExtraError: the ``deltalake`` package is not installed.
    """
    try:
        import deltalake
    except ImportError:
        raise MissingExtraError("DeltaSource", extra="delta", missing="deltalake") from None
    path, options, scrub = _location(source, what=what, base_dir=base_dir, storage=storage)
    try:
        table = deltalake.DeltaTable(path, version=source.version, storage_options=options)
        if source.timestamp is not None:
            at = source.timestamp if source.timestamp.tzinfo else source.timestamp.replace(tzinfo=UTC)
            table.load_as_version(at)
        dataset = table.to_pyarrow_dataset()
    except Exception as exc:  # noqa: BLE001 - deltalake raises several unrelated types; all are data errors here
        pin = "" if source.version is None and source.timestamp is None else f" at {source.version or source.timestamp}"
        raise DataError(f"{what}: cannot open the Delta table{pin}: {scrub(str(exc))}") from None
    window = _window(dataset.schema, source.event_timestamp_column, lower, upper)
    # Each fragment's partition expression holds its file's min/max statistics from the Delta log.
    fragments = list(dataset.get_fragments(filter=window))
    kept = ds.FileSystemDataset(fragments, dataset.schema, dataset.format, dataset.filesystem)
    return DeltaSnapshot(version=table.version(), files=_input_files(table, path, fragments), dataset=kept)


def _input_files(table: object, root: str, fragments: list[ds.FileFragment]) -> tuple[InputFile, ...]:
    """The kept files under ``root``, with their sizes and times from the Delta log."""
    actions = pa.table(table.get_add_actions(flatten=True))  # type: ignore[attr-defined]
    logged = {
        row["path"]: (row["size_bytes"], row["modification_time"])
        for row in actions.select(["path", "size_bytes", "modification_time"]).to_pylist()
    }
    files = []
    for fragment in fragments:
        size, millis = logged.get(fragment.path, (None, None))
        modified = None if millis is None else datetime.fromtimestamp(millis / 1000, tz=UTC)
        location = fragment.path if "://" in fragment.path else f"{root.rstrip('/')}/{fragment.path}"
        files.append(InputFile(path=location, size=size, modified=modified))
    return tuple(files)


def _location(
    source: DeltaSource, *, what: str, base_dir: Path, storage: S3Storage | None
) -> tuple[str, dict[str, str] | None, Callable[[str], str]]:
    if not is_remote(source.path):
        local = Path(source.path.removeprefix("file://")).expanduser()
        local = local if local.is_absolute() else base_dir / local
        if not (local / "_delta_log").is_dir():
            raise DataError(f"{what}: {source.path!r} is not a Delta table (no _delta_log at {local}).")
        return str(local), None, str
    store = open_s3(storage, what)
    settings = storage or S3Storage()
    options = {"AWS_REGION": settings.region or "us-east-1"}
    if store.access_key_id is not None and store.secrets:
        options.update(AWS_ACCESS_KEY_ID=store.access_key_id, AWS_SECRET_ACCESS_KEY=store.secrets[0])
    if settings.endpoint_url:
        options["AWS_ENDPOINT_URL"] = settings.endpoint_url
        options["AWS_ALLOW_HTTP"] = "true"
    return source.path, options, store.scrub


def _window(schema: pa.Schema, column: str, lower: datetime | None, upper: datetime | None) -> pc.Expression:
    """The filter keeping rows (and files, by their statistics) with event times in ``[lower, upper]``.

    Only on a timestamp column; the engine applies the exact bounds again. The upper bound is
    widened by a microsecond, since the engine rounds nanoseconds down.
    """
    everything = pc.scalar(True)
    if column not in schema.names or not pa.types.is_timestamp(schema.field(column).type):
        return everything
    kind = schema.field(column).type
    bounds = []
    if lower is not None:
        bounds.append(pc.field(column) >= _scalar(lower, kind))
    if upper is not None:
        bounds.append(pc.field(column) <= _scalar(upper + timedelta(microseconds=1), kind))
    if not bounds:
        return everything
    return bounds[0] if len(bounds) == 1 else bounds[0] & bounds[1]


def _scalar(at: datetime, kind: pa.TimestampType) -> pa.Scalar:
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    return pa.scalar(at if kind.tz else at.astimezone(UTC).replace(tzinfo=None), type=kind)
