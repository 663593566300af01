"""An in-process online store: a dict behind a lock. A real store for tests and notebooks.

It passes the same contract suite as SQLite and Redis, holds the same packed rows, and is
gone when the process ends (``online: {store: memory}``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar, Self

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from provender.config import validate_backend_config
from provender.definitions import FeatureTable
from provender.online.codec import VERSION_BYTES, StoredRow, codec_for, encode_batch
from provender.online.store import DEFAULT_PROJECT, ReadRequest, StoreCapabilities, TableFreshness, now_micros
from provender.online.tiles import TileLayout, TileMerge


class MemoryConfig(BaseModel):
    """``online: {store: memory}`` takes no other options."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class MemoryStore:
    """The latest packed row per (feature table, entity key), in a dict."""

    capabilities = StoreCapabilities()
    config_model: ClassVar[type[BaseModel]] = MemoryConfig

    def __init__(self, *, project: str = DEFAULT_PROJECT) -> None:
        self.project = project
        self._rows: dict[tuple[str, bytes], bytes] = {}
        self._fresh: dict[str, tuple[int, int]] = {}  # table -> (newest event, last write), in us
        self._tiles: dict[tuple[str, str, bytes], dict[bytes, bytes]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_options(cls, options: Mapping[str, object], *, base_dir: Path, project: str = DEFAULT_PROJECT) -> Self:
        """Create an empty store (there are no options)."""
        del base_dir  # nothing is kept in files
        validate_backend_config(MemoryConfig, "online", {k: v for k, v in options.items() if k != "store"})
        return cls(project=project)

    def write(self, table: FeatureTable, rows: pa.Table) -> int:
        """Store the newest row per key unless a newer one is stored (see ``store.py``)."""
        batch = encode_batch(table, rows)
        name, written = table.name, 0
        if not batch.keys:
            return 0
        newest = max(batch.event_us)
        with self._lock:
            old_newest = self._fresh.get(name, (newest, 0))[0]
            self._fresh[name] = (max(newest, old_newest), now_micros())
            for key, packed in zip(batch.keys, batch.rows, strict=True):
                old = self._rows.get((name, key))
                if old is None or packed[:VERSION_BYTES] >= old[:VERSION_BYTES]:
                    self._rows[(name, key)] = packed
                    written += 1
        return written

    def read(self, requests: Sequence[ReadRequest]) -> list[list[StoredRow | None]]:
        """Return each request's stored rows, aligned with its keys."""
        result = []
        for request in requests:
            decode, name = codec_for(request.table).decode, request.table.name
            get = self._rows.get
            result.append([decode(get((name, key)), key) for key in request.keys])
        return result

    def freshness(self, tables: Sequence[str]) -> dict[str, TableFreshness]:
        """Return the freshness recorded by :meth:`write` for the named tables."""
        with self._lock:
            return {t: TableFreshness.from_micros(*self._fresh[t]) for t in tables if t in self._fresh}

    def read_tiles(
        self, table: FeatureTable, layout: TileLayout, keys: Sequence[bytes], fields: Sequence[bytes]
    ) -> list[list[bytes | None]]:
        """Per key, the values of ``fields`` of its tile record (``tiles.py``)."""
        with self._lock:
            records = [self._tiles.get((table.name, layout.id, key), {}) for key in keys]
            return [[record.get(field) for field in fields] for record in records]

    def update_tiles(
        self,
        table: FeatureTable,
        layout: TileLayout,
        keys: Sequence[bytes],
        fields: Sequence[Sequence[bytes]],
        merge: TileMerge,
    ) -> None:
        """Read, merge and write each key's tile record under the store's lock."""
        with self._lock:
            for index, key in enumerate(keys):
                record = self._tiles.setdefault((table.name, layout.id, key), {})
                update = merge(index, [record.get(field) for field in fields[index]])
                if update is None:
                    continue
                record.update(update.set)
                for field, data in update.append.items():
                    record[field] = record.get(field, b"") + data
                for field in update.delete:
                    record.pop(field, None)

    def ping(self) -> None:
        """Always ready."""

    def delete_table(self, table: FeatureTable) -> int:
        """Delete the table's rows."""
        with self._lock:
            doomed = [key for key in self._rows if key[0] == table.name]
            for key in doomed:
                del self._rows[key]
            self._fresh.pop(table.name, None)
            for tiles in [key for key in self._tiles if key[0] == table.name]:
                del self._tiles[tiles]
        return len(doomed)

    def close(self) -> None:
        """Drop every row."""
        with self._lock:
            self._rows.clear()
            self._fresh.clear()
            self._tiles.clear()
