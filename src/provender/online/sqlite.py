"""The embedded online store: one SQLite file in WAL mode (``online: {store: sqlite, path: ...}``).

One table holds every project's rows, another the tiles of windowed aggregations (``tiles.py``),
one row per field of a key's tile record::

    online_tiles(project, feature_table, entity_key BLOB, field BLOB, value BLOB)  -- WITHOUT ROWID,
        PRIMARY KEY (project, feature_table, entity_key, field); feature_table is '<name>#<layout id>'

and every project's rows::

    online_rows(project, feature_table, entity_key BLOB, value BLOB)   -- WITHOUT ROWID,
        PRIMARY KEY (project, feature_table, entity_key)

``entity_key`` is the encoding of ``keys.py`` and ``value`` a packed row of ``codec.py``, whose
first 16 bytes order rows by ``(event_timestamp, created_timestamp)``. So the event-time guard
is one conditional upsert, run for a whole batch in one ``BEGIN IMMEDIATE`` transaction::

    INSERT ... ON CONFLICT DO UPDATE SET value = excluded.value
        WHERE substr(excluded.value, 1, 16) >= substr(online_rows.value, 1, 16)

SQLite compares blobs with memcmp, so the comparison is exact. The same transaction keeps the
table's freshness (the newest event time written, and when) in one small row::

    online_tables(project, feature_table, newest_event_us, written_at_us)  -- PRIMARY KEY (project, feature_table)

Several processes may write at once: transactions serialize on the database lock
(``busy_timeout_seconds``), and each write re-checks the stored version, so racing writers
converge to the newest rows.

Each thread gets its own connection (WAL lets readers run while a writer commits).
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import repeat
from pathlib import Path
from typing import ClassVar, Self

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from provender.config import validate_backend_config
from provender.definitions import FeatureTable
from provender.errors import BackendError
from provender.online.codec import StoredRow, codec_for, encode_batch
from provender.online.store import DEFAULT_PROJECT, ReadRequest, StoreCapabilities, TableFreshness, now_micros
from provender.online.tiles import TileLayout, TileMerge

_SCHEMA = """
CREATE TABLE IF NOT EXISTS online_rows (
    project TEXT NOT NULL,
    feature_table TEXT NOT NULL,
    entity_key BLOB NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (project, feature_table, entity_key)
) WITHOUT ROWID
"""
_SCHEMA_TABLES = """
CREATE TABLE IF NOT EXISTS online_tables (
    project TEXT NOT NULL,
    feature_table TEXT NOT NULL,
    newest_event_us INTEGER NOT NULL,
    written_at_us INTEGER NOT NULL,
    PRIMARY KEY (project, feature_table)
) WITHOUT ROWID
"""
_UPSERT_TABLE = """
INSERT INTO online_tables (project, feature_table, newest_event_us, written_at_us) VALUES (?, ?, ?, ?)
ON CONFLICT (project, feature_table) DO UPDATE SET
    newest_event_us = max(online_tables.newest_event_us, excluded.newest_event_us),
    written_at_us = excluded.written_at_us
"""
_SELECT_TABLES = (
    "SELECT feature_table, newest_event_us, written_at_us FROM online_tables "
    "WHERE project = ? AND feature_table IN ({})"
)
_TILES_SCHEMA = """
CREATE TABLE IF NOT EXISTS online_tiles (
    project TEXT NOT NULL,
    feature_table TEXT NOT NULL,
    entity_key BLOB NOT NULL,
    field BLOB NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (project, feature_table, entity_key, field)
) WITHOUT ROWID
"""
_TILE_SELECT = "SELECT field, value FROM online_tiles WHERE project = ? AND feature_table = ? AND entity_key = ?"
_TILE_SET = """
INSERT INTO online_tiles (project, feature_table, entity_key, field, value) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (project, feature_table, entity_key, field) DO UPDATE SET value = excluded.value
"""
# || makes text of blobs: cast back, so the bytes stay bytes (a UTF-8 database keeps them as they are).
_TILE_APPEND = """
INSERT INTO online_tiles (project, feature_table, entity_key, field, value) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (project, feature_table, entity_key, field)
DO UPDATE SET value = CAST(online_tiles.value || excluded.value AS BLOB)
"""
_TILE_DELETE = "DELETE FROM online_tiles WHERE project = ? AND feature_table = ? AND entity_key = ? AND field = ?"
_UPSERT = """
INSERT INTO online_rows (project, feature_table, entity_key, value) VALUES (?, ?, ?, ?)
ON CONFLICT (project, feature_table, entity_key) DO UPDATE SET value = excluded.value
WHERE substr(excluded.value, 1, 16) >= substr(online_rows.value, 1, 16)
"""
_SELECT_ONE = "SELECT value FROM online_rows WHERE project = ? AND feature_table = ? AND entity_key = ?"
_SELECT_MANY = (
    "SELECT entity_key, value FROM online_rows WHERE project = ? AND feature_table = ? AND entity_key IN ({})"
)
_MMAP_BYTES = 256 * 1024 * 1024
# Keys per IN (...) query: well under SQLite's limit of 32766 bound parameters.
_KEYS_PER_QUERY = 2048


@functools.cache
def _select_many(count: int) -> str:
    return _SELECT_MANY.format(",".join("?" * count))


def _bucket(count: int) -> int:
    """Return the IN list's length for ``count`` keys: the next power of two.

    So a few prepared statements (sqlite3 caches 128 per connection) serve every request size,
    where compiling one costs about 30 us for 100 keys. The list is padded with a repeated key,
    which IN ignores.
    """
    return 1 << (count - 1).bit_length()


@functools.cache
def _select_tables(count: int) -> str:
    return _SELECT_TABLES.format(",".join("?" * count))


class SQLiteConfig(BaseModel):
    """Options of ``online: {store: sqlite}``.

    Attributes:
        path: the database file; relative paths are resolved against the config file's directory.
        busy_timeout_seconds: how long a write waits for another process's transaction.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    path: str = ".provender/online.db"
    busy_timeout_seconds: float = Field(default=30.0, gt=0)


