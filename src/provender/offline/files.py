"""Finding a file source's files, with date-partition pruning. Shared by every engine."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

from provender.definitions import CsvFormat, FileSource
from provender.errors import DataError

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True, slots=True, kw_only=True)
class DateRange:
    """Inclusive range of partition dates to read; None on a side means unbounded."""

    first: date | None
    last: date | None

    @classmethod
    def for_window(cls, earliest: datetime | None, latest: datetime | None, max_age: timedelta | None) -> DateRange:
        """Dates that can hold rows with event times in ``[earliest - max_age, latest]``."""
        lower = lower_event_bound(earliest, max_age)
        return cls(first=None if lower is None else lower.date(), last=None if latest is None else latest.date())

    @classmethod
    def for_interval(cls, start: datetime, end: datetime) -> DateRange:
        """Dates that can hold rows with event times in ``[start, end)`` (ingestion's window).

        Naive times are UTC (``astimezone`` alone would read them as the machine's local time).
        """
        start, end = (at if at.tzinfo else at.replace(tzinfo=UTC) for at in (start, end))
        return cls(first=start.astimezone(UTC).date(), last=end.astimezone(UTC).date())

    @property
    def is_unbounded(self) -> bool:
        """Whether every date is inside the range (nothing can be pruned)."""
        return self.first is None and self.last is None

    def contains(self, day: date) -> bool:
        """Whether ``day`` is inside the range."""
        return (self.first is None or day >= self.first) and (self.last is None or day <= self.last)


def lower_event_bound(earliest: datetime | None, max_age: timedelta | None) -> datetime | None:
    """The oldest event time a source row may have to be a candidate for entity rows from ``earliest``.

    None when unbounded (no entity rows, no ``max_age``, or one reaching before year 1).
    """
    if earliest is None or max_age is None:
        return None
    try:
        return earliest - max_age
    except OverflowError:
        return None


def is_remote(path: str) -> bool:
    """Whether ``path`` is an object-store URL (``s3://``, ``gs://``...) rather than a local path."""
    return "://" in path and not path.startswith("file://")


def list_source_files(source: FileSource, *, base_dir: Path, dates: DateRange | None = None) -> list[str]:
    """Return the files of ``source`` to read, skipping date partitions outside ``dates``.

    Remote URLs are returned as given (the engine expands them). A directory means every file
    of the source's format under it (hive partitions included); a glob is expanded.

    Raises:
        DataError: the path does not exist or matches no file.
    """
    if is_remote(source.path):
        return [source.path]
    raw = source.path.removeprefix("file://")
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    suffix = ".csv" if isinstance(source.file_format, CsvFormat) else ".parquet"
    if any(char in raw for char in _GLOB_CHARS):
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
    elif path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and not p.name.startswith((".", "_")) and (p.suffix == suffix or not p.suffix)
        )
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"Source path {source.path!r} does not exist (looked at {path}).")
    if not files:
        raise DataError(f"Source path {source.path!r} matches no {suffix} files (looked at {path}).")
    if dates is not None and source.date_partition_column:
        files = [f for f in files if in_dates(str(f), source.date_partition_column, dates)]
    return [str(f) for f in files]


def list_table_files(table: str, source: FileSource, *, base_dir: Path, dates: DateRange | None = None) -> list[str]:
    """:func:`list_source_files` for feature table ``table``'s batch source; errors name the table."""
    try:
        return list_source_files(source, base_dir=base_dir, dates=dates)
    except DataError as exc:
        raise DataError(f"Feature table {table!r}: {exc}") from exc


def in_dates(file: str, column: str, dates: DateRange) -> bool:
    """Whether ``file`` (a path or URL) can hold rows of ``dates``: no ``<column>=`` partition, or one in them."""
    prefix = f"{column}="
    for part in Path(file).parts:
        if part.startswith(prefix):
            return dates.contains(partition_date(unquote(part), column, str(file)))
    return True


def partition_date(part: str, column: str, where: str) -> date:
    """The date of partition directory ``part`` (``<column>=YYYY-MM-DD...``) found at ``where``.

    Raises:
        DataError: the directory's value is not a date.
    """
    try:
        return date.fromisoformat(part.removeprefix(f"{column}=")[:10])
    except ValueError:
        raise DataError(
            f"Partition directory {part!r} of {where} is not a date (expected {column}=YYYY-MM-DD)."
        ) from None
