"""What a job read: per feature table, its files (sizes, modification times) and Delta version.

Historical retrievals and offline-to-online ingestions record it in their job records
(:func:`to_json`), so ``provender jobs show`` and ``client.get_job(id).lineage()`` tell what a
training set or an online table came from, and incremental Delta ingestion where to resume.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import cast


@dataclass(frozen=True, slots=True, kw_only=True)
class InputFile:
    """One file a retrieval read."""

    path: str
    size: int | None
    modified: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceInput:
    """A feature table's batch source as a retrieval read it.

    Attributes:
        table: the feature table.
        path: the source's path or URL, as defined.
        files: the files read (after partition and statistics pruning).
        delta_version: the Delta table version read (None for files).
        changes_since: for an incremental read, the Delta version whose files were already
            ingested and were skipped (only files committed after it were read).
        note: why an incremental read read the whole snapshot instead, or "".
    """

    table: str
    path: str
    files: tuple[InputFile, ...]
    delta_version: int | None = None
    changes_since: int | None = None
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PreviousRead:
    """What an earlier ingestion of a Delta source read: its version, over event times ``[start, end)``.

    Every row of that version's files with an event time in the window was considered then; an
    incremental read skips those files unless their statistics reach outside the window.
    """

    version: int
    start: datetime
    end: datetime


def to_json(
    inputs: Sequence[SourceInput], *, window: tuple[datetime, datetime] | None = None, features: Sequence[str] = ()
) -> dict[str, object]:
    """``inputs`` as the JSON a job record keeps: ``{"sources": [...]}``, with an ingestion's window and features."""
    found: dict[str, object] = {}
    if window is not None:
        found["window"] = {"start": window[0].isoformat(), "end": window[1].isoformat()}
        found["features"] = list(features)
    return found | {
        "sources": [
            {
                "table": i.table,
                "path": i.path,
                "delta_version": i.delta_version,
                "changes_since": i.changes_since,
                "note": i.note,
                "files": [
                    {"path": f.path, "size": f.size, "modified": None if f.modified is None else f.modified.isoformat()}
                    for f in i.files
                ],
            }
            for i in inputs
        ]
    }


def from_json(data: Mapping[str, object]) -> tuple[SourceInput, ...]:
    """The inputs :func:`to_json` wrote (a job record's ``lineage``)."""
    found = []
    for raw in cast("list[dict[str, object]]", data.get("sources", [])):
        files = tuple(
            InputFile(
                path=str(f["path"]),
                size=cast("int | None", f.get("size")),
                modified=None if f.get("modified") is None else datetime.fromisoformat(str(f["modified"])),
            )
            for f in cast("list[dict[str, object]]", raw.get("files", []))
        )
        found.append(
            SourceInput(
                table=str(raw["table"]),
                path=str(raw["path"]),
                files=files,
                delta_version=cast("int | None", raw.get("delta_version")),
                changes_since=cast("int | None", raw.get("changes_since")),
                note=str(raw.get("note") or ""),
            )
        )
    return tuple(found)


def local_files(paths: list[str]) -> tuple[InputFile, ...]:
    """Sizes and modification times of local files."""
    found = []
    for path in paths:
        stat = Path(path).stat()
        found.append(InputFile(path=path, size=stat.st_size, modified=datetime.fromtimestamp(stat.st_mtime, tz=UTC)))
    return tuple(found)
