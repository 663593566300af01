"""The online store seam: the latest feature values per (project, feature table, entity key).

Every store follows the same rules, checked by ``tests/contract/test_online_store.py``:

* **Event-time guard.** A write never replaces a stored row whose ``(event_timestamp,
  created_timestamp)`` is newer (a missing created time ranks lowest); an equal version is
  overwritten, so a batch behaves as if its rows were written in order. Within one batch the
  newest row per key wins. Batch and stream ingestion can therefore run in any order, and
  writers can race, and all converge to the newest values.
* **Atomic per entity key.** A key's row is replaced whole or not at all.
* **Projects are separate.** A store is opened for one project and sees only its rows.
* **Tiles.** Windowed aggregations kept fresh by stream ingestion live in per-key tile records
  (``tiles.py``), read and merged atomically per key (:meth:`OnlineStore.update_tiles`).
* Stored bytes are the packed rows of ``codec.py`` and keys those of ``keys.py``, shared by all
  stores, so every store holds and returns exactly the same values.
* **Freshness per table.** Every write also keeps, per table, the newest event time written and
  when the last write happened (one small record per table, updated with the batch), so
  :meth:`OnlineStore.freshness` answers for any number of tables in one cheap read, never a scan.

Backends (``memory.py``, ``sqlite.py``, ``redis.py``) are found through the
``provender.online_stores`` entry points (``backends.py``); each validates its own options.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar, Protocol, Self

import pyarrow as pa
from pydantic import BaseModel

from provender.definitions import FeatureTable
from provender.online.codec import StoredRow
from provender.online.tiles import TileLayout, TileMerge

DEFAULT_PROJECT = "default"


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreCapabilities:
    """What a store can do beyond the contract, as data: callers and tests ask these, never a name.

    A store's ``capabilities`` may depend on its options, so read them from an opened store.

    Attributes:
        supports_key_expiry: this store expires values ``max_age`` after their event time
            (Redis with ``key_ttl_from_max_age: true``; never rows of a table with
            aggregations); expired values read as NOT_FOUND.
        is_shared: several processes on this machine may open the same store and see each
            other's writes.
        is_persistent: values survive closing and reopening the store.
        reachable_from_executors: processes on other machines (Spark executors) can open the
            store from the same options and write to it (a network server, not a local file).
        async_reads: the store also has ``async def read_async(requests)`` (:class:`AsyncReads`),
            the same read awaited on the running event loop without blocking it.
    """

    supports_key_expiry: bool = False
    is_shared: bool = False
    is_persistent: bool = False
    reachable_from_executors: bool = False
    async_reads: bool = False


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """Read one feature table's rows for some entity keys.

    Attributes:
        table: the feature table (its name and schema select the rows).
        keys: encoded entity keys (``keys.py``), one per entity row; duplicates are allowed.
    """

    table: FeatureTable
    keys: Sequence[bytes]


@dataclass(frozen=True, slots=True)
class TableFreshness:
    """How fresh one feature table's online values are, as its store recorded on write.

    Attributes:
        newest_event: the newest ``event_timestamp`` of any row written to the table (UTC).
            Values expired since (``key_ttl_from_max_age``) are not subtracted.
        written_at: when a batch of the table was last written (the writer's clock, UTC).
    """

    newest_event: datetime
    written_at: datetime

    @classmethod
    def from_micros(cls, newest_event_us: int, written_at_us: int) -> TableFreshness:
        """Build from microseconds since the Unix epoch (as the stores keep them)."""
        return cls(_EPOCH + timedelta(microseconds=newest_event_us), _EPOCH + timedelta(microseconds=written_at_us))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def now_micros() -> int:
    """The current time in microseconds since the Unix epoch (a write's ``written_at``)."""
    return (datetime.now(UTC) - _EPOCH) // timedelta(microseconds=1)


class OnlineStore(Protocol):
    """Where the latest feature values live, for serving.

    Stores are synchronous and thread-safe: one instance may serve many threads.
    """

    capabilities: StoreCapabilities
    config_model: ClassVar[type[BaseModel]]
    """The pydantic model of the store's options (the ``online:`` section without ``store``)."""

    @classmethod
    def from_options(cls, options: Mapping[str, object], *, base_dir: Path, project: str = DEFAULT_PROJECT) -> Self:
        """Open the store configured by the ``online:`` section, for ``project``.

        Args:
            options: the section's keys (a ``store`` key is ignored); validated against the
                backend's pydantic config, so a typo fails naming the key, with a hint.
            base_dir: relative paths are resolved against it.
            project: the project (namespace) whose rows this instance reads and writes.

        Raises:
            ConfigError: an unknown or invalid option.
        """
        ...

    def write(self, table: FeatureTable, rows: pa.Table) -> int:
        """Store a normalized batch of ``table``'s rows under the event-time guard.

        Args:
            table: the feature table the rows belong to.
            rows: one column per entity and per feature of ``table`` (named as they are, Arrow
                type ``ValueType.to_arrow()``), ``event_timestamp`` (timestamp[us, UTC], not
                null) and ``created_timestamp`` (timestamp[us, UTC], nullable). Several rows
                per entity key are allowed; the newest wins.

        Returns:
            How many entity keys were written (keys whose stored row was newer are skipped).

        Raises:
            DataError: a missing or mistyped column, or a null key or event time; nothing is
                written.
            BackendError: the store failed (``retryable`` for connection errors and timeouts);
                every key is either fully written or untouched, so re-running the batch is safe.
        """
        ...

    def read(self, requests: Sequence[ReadRequest]) -> list[list[StoredRow | None]]:
        """Read several tables for many entity keys, in one round trip to a remote store.

        Returns:
            For each request, a list aligned with its keys: the stored row, or None when
            there is none (or it was written under another schema of the table).

        Raises:
            BackendError: the store failed.
        """
        ...

    def freshness(self, tables: Sequence[str]) -> dict[str, TableFreshness]:
        """Return the recorded freshness of the named tables in this project, in one read.

        Tables never written (or deleted since) are left out. Cost: one query or command for
        all the tables, independent of how many rows they hold.

        Raises:
            BackendError: the store failed.
        """
        ...

    def read_tiles(
        self, table: FeatureTable, layout: TileLayout, keys: Sequence[bytes], fields: Sequence[bytes]
    ) -> list[list[bytes | None]]:
        """Per key, the values of ``fields`` of its tile record (``tiles.py``; None where absent).

        Raises:
            BackendError: the store failed.
        """
        ...

    def update_tiles(
        self,
        table: FeatureTable,
        layout: TileLayout,
        keys: Sequence[bytes],
        fields: Sequence[Sequence[bytes]],
        merge: TileMerge,
    ) -> None:
        """For each key, read ``fields[i]`` of its tile record, call ``merge(i, values)``, apply the change.

        Each key's read-merge-write is atomic: if another writer changed the record in between,
        the key is read and merged again (so ``merge`` may run more than once; its last answer
        counts). Fields appended to are extended without being read.

        Raises:
            BackendError: the store failed; keys whose change was applied keep it (the tile
                writer's replay guard makes re-running the batch safe).
        """
        ...

    def ping(self) -> None:
        """Check that the store answers (a readiness probe); raise BackendError if not."""
        ...

    def delete_table(self, table: FeatureTable) -> int:
        """Delete every stored row of ``table`` (and its freshness) in this project; return how many rows."""
        ...

    def close(self) -> None:
        """Release connections and files. The store must not be used afterwards."""
        ...


class AsyncReads(Protocol):
    """The read of a store whose ``capabilities.async_reads`` is true, awaited on an event loop."""

    async def read_async(self, requests: Sequence[ReadRequest]) -> list[list[StoredRow | None]]:
        """:meth:`OnlineStore.read` without blocking the running loop (same answer, same errors)."""
        ...


OnlineStoreFactory = Callable[[], OnlineStore]
"""A picklable callable opening the online store of one project (e.g. on a Spark executor)."""