class SQLiteStore:
    """Online rows in one SQLite file; see the module docstring for the layout."""

    capabilities = StoreCapabilities(is_shared=True, is_persistent=True)
    config_model: ClassVar[type[BaseModel]] = SQLiteConfig

    def __init__(self, path: Path, *, project: str = DEFAULT_PROJECT, busy_timeout_seconds: float = 30.0) -> None:
        self.path = path
        self.project = project
        self._timeout = busy_timeout_seconds
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BackendError(
                f"SQLite online store {str(path)!r}: cannot create its folder {str(path.parent)!r}: {exc}"
            ) from exc
        with self._errors("open"):
            self._connection().execute(_SCHEMA)
            self._connection().execute(_SCHEMA_TABLES)
            self._connection().execute(_TILES_SCHEMA)

    @classmethod
    def from_options(cls, options: Mapping[str, object], *, base_dir: Path, project: str = DEFAULT_PROJECT) -> Self:
        """Open (creating if needed) the database at ``path`` (default ``.provender/online.db``)."""
        config = validate_backend_config(SQLiteConfig, "online", {k: v for k, v in options.items() if k != "store"})
        assert isinstance(config, SQLiteConfig)
        return cls(
            cls.local_file(options, base_dir=base_dir),
            project=project,
            busy_timeout_seconds=config.busy_timeout_seconds,
        )

    @staticmethod
    def local_file(options: Mapping[str, object], *, base_dir: Path) -> Path:
        """The database file ``options`` name, resolved against ``base_dir`` (it may not exist yet).

        A reader that must create nothing (``provender ui``) checks that it exists before opening.
        """
        config = validate_backend_config(SQLiteConfig, "online", {k: v for k, v in options.items() if k != "store"})
        assert isinstance(config, SQLiteConfig)
        path = Path(config.path).expanduser()
        return path if path.is_absolute() else base_dir / path

    def write(self, table: FeatureTable, rows: pa.Table) -> int:
        """Upsert the newest row per key under the event-time guard, in one transaction."""
        batch = encode_batch(table, rows)
        if not batch.keys:
            return 0
        project, name = self.project, table.name
        params = [(project, name, key, packed) for key, packed in zip(batch.keys, batch.rows, strict=True)]
        connection = self._connection()
        with self._errors(f"write to feature table {table.name!r}"):
            connection.execute("BEGIN IMMEDIATE")
            try:
                cursor = connection.executemany(_UPSERT, params)
                written = cursor.rowcount
                connection.execute(_UPSERT_TABLE, (project, name, max(batch.event_us), now_micros()))
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:  # SQLite may have rolled back already (e.g. disk full)
                    connection.execute("ROLLBACK")
                raise
        return written

    def read(self, requests: Sequence[ReadRequest]) -> list[list[StoredRow | None]]:
        """Return each request's stored rows, aligned with its keys."""
        connection = self._connection()
        result: list[list[StoredRow | None]] = []
        with self._errors("read"):
            for request in requests:
                decode, keys = codec_for(request.table).decode, request.keys
                head = (self.project, request.table.name)
                if len(keys) == 1:
                    found = connection.execute(_SELECT_ONE, (*head, keys[0])).fetchone()
                    result.append([decode(found[0], keys[0]) if found else None])
                    continue
                stored: dict[bytes, bytes] = {}
                # Duplicates are harmless in IN (...); remove them only when it saves queries.
                distinct = keys if len(keys) <= _KEYS_PER_QUERY else list(dict.fromkeys(keys))
                for start in range(0, len(distinct), _KEYS_PER_QUERY):
                    chunk = distinct[start : start + _KEYS_PER_QUERY]
                    padding = repeat(chunk[-1], _bucket(len(chunk)) - len(chunk))
                    stored.update(connection.execute(_select_many(_bucket(len(chunk))), (*head, *chunk, *padding)))
                get = stored.get
                result.append([decode(get(key), key) for key in keys])
        return result

    def freshness(self, tables: Sequence[str]) -> dict[str, TableFreshness]:
        """Read the named tables' freshness rows (one query per 2,048 tables)."""
        connection = self._connection()
        found: dict[str, TableFreshness] = {}
        names = list(dict.fromkeys(tables))
        with self._errors("read freshness"):
            for start in range(0, len(names), _KEYS_PER_QUERY):
                chunk = names[start : start + _KEYS_PER_QUERY]
                rows = connection.execute(_select_tables(len(chunk)), (self.project, *chunk))
                for name, newest, written in rows:
                    found[name] = TableFreshness.from_micros(newest, written)
        return found

    def read_tiles(
        self, table: FeatureTable, layout: TileLayout, keys: Sequence[bytes], fields: Sequence[bytes]
    ) -> list[list[bytes | None]]:
        """Per key, the values of ``fields`` of its tile record (``tiles.py``)."""
        connection = self._connection()
        head = (self.project, f"{table.name}#{layout.id}")
        result = []
        with self._errors(f"read the tiles of feature table {table.name!r}"):
            for key in keys:
                record = dict(connection.execute(_TILE_SELECT, (*head, key)).fetchall())
                result.append([record.get(field) for field in fields])
        return result

    def update_tiles(
        self,
        table: FeatureTable,
        layout: TileLayout,
        keys: Sequence[bytes],
        fields: Sequence[Sequence[bytes]],
        merge: TileMerge,
    ) -> None:
        """Read, merge and write every key's tile record in one ``BEGIN IMMEDIATE`` transaction."""
        connection = self._connection()
        head = (self.project, f"{table.name}#{layout.id}")
        with self._errors(f"write the tiles of feature table {table.name!r}"):
            connection.execute("BEGIN IMMEDIATE")
            try:
                for index, key in enumerate(keys):
                    record = dict(connection.execute(_TILE_SELECT, (*head, key)).fetchall())
                    update = merge(index, [record.get(field) for field in fields[index]])
                    if update is None:
                        continue
                    connection.executemany(_TILE_SET, [(*head, key, f, v) for f, v in update.set.items()])
                    connection.executemany(_TILE_APPEND, [(*head, key, f, v) for f, v in update.append.items()])
                    connection.executemany(_TILE_DELETE, [(*head, key, f) for f in update.delete])
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise

    def ping(self) -> None:
        """Run ``SELECT 1``."""
        with self._errors("ping"):
            self._connection().execute("SELECT 1").fetchone()

    def delete_table(self, table: FeatureTable) -> int:
        """Delete the table's rows in this project."""
        connection = self._connection()
        with self._errors(f"delete feature table {table.name!r}"):
            connection.execute("BEGIN IMMEDIATE")
            cursor = connection.execute(
                "DELETE FROM online_rows WHERE project = ? AND feature_table = ?", (self.project, table.name)
            )
            deleted = cursor.rowcount
            connection.execute(
                "DELETE FROM online_tables WHERE project = ? AND feature_table = ?", (self.project, table.name)
            )
            connection.execute(
                "DELETE FROM online_tiles WHERE project = ? AND feature_table LIKE ? ESCAPE '\\'",
                (self.project, table.name.replace("_", "\\_") + "#%"),
            )
            connection.execute("COMMIT")
        return deleted

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            return connection
        with self._lock:
            if self._closed:
                raise BackendError(f"the SQLite online store {str(self.path)!r} is closed")
            with self._errors("open"):
                connection = sqlite3.connect(
                    self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
                )
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")
                # Reads through a memory map skip a copy per page: 100-key reads about 1.3x faster
                # (benchmarks/online_read.py). Address space only; pages are the OS's file cache.
                connection.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")
            self._connections.append(connection)
        self._local.connection = connection
        return connection

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            message = str(exc)
            retryable = "locked" in message or "busy" in message
            hint = ""
            if "unable to open" in message or "readonly" in message or "read-only" in message:
                hint = f" (check that the folder {str(self.path.parent)!r} exists and that this user may write to it)"
            raise BackendError(
                f"SQLite online store {str(self.path)!r}: {what} failed: {message}{hint}", retryable=retryable
            ) from exc
        except sqlite3.DatabaseError as exc:
            raise BackendError(f"SQLite online store {str(self.path)!r}: {what} failed: {exc}") from exc
