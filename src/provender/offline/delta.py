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
from types import ModuleType
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from provender.config import StorageSection
from provender.definitions import DeltaSource
from provender.errors import DataError, MissingExtraError
from provender.offline.files import is_remote
from provender.offline.lineage import InputFile, PreviousRead
from provender.offline.objectstore import open_store


@dataclass(frozen=True, slots=True)
class DeltaSnapshot:
    """The snapshot a read uses: its table version, the files kept, and their rows as a dataset.

    ``changes_since`` is set when only the files committed after that version were kept (an
    incremental read); ``note`` says why an incremental read kept the whole snapshot instead.
    """

    version: int
    files: tuple[InputFile, ...]
    dataset: ds.Dataset
    changes_since: int | None = None
    note: str = ""


def open_delta(  # noqa: PLR0913 - keyword-only: the source, where it is, and what to keep
    source: DeltaSource,
    *,
    what: str,
    base_dir: Path,
    storage: StorageSection | None,
    lower: datetime | None = None,
    upper: datetime | None = None,
    since: PreviousRead | None = None,
) -> DeltaSnapshot:
    """Open ``source``'s snapshot, its files outside ``[lower, upper]`` (event time) pruned.

    With ``since`` (what an earlier ingestion read), the files of its version are skipped unless
    their statistics can hold rows outside its window, if every one of them is still in the
    snapshot (only appends since). Otherwise (a delete, an overwrite, a compaction, or that
    version gone from the log) the whole snapshot is kept and ``note`` says why.

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
            _check_history_reaches(table, at)
            table.load_as_version(at)
        dataset = table.to_pyarrow_dataset()
    except Exception as exc:  # noqa: BLE001 - deltalake raises several unrelated types; all are data errors here
        pin = (
            ""
            if source.version is None and source.timestamp is None
            else f" at {source.timestamp if source.version is None else source.version}"
        )
        raise DataError(f"{what}: cannot open the Delta table{pin}: {scrub(str(exc))}") from None
    window = time_window(dataset.schema, source.event_timestamp_column, lower, upper)
    # Each fragment's partition expression holds its file's min/max statistics from the Delta log.
    fragments = list(dataset.get_fragments(filter=window))
    note = ""
    if since is not None:
        note, previous = _appended_only(deltalake, path, options, since.version, current=_file_paths(table))
        if not note:
            outside = _outside(dataset.schema, source.event_timestamp_column, lower, upper, since)
            reread = set() if outside is None else {f.path for f in dataset.get_fragments(filter=outside)}
            fragments = [f for f in fragments if f.path not in previous or f.path in reread]
    kept = ds.FileSystemDataset(fragments, dataset.schema, dataset.format, dataset.filesystem)
    return DeltaSnapshot(
        version=table.version(),
        files=_input_files(table, path, fragments),
        dataset=kept,
        changes_since=since.version if since is not None and not note else None,
        note=note,
    )


def _check_history_reaches(table: Any, at: datetime) -> None:  # noqa: ANN401 - a deltalake.DeltaTable
    """Refuse a time before the table's first commit (``load_as_version`` would read its first version)."""
    times = [entry["timestamp"] for entry in table.history() if isinstance(entry.get("timestamp"), int)]
    if times and at.timestamp() * 1000 < min(times):
        first = datetime.fromtimestamp(min(times) / 1000, tz=UTC).isoformat()
        raise ValueError(f"the table has no version that old (its history starts at {first})")


def latest_version(source: DeltaSource, *, what: str, base_dir: Path, storage: StorageSection | None) -> int:
    """The version ``source`` reads now: its pin, else the table's latest (to pin a job's read).

    Reads the Delta log only (no file list, no dataset).

    Raises:
        DataError: the table cannot be opened (the message names ``what``).
    """
    if source.version is not None:
        return source.version
    if source.timestamp is not None:
        return open_delta(source, what=what, base_dir=base_dir, storage=storage).version
    try:
        import deltalake
    except ImportError:
        raise MissingExtraError("DeltaSource", extra="delta", missing="deltalake") from None
    path, options, scrub = _location(source, what=what, base_dir=base_dir, storage=storage)
    try:
        return int(deltalake.DeltaTable(path, storage_options=options).version())
    except Exception as exc:  # noqa: BLE001 - deltalake raises several unrelated types; all are data errors here
        raise DataError(f"{what}: cannot open the Delta table: {scrub(str(exc))}") from None


def _file_paths(table: object) -> set[str]:
    """The paths (relative to the table) of the snapshot's files, from its add actions."""
    actions = pa.table(table.get_add_actions(flatten=True))  # type: ignore[attr-defined]
    return set(actions.column("path").to_pylist())


def _appended_only(
    deltalake: ModuleType, path: str, options: dict[str, str] | None, since: int, *, current: set[str]
) -> tuple[str, set[str]]:
    """The files of version ``since``, and a note saying why they cannot be skipped ("" if they can).

    They can when the table only had files added since: none of them was removed.
    """
    try:
        previous = _file_paths(deltalake.DeltaTable(path, version=since, storage_options=options))
    except Exception as exc:  # noqa: BLE001 - deltalake raises several unrelated types
        return f"version {since} can no longer be read ({type(exc).__name__}); read the whole snapshot", set()
    removed = len(previous - current)
    if removed:
        note = (
            f"{removed} file(s) of version {since} were removed since (a delete, an overwrite or a "
            "compaction); read the whole snapshot"
        )
        return note, previous
    return "", previous


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
    source: DeltaSource, *, what: str, base_dir: Path, storage: StorageSection | None
) -> tuple[str, dict[str, str] | None, Callable[[str], str]]:
    if not is_remote(source.path):
        local = Path(source.path.removeprefix("file://")).expanduser()
        local = local if local.is_absolute() else base_dir / local
        if not (local / "_delta_log").is_dir():
            raise DataError(f"{what}: {source.path!r} is not a Delta table (no _delta_log at {local}).")
        return str(local), None, str
    store = open_store(source.path, storage, what)
    if store.scheme != "s3":  # deltalake reads its own environment for other stores (GOOGLE_*)
        return source.path, None, store.scrub
    # The keys, region and endpoint open_store resolved (settings, else the AWS_* environment).
    options = {name: value for name, value in store.client_options if name.startswith("AWS_")}
    return source.path, options, store.scrub


def _outside(
    schema: pa.Schema, column: str, lower: datetime | None, upper: datetime | None, since: PreviousRead
) -> pc.Expression | None:
    """The filter keeping files with rows in ``[lower, upper]`` but outside ``since``'s window (None: no such part)."""
    parts = []
    if lower is None or lower < since.start:
        parts.append(time_window(schema, column, lower, since.start - timedelta(microseconds=1)))
    if upper is None or upper >= since.end:
        parts.append(time_window(schema, column, since.end, upper))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else parts[0] | parts[1]


def time_window(schema: pa.Schema, column: str, lower: datetime | None, upper: datetime | None) -> pc.Expression:
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
