"""What a historical retrieval read: per feature table, its files (sizes, modification times) or Delta version."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.fs as pafs


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
    """

    table: str
    path: str
    files: tuple[InputFile, ...]
    delta_version: int | None = None


def local_files(paths: list[str]) -> tuple[InputFile, ...]:
    """Sizes and modification times of local files."""
    found = []
    for path in paths:
        stat = Path(path).stat()
        found.append(InputFile(path=path, size=stat.st_size, modified=datetime.fromtimestamp(stat.st_mtime, tz=UTC)))
    return tuple(found)


def filesystem_files(fs: pafs.FileSystem, paths: list[str], *, prefix: str = "") -> tuple[InputFile, ...]:
    """Sizes and modification times of ``paths`` on ``fs``, reported as ``prefix + path``."""
    infos = fs.get_file_info(paths) if paths else []
    return tuple(
        InputFile(
            path=prefix + info.path,
            size=info.size,
            modified=None if info.mtime is None else info.mtime.astimezone(UTC),
        )
        for info in infos
    )
