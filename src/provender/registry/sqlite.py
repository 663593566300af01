"""The embedded registry: one SQLite file (``registry: sqlite:///.provender/registry.db``).

``sqlite:///relative/path.db`` is relative to the project directory and
``sqlite:////absolute/path.db`` is absolute. Updates run in ``BEGIN IMMEDIATE`` transactions,
which take SQLite's write lock before reading, so applies from several processes serialize and
none is lost; readers never block (WAL).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Self

from provender.definitions import Entity, FeatureTable
from provender.errors import BackendError, ConfigError
from provender.registry import codec
from provender.registry.store import DEFAULT_PROJECT, ProjectInfo, RegistryChange, RegistrySnapshot

_SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    name TEXT PRIMARY KEY, version INTEGER NOT NULL, updated_at TEXT);
CREATE TABLE IF NOT EXISTS definitions (
    project TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, spec TEXT NOT NULL,
    PRIMARY KEY (project, kind, name));
CREATE TABLE IF NOT EXISTS changes (
    project TEXT NOT NULL, version INTEGER NOT NULL, changed_at TEXT NOT NULL, description TEXT NOT NULL,
    PRIMARY KEY (project, version));
"""
_LOCK_TIMEOUT_SECONDS = 60.0


def path_from_url(url: str, *, base_dir: Path) -> Path:
    """Return the file path of a ``sqlite:///...`` URL, resolved against ``base_dir``."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url == prefix:
        raise ConfigError("registry", f"{url!r} is not a SQLite URL; expected 'sqlite:///path/to/registry.db'")
    path = Path(url.removeprefix(prefix))
    return path if path.is_absolute() else base_dir / path


class SQLiteRegistry:
    """A registry kept in one SQLite file; safe across threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                path, timeout=_LOCK_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
            )
            self._set_up()
        except (sqlite3.Error, OSError) as exc:
            raise BackendError(f"cannot open the SQLite registry at {path}: {exc}") from exc

    def _set_up(self) -> None:
        # Processes opening a new file together race to switch it to WAL, and SQLite answers
        # SQLITE_BUSY at once, without waiting (that could deadlock): retry until the timeout.
        deadline = time.monotonic() + _LOCK_TIMEOUT_SECONDS
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
                self._conn.executescript(_SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    @classmethod
    def from_url(cls, url: str, *, base_dir: Path) -> Self:
        """Open the registry file named by ``sqlite:///path`` (created if missing)."""
        return cls(path_from_url(url, base_dir=base_dir))

    def read(self, project: str) -> RegistrySnapshot:
        """Return the project's current snapshot."""
        with self._lock:
            # One read transaction, so the version and the definitions come from the same commit.
            self._conn.execute("BEGIN")
            try:
                return self._read(project)
            finally:
                self._conn.execute("COMMIT")

    def update(self, project: str, decide: Callable[[RegistrySnapshot], RegistryChange]) -> RegistrySnapshot:
        """Apply ``decide(latest)`` in one write transaction; nothing is written if it raises."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise BackendError(f"registry {self.path} is locked: {exc}", retryable=True) from exc
            try:
                snapshot = self._read(project)
                change = decide(snapshot)
                if change.is_empty:
                    self._conn.execute("ROLLBACK")
                    return snapshot
                self._write(project, snapshot.version + 1, change)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            return self._read(project)

    def list_projects(self) -> list[ProjectInfo]:
        """Return ``default`` and every project written to, sorted by name."""
        with self._lock:
            rows = self._conn.execute("SELECT name, version, updated_at FROM projects").fetchall()
        projects = {name: ProjectInfo(name=name, version=v, updated_at=_parse_time(at)) for name, v, at in rows}
        projects.setdefault(DEFAULT_PROJECT, ProjectInfo(name=DEFAULT_PROJECT, version=0, updated_at=None))
        return sorted(projects.values(), key=lambda p: p.name)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    def _read(self, project: str) -> RegistrySnapshot:
        row = self._conn.execute("SELECT version, updated_at FROM projects WHERE name = ?", (project,)).fetchone()
        entities: dict[str, Entity] = {}
        tables: dict[str, FeatureTable] = {}
        for (spec,) in self._conn.execute(
            "SELECT spec FROM definitions WHERE project = ? ORDER BY kind, name", (project,)
        ):
            definition = codec.from_json(spec)
            if isinstance(definition, Entity):
                entities[definition.name] = definition
            else:
                tables[definition.name] = definition
        return RegistrySnapshot(
            project=project,
            version=row[0] if row else 0,
            updated_at=_parse_time(row[1]) if row else None,
            entities=MappingProxyType(entities),
            feature_tables=MappingProxyType(tables),
        )

    def _write(self, project: str, version: int, change: RegistryChange) -> None:
        now = datetime.now(UTC).isoformat()
        self._conn.execute(
            "INSERT INTO projects (name, version, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at",
            (project, version, now),
        )
        for definition in change.put:
            kind = "entity" if isinstance(definition, Entity) else "feature_table"
            self._conn.execute(
                "INSERT OR REPLACE INTO definitions (project, kind, name, spec) VALUES (?, ?, ?, ?)",
                (project, kind, definition.name, codec.to_json(definition)),
            )
        deletes = [("entity", n) for n in change.delete_entities]
        deletes += [("feature_table", n) for n in change.delete_feature_tables]
        for kind, name in deletes:
            self._conn.execute(
                "DELETE FROM definitions WHERE project = ? AND kind = ? AND name = ?", (project, kind, name)
            )
        self._conn.execute(
            "INSERT INTO changes (project, version, changed_at, description) VALUES (?, ?, ?, ?)",
            (project, version, now, change.description),
        )


def _parse_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)
