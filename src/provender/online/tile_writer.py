"""Apply a batch of events to their keys' tiles (``tiles.py``), with allowed lateness and replay guard.

For each entity key of a batch, one atomic update of its record (``TileStore.update_tiles``):

1. **replays** (a record whose stream offset is not above the key's last applied offset of its
   partition, ``o<p>``) are skipped: at-least-once delivery, each record counted once;
2. **too-late** events are skipped and counted: an event is too late when its time is more
   than ``allowed_lateness`` before the key's watermark (the latest event time applied for the
   key, ``w``), in arrival order. They still reach the offline log (the stream loop writes every
   record there), so historical retrieval counts them and the online value does not: the job
   reports how many (``records_too_late``);
3. the other events update their tile's state and are appended to its events; the watermark
   and the offsets move on; tiles that no read at or after ``watermark - allowed_lateness`` can
   reach (ending before ``watermark - allowed_lateness - longest window``) are deleted.

So reads at *T* >= ``watermark - allowed_lateness`` see every applied event of their window.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NamedTuple

import msgpack  # type: ignore[import-untyped]
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from provender.definitions import FeatureTable, ValueType, sketch
from provender.definitions.request import CREATED_TIMESTAMP, EVENT_TIMESTAMP, TIMESTAMP_TYPE
from provender.errors import BackendError, DataError
from provender.online.keys import arrow_keys
from provender.online.tiles import (
    BATCH_FLOOR,
    TILE_SET,
    WATERMARK,
    TileAppends,
    TileLayout,
    TileStore,
    TileUpdate,
    add_value,
    count_field,
    decode_events,
    decode_state,
    encode_event,
    encode_state,
    events_field,
    layout_for,
    merge_into,
    new_state,
    offset_field,
    state_field,
)

_pack = msgpack.Packer().pack
_unpackb = msgpack.unpackb
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
MAX_REBUILD_ATTEMPTS = 20
_NEVER_LATE = 2**61  # a lateness no event time difference reaches (times stay within int64 when subtracted)
EXACT_IN_LUA = 2**53
"""Times and offsets below this magnitude are exact as Lua numbers (doubles): the Redis script's domain."""


class TileReport(NamedTuple):
    """What one batch did to the tiles.

    Attributes:
        applied: events added to tiles.
        too_late: events skipped because they were later than the allowed lateness.
        replayed: records skipped because their offset was already applied.
    """

    applied: int
    too_late: int
    replayed: int


def _storage(value_type: ValueType) -> pa.DataType:
    if value_type is ValueType.UNIX_TIMESTAMP:
        return pa.int64()
    if value_type is ValueType.UNIX_TIMESTAMP_LIST:
        return pa.list_(pa.int64())
    return value_type.to_arrow()


class FoldedBatch(NamedTuple):
    """A batch folded by :meth:`TileWriter.fold`, for :meth:`TileWriter.write`.

    Attributes:
        batch: the batch folded per key (None: no rows).
        appends: the eligible keys' folded batches encoded for ``append_tiles`` (None when the
            store has no ``append_tiles`` or a time or offset is not exact in its script).
        members: the keys ``appends`` holds (indexes into ``batch.keys``, ascending).
    """

    batch: _Batch | None
    appends: TileAppends | None
    members: list[int]


class TileWriter:
    """Keeps one feature table's tiles fresh in a store.

    Args:
        store: the online store (its tile methods).
        table: the feature table (it has aggregations).
        allowed_lateness: how far behind a key's latest event time an event may be and still count.
    """

    def __init__(self, store: TileStore, table: FeatureTable, *, allowed_lateness: timedelta) -> None:
        layout = layout_for(table)
        if layout is None:
            raise DataError(f"Feature table {table.name!r} has no aggregations: it has no tiles to write.")
        self.store, self.table, self.layout = store, table, layout
        self.lateness_us = allowed_lateness // timedelta(microseconds=1)

    def apply(
        self, rows: pa.Table, partitions: Sequence[int] | None = None, offsets: Sequence[int] | None = None
    ) -> TileReport:
        """Add ``rows`` (normalized, in arrival order) to their keys' tiles: :meth:`write` of :meth:`fold`.

        Args:
            rows: the entity columns, the aggregations' input columns and ``event_timestamp``
                (``created_timestamp`` optional).
            partitions: each row's stream partition (with ``offsets``: replays are skipped).
            offsets: each row's offset in its partition.

        Raises:
            DataError: a missing column or a null key or event time.
            BackendError: the store failed (safe to retry: replays are skipped).
        """
        return self.write(self.fold(rows, partitions, offsets))

    def fold(
        self, rows: pa.Table, partitions: Sequence[int] | None = None, offsets: Sequence[int] | None = None
    ) -> FoldedBatch:
        """Fold ``rows`` per key and tile, vectorised, without touching the store (see :meth:`write`).

        A stream job folds a batch on its consumer thread while the writer thread waits for the
        store with the previous one. Arguments and errors as :meth:`apply`.
        """
        if not rows.num_rows:
            return FoldedBatch(None, None, [])
        guarded = partitions is not None and offsets is not None
        batch = _Batch.of(rows, self.table, self.layout, self.lateness_us, partitions if guarded else None, offsets)
        if getattr(self.store, "append_tiles", None) is None or not batch.exact_in_lua(
            self.lateness_us + self.layout.longest_us
        ):
            return FoldedBatch(batch, None, [])
        eligible = np.flatnonzero(batch.eligible)
        return FoldedBatch(batch, batch.appends(eligible), eligible.tolist())

    def write(self, folded: FoldedBatch) -> TileReport:
        """Apply a folded batch to the store.

        A store that can append without a read (``append_tiles``: Redis, one script call per
        chunk of keys) gets the eligible keys' partial states and events first; it refuses a key
        if one of its events is a replay or too late against what is stored. The refused keys,
        and every key on the other stores, are read and merged (``update_tiles``): with the
        partial states if nothing of the key is a replay or too late, else record by record in
        arrival order.

        Raises:
            BackendError: the store failed (safe to retry: replays are skipped).
        """
        batch = folded.batch
        if batch is None:
            return TileReport(0, 0, 0)
        reports: dict[int, TileReport] = {}
        pending = list(range(len(batch.keys)))
        compact: dict[int, list[int]] = {}
        fast_applied = fast_late = 0
        if folded.appends is not None:
            members, keys = folded.members, batch.keys
            append = self.store.append_tiles  # type: ignore[attr-defined]
            statuses = append(self.table, self.layout, [keys[k] for k in members], folded.appends, self.lateness_us)
            pending = np.flatnonzero(~batch.eligible).tolist()
            taken = np.zeros(len(keys), dtype=bool)
            for k, status in zip(members, statuses, strict=True):
                if status == 0:
                    pending.append(k)
                    continue
                taken[k] = True
                if isinstance(status, list) and status:
                    compact[k] = sorted(set(status))
            fast_applied, fast_late = int(batch.applied[taken].sum()), int(batch.late[taken].sum())
        if pending:
            self._merge(batch, pending, reports)
        if compact:
            self._compact(batch, compact)
        return TileReport(
            fast_applied + sum(r.applied for r in reports.values()),
            fast_late + sum(r.too_late for r in reports.values()),
            sum(r.replayed for r in reports.values()),
        )

    def _merge(self, batch: _Batch, members: list[int], reports: dict[int, TileReport]) -> None:
        """Read and merge the keys ``members`` of the batch (``update_tiles``)."""
        layout = self.layout
        fields = []
        for k in members:
            parts = sorted({p for p, _, _ in batch.offsets[k]})
            tiles = sorted({batch.events[i] // layout.tile_us for i in batch.rows[k]})
            fields.append([WATERMARK, TILE_SET, BATCH_FLOOR, *map(offset_field, parts), *map(state_field, tiles)])

        def merge(position: int, stored: list[bytes | None]) -> TileUpdate | None:
            k = members[position]
            record = _Record(layout, dict(zip(fields[position], stored, strict=True)))
            if batch.eligible[k] and record.accepts(batch.limits[k], batch.offsets[k], batch.earliest_list[k]):
                record.add_partials(batch, k)
                reports[k] = TileReport(int(batch.applied[k]), int(batch.late[k]), 0)
            else:
                reports[k] = self._add(record, batch, batch.rows[k])
            return record.update(self.lateness_us)

        self.store.update_tiles(self.table, layout, [batch.keys[k] for k in members], fields, merge)

    def rebuild(self, rows: pa.Table, end_us: int) -> int:
        """Rebuild the tiles of ``rows``' keys from a batch source's events, as of ``end_us``.

        For batch (offline-to-online) ingestion: ``rows`` holds every event of those keys with
        ``end - longest window - allowed lateness < event_timestamp <= end`` (all of a key's in one
        call). Each key's record is replaced by one holding these events, plus the events after
        ``end`` it already had (applied by a stream), with its offsets kept and the batch floor
        ``b = end``: a stream then adds only events after ``end`` (one at or before it is skipped
        and counted too late), so the online value at any *T* >= ``end`` equals the historical one.

        Returns:
            The number of keys rebuilt.
        """
        if not rows.num_rows:
            return 0
        batch = _Batch.of(rows, self.table, self.layout, _NEVER_LATE, None, None)  # folded: every event counts
        pending = list(range(len(batch.keys)))
        for _ in range(MAX_REBUILD_ATTEMPTS):
            if not pending:
                return len(batch.keys)
            pending = sorted(set(self._rebuild_round(batch, pending, end_us)))
        raise BackendError(
            f"the tiles of {len(pending)} key(s) of feature table {self.table.name!r} kept changing while "
            "batch ingestion rebuilt them; retry the job.",
            retryable=True,
        )

    def _rebuild_round(self, batch: _Batch, pending: list[int], end_us: int) -> list[int]:
        """Rebuild the keys ``pending``; return those a stream wrote between the two reads (to do again)."""
        size = self.layout.tile_us
        keys = [batch.keys[k] for k in pending]
        heads = self.store.read_tiles(self.table, self.layout, keys, [WATERMARK, TILE_SET])
        fields = []
        for watermark, present in heads:
            newest = -1 if watermark is None else _unpackb(watermark) // size
            old = [] if present is None else _unpackb(present)
            after = [events_field(t) for t in old if end_us // size <= t <= newest]  # may hold events after end
            fields.append([WATERMARK, TILE_SET, *after])
        changed: list[int] = []

        def merge(i: int, stored: list[bytes | None]) -> TileUpdate | None:
            k = pending[i]
            if stored[:2] != list(heads[i]):  # a stream wrote the key meanwhile: read it again
                changed.append(k)
                return None
            return self._rebuilt(batch, k, stored, end_us)

        self.store.update_tiles(self.table, self.layout, keys, fields, merge)
        return changed

    def _rebuilt(self, batch: _Batch, k: int, stored: list[bytes | None], end_us: int) -> TileUpdate:
        """Key ``k``'s record rebuilt from its folded batch rows and its stored events after ``end_us``."""
        old_watermark = None if stored[0] is None else _unpackb(stored[0])
        old_tiles = set() if stored[1] is None else set(_unpackb(stored[1]))
        record = _Record(self.layout, {WATERMARK: None, TILE_SET: None})
        record.add_partials(batch, k)
        for packed in stored[2:]:
            for event in [] if packed is None else decode_events(packed):
                if event[0] > end_us:
                    record.add(event[0], event[1], tuple(event[2:]))
        if old_watermark is not None and record.watermark is not None and old_watermark > record.watermark:
            record.watermark = old_watermark
        update = record.update(self.lateness_us)
        assert update is not None
        changes = dict(update.set)
        changes.update(update.append)  # the events replace the stored ones
        changes[BATCH_FLOOR] = bytes(_pack(end_us))
        doomed = {f for t in old_tiles for f in (state_field(t), events_field(t), count_field(t))}
        doomed |= set(update.delete)
        doomed |= {count_field(t) for t in record.present}
        return TileUpdate(changes, {}, sorted(doomed - set(changes)))

    def _compact(self, batch: _Batch, compact: dict[int, list[int]]) -> None:
        """Rewrite the named tiles' states (several appended) as one, so reads decode one per tile."""
        members = list(compact)
        fields = [[state_field(tile) for tile in compact[k]] for k in members]

        def merge(position: int, stored: list[bytes | None]) -> TileUpdate | None:
            changes: dict[bytes, bytes] = {}
            deleted: list[bytes] = []
            for tile, packed in zip(compact[members[position]], stored, strict=True):
                if packed is not None:
                    changes[state_field(tile)] = encode_state(decode_state(packed))
                    deleted.append(count_field(tile))
            return TileUpdate(changes, {}, deleted) if changes else None

        self.store.update_tiles(self.table, self.layout, [batch.keys[k] for k in members], fields, merge)

    def _add(self, record: _Record, batch: _Batch, indexes: Sequence[int]) -> TileReport:
        """Add a key's rows of the batch to its record, in arrival order (replays and late ones skipped)."""
        applied = too_late = replayed = 0
        partitions, offsets = batch.partitions, batch.partition_offsets
        for i in indexes:
            if partitions is not None and offsets is not None and not record.take_offset(partitions[i], offsets[i]):
                replayed += 1
                continue
            event = batch.events[i]
            watermark = record.watermark
            if (watermark is not None and event < watermark - self.lateness_us) or (
                record.floor is not None and event <= record.floor
            ):
                too_late += 1
                continue
            record.add(event, batch.created[i], batch.values[i])
            applied += 1
        return TileReport(applied, too_late, replayed)


@dataclass
class _Batch:
    """A batch folded per key (vectorised): what each key's record gets if nothing of it is late or replayed.

    Per key ``k`` (``keys[k]``): ``rows[k]``, its rows in arrival order; ``late[k]``, how many
    of them are too late against the key's earlier rows of the batch alone (more than the
    lateness behind their running maximum); ``applied[k]``, the others; ``limits[k]``, the
    highest stored watermark under which none of those others is too late (their earliest time
    plus the lateness); ``latest[k]``, the batch's latest event time; ``offsets[k]``, per
    partition (first offset, last offset); ``eligible[k]``, whether its offsets increase in each
    partition (else it is merged record by record); ``tiles[k]``, per tile its partial state
    (over the applied rows) and its applied rows' encoded events, in arrival order.

    The per-key figures are numpy arrays (the fast path, :meth:`appends`, stays vectorised);
    the Python lists the merge path wants are made only when asked for.
    """

    keys: list[bytes]
    order: np.ndarray  # the rows by key (arrival order kept within a key)
    starts: np.ndarray  # where each key's rows start in ``order``
    late: np.ndarray
    applied: np.ndarray
    earliest_applied: np.ndarray  # per key, the earliest time of its rows not late in the batch
    latest: np.ndarray
    earliest: np.ndarray
    lateness_us: int
    offset_groups: _Offsets
    eligible: np.ndarray
    fold: _Fold
    partitions: Sequence[int] | None
    partition_offsets: Sequence[int] | None
    magnitude: int  # the largest magnitude of an event time or offset

    @functools.cached_property
    def rows(self) -> list[list[int]]:
        """Per key, its rows in arrival order."""
        order = self.order.tolist()
        bounds = np.append(self.starts, len(order)).tolist()
        return [order[bounds[k] : bounds[k + 1]] for k in range(len(self.keys))]

    @functools.cached_property
    def limits(self) -> list[int]:
        """Per key, the highest stored watermark under which none of its rows not late in the batch is."""
        return [m + self.lateness_us for m in self.earliest_applied.tolist()]  # Python ints: no overflow

    @functools.cached_property
    def latest_list(self) -> list[int]:
        """Per key, the batch's latest event time (Python ints)."""
        values: list[int] = self.latest.tolist()
        return values

    @functools.cached_property
    def earliest_list(self) -> list[int]:
        """Per key, the batch's earliest event time (Python ints)."""
        values: list[int] = self.earliest.tolist()
        return values

    @property
    def offsets(self) -> list[list[tuple[int, int, int]]]:
        """Per key, per partition (partition, first offset, last offset)."""
        return self.offset_groups.per_key

    @property
    def tiles(self) -> list[list[tuple[int, int]]]:
        """Per key, its groups of the fold: (tile, group)."""
        return self.fold.by_key(len(self.keys))

    @property
    def events(self) -> list[int]:
        """Per row, its event time (microseconds)."""
        return self.fold.rows.event_list

    @property
    def created(self) -> list[int | None]:
        """Per row, its created time (microseconds) or None."""
        return self.fold.rows.created

    @property
    def values(self) -> list[tuple[Any, ...]]:
        """Per row, its input values."""
        return self.fold.rows.values

    def exact_in_lua(self, reach: int) -> bool:
        """Whether every time (give or take ``reach``) and offset is exact as a Lua number."""
        return self.magnitude + reach < EXACT_IN_LUA

    def appends(self, members: np.ndarray) -> TileAppends:
        """The folded batches of keys ``members`` (ascending), encoded for a store that appends without a read.

        Column by column (``tiles.TileAppends``), each column's rows in key order, built at once:
        fixed-width items as byte matrices, the states and events as the fold's framed blobs. No
        Python object per key. Only when :meth:`exact_in_lua` holds.
        """
        fold, offsets = self.fold, self.offset_groups
        n = len(members)
        rank = np.full(len(self.keys), -1, dtype=np.int64)
        rank[members] = np.arange(n)
        group_keys, group_tiles = fold.group_keys_array, fold.group_tiles_array
        taken = rank[group_keys] >= 0
        chosen = np.flatnonzero(taken)
        tiles, tile_index = np.unique(group_tiles[chosen], return_inverse=True)
        entries = np.flatnonzero(rank[offsets.entry_keys] >= 0)
        parts, part_index = np.unique(offsets.entry_parts[entries], return_inverse=True)
        parts_per_key = np.bincount(rank[offsets.entry_keys[entries]], minlength=n)
        groups_per_key = np.bincount(rank[group_keys[chosen]], minlength=n)
        latest = self.latest[members]
        heads = _Bytes.join(
            _Bytes.ints(self.earliest_applied[members] + self.lateness_us),
            _Bytes.ints(latest),
            _Bytes.short_str(_Bytes.ints(latest)),
            _Bytes.ints(self.earliest[members]),
            _Bytes.ints(parts_per_key),
            _Bytes.ints(groups_per_key),
        )
        items = _Bytes.join(
            _Bytes.ints(part_index.reshape(-1) + 1),
            _Bytes.ints(offsets.entry_lows[entries]),
            _Bytes.short_str(_Bytes.ints(offsets.highs[entries])),
        )
        groups = _Bytes.ints(tile_index.reshape(-1) + 1)
        states, state_bounds = _taken(*fold.state_blob(), taken)
        events, event_bounds = _taken(*fold.event_blob(), taken)
        group_bounds = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(groups_per_key, out=group_bounds[1:])
        entry_bounds = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(parts_per_key, out=entry_bounds[1:])
        return TileAppends(
            tiles=tiles.tolist(),
            partitions=[offset_field(p) for p in parts.tolist()],
            heads=heads.tobytes(),
            head_width=heads.shape[1],
            entries=items.tobytes(),
            entry_width=items.shape[1],
            groups=groups.tobytes(),
            group_width=groups.shape[1],
            states=states.tobytes(),
            events=events.tobytes(),
            entry_bounds=entry_bounds.tolist(),
            group_bounds=group_bounds.tolist(),
            state_bounds=state_bounds[group_bounds].tolist(),
            event_bounds=event_bounds[group_bounds].tolist(),
        )

    @classmethod
    def of(
        cls,
        rows: pa.Table,
        table: FeatureTable,
        layout: TileLayout,
        lateness_us: int,
        partitions: Sequence[int] | None,
        offsets: Sequence[int] | None,
    ) -> _Batch:
        """Fold ``rows`` (arrival order) per key and tile."""
        n = rows.num_rows
        encoded = arrow_keys(rows, table.entities).dictionary_encode()
        key_ids = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        keys: list[bytes] = encoded.dictionary.to_pylist()
        micros = _micros(rows, EVENT_TIMESTAMP, table.name)
        if micros.null_count:
            raise DataError(f"rows for feature table {table.name!r}: {EVENT_TIMESTAMP!r} has nulls.")
        events = micros.to_numpy(zero_copy_only=False)
        if CREATED_TIMESTAMP in rows.column_names:
            created_micros = _micros(rows, CREATED_TIMESTAMP, table.name)
            created_rank = created_micros.fill_null(_INT64_MIN).to_numpy(zero_copy_only=False)
            created_valid = created_micros.is_valid().to_numpy(zero_copy_only=False)
        else:
            created_micros = None
            created_rank = np.full(n, _INT64_MIN, np.int64)
            created_valid = np.zeros(n, dtype=bool)
        columns = []
        for name, value_type in zip(layout.columns, layout.column_types, strict=True):
            if name not in rows.column_names:
                raise DataError(f"rows for feature table {table.name!r} lack the column {name!r}.")
            column = pc.cast(rows.column(name), _storage(value_type))
            columns.append(column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column)
        order, late, starts = _too_late_in_batch(key_ids, events, lateness_us)
        ends = np.append(starts[1:], n)
        times = events[order]
        late_counts = np.add.reduceat(late.astype(np.int64), starts)
        key_offsets = _Offsets(len(keys), partitions, offsets, key_ids)
        magnitude = int(np.abs(events).max())
        if offsets is not None and len(offsets):
            magnitude = max(magnitude, int(np.abs(np.asarray(offsets, dtype=np.int64)).max()))
        rows_in = _Rows(events, created_rank, created_valid, created_micros, columns)
        fold = _Fold(layout, rows_in, order[~late], key_ids[order][~late])
        return cls(
            keys=keys,
            order=order,
            starts=starts,
            late=late_counts,
            applied=(ends - starts) - late_counts,
            earliest_applied=np.minimum.reduceat(np.where(late, _INT64_MAX, times), starts),
            latest=np.maximum.reduceat(times, starts),
            earliest=np.minimum.reduceat(times, starts),
            lateness_us=lateness_us,
            offset_groups=key_offsets,
            eligible=key_offsets.eligible,
            fold=fold,
            partitions=partitions,
            partition_offsets=offsets,
            magnitude=magnitude,
        )


class _Rows:
    """A batch's rows: times as numpy, input columns as Arrow; Python values made only when asked for."""

    def __init__(
        self,
        events: np.ndarray,
        created_rank: np.ndarray,
        created_valid: np.ndarray,
        created: pa.Array | None,
        columns: list[pa.Array],
    ) -> None:
        self.events = events  # int64 microseconds
        self.created_rank = created_rank  # int64 microseconds, the lowest int64 where null
        self.created_valid = created_valid
        self._created = created
        self.columns = columns  # the input columns, as stored

    @functools.cached_property
    def event_list(self) -> list[int]:
        """The event times as Python ints."""
        values: list[int] = self.events.tolist()
        return values

    @functools.cached_property
    def created(self) -> list[int | None]:
        """The created times as Python ints (None where null)."""
        if self._created is None:
            return [None] * len(self.events)
        values: list[int | None] = self._created.to_pylist()
        return values

    @functools.cached_property
    def lists(self) -> list[list[Any]]:
        """The input columns as Python values."""
        return [column.to_pylist() for column in self.columns]

    @functools.cached_property
    def values(self) -> list[tuple[Any, ...]]:
        """Per row, its input values."""
        return list(zip(*self.lists, strict=True))


def _too_late_in_batch(key_ids: np.ndarray, events: np.ndarray, lateness_us: int) -> tuple[Any, Any, Any]:
    """The rows by key (arrival order kept), which are too late against their key's earlier rows, key starts.

    Times are replaced by their ranks so that ``key * ranks + rank`` orders by key first: one
    cumulative maximum gives, for every key at once, the running maximum of its earlier rows.
    """
    n = len(key_ids)
    order = np.argsort(key_ids, kind="stable")
    by_key, times = key_ids[order], events[order]
    first = np.ones(n, dtype=bool)
    first[1:] = by_key[1:] != by_key[:-1]
    distinct_times, rank = np.unique(times, return_inverse=True)
    span = len(distinct_times)
    running = np.maximum.accumulate(by_key * span + rank.reshape(-1))
    earlier = np.zeros(n, dtype=np.int64)
    earlier[1:] = running[:-1] - by_key[1:] * span
    earlier[first] = 0
    late = ~first & (times < distinct_times[earlier] - lateness_us)
    return order, late, np.flatnonzero(first)


class _Offsets:
    """Per key, per partition of its rows: (partition, first offset, last offset), flat and sorted by key."""

    def __init__(
        self, keys: int, partitions: Sequence[int] | None, offsets: Sequence[int] | None, key_ids: np.ndarray
    ) -> None:
        self.eligible = np.ones(keys, dtype=bool)  # whether the key's offsets rise within each partition
        self.keys = keys
        empty = np.zeros(0, dtype=np.int64)
        # per entry (sorted by key, then partition): its key, partition, first and last offset
        self.entry_keys, self.entry_parts, self.entry_lows, self.highs = empty, empty, empty, empty
        if partitions is None or offsets is None:
            return
        n = len(key_ids)
        parts = np.asarray(partitions, dtype=np.int64)
        offs = np.asarray(offsets, dtype=np.int64)
        order = np.lexsort((np.arange(n), parts, key_ids))
        pk, pp, op = key_ids[order], parts[order], offs[order]
        group = np.ones(n, dtype=bool)
        group[1:] = (pk[1:] != pk[:-1]) | (pp[1:] != pp[:-1])
        rising = np.ones(n, dtype=bool)
        rising[1:] = group[1:] | (op[1:] > op[:-1])
        self.eligible[pk[~rising]] = False
        starts = np.flatnonzero(group)
        ends = np.append(starts[1:], n) - 1
        self.entry_keys, self.entry_parts, self.entry_lows, self.highs = pk[starts], pp[starts], op[starts], op[ends]

    @functools.cached_property
    def per_key(self) -> list[list[tuple[int, int, int]]]:
        """Per key, its (partition, first offset, last offset)."""
        flat = list(zip(self.entry_parts.tolist(), self.entry_lows.tolist(), self.highs.tolist(), strict=True))
        bounds = np.searchsorted(self.entry_keys, np.arange(self.keys + 1)).tolist()
        return [flat[bounds[k] : bounds[k + 1]] for k in range(self.keys)]


class _Fold:
    """A batch's applied rows grouped by (key, tile): per group its partial state and encoded events.

    Columns of numbers, booleans and times (and no distinct values kept) are folded with numpy
    and encoded at once (:class:`_Msgpack`, one blob with each group's bounds); the others
    through Python values.
    """

    def __init__(self, layout: TileLayout, rows: _Rows, applied: np.ndarray, applied_keys: np.ndarray) -> None:
        tiles = rows.events[applied] // layout.tile_us
        regroup = np.lexsort((tiles, applied_keys))
        index = applied[regroup]
        group_keys, group_tiles = applied_keys[regroup], tiles[regroup]
        new_group = np.ones(len(index), dtype=bool)
        new_group[1:] = (group_keys[1:] != group_keys[:-1]) | (group_tiles[1:] != group_tiles[:-1])
        self.starts = np.flatnonzero(new_group)
        self.group_keys_array, self.group_tiles_array = group_keys[self.starts], group_tiles[self.starts]
        self.layout, self.rows, self.index = layout, rows, index
        self.group_of = np.cumsum(new_group) - 1
        self.columns = [
            _ColumnFold(layout, c, rows, index, self.group_of, self.starts) for c in range(len(rows.columns))
        ]
        self.fixed = all(column.kind is not None for column in self.columns)
        self._states: list[list[list[Any]]] | None = None
        self._by_key: list[list[tuple[int, int]]] | None = None

    def by_key(self, keys: int) -> list[list[tuple[int, int]]]:
        """Per key, its groups: (tile, group)."""
        if self._by_key is None:
            groups: list[list[tuple[int, int]]] = [[] for _ in range(keys)]
            group_keys, group_tiles = self.group_keys_array.tolist(), self.group_tiles_array.tolist()
            for g, (k, tile) in enumerate(zip(group_keys, group_tiles, strict=True)):
                groups[k].append((tile, g))
            self._by_key = groups
        return self._by_key

    @functools.cached_property
    def events(self) -> list[bytes]:
        """Per group, its rows' encoded events, back to back."""
        return _split(*self.event_blob(), skip=_FRAME)

    @functools.cached_property
    def _event_blob(self) -> tuple[np.ndarray, np.ndarray]:
        return self._encode_events() if self.fixed else _joined(self._pack_events())

    def event_blob(self) -> tuple[np.ndarray, np.ndarray]:
        """Every group's encoded events, each framed as a msgpack ``str 32``, in one byte array.

        Returns:
            The bytes, and where each group's frame starts (one more: the end).
        """
        return self._event_blob

    @functools.cached_property
    def _state_blob(self) -> tuple[np.ndarray, np.ndarray]:
        if self.fixed and not any(self.layout.distinct) and not any(self.layout.sketched):
            return self._encode_states()
        return _joined([encode_state(state) for state in self.states()])

    def state_blob(self) -> tuple[np.ndarray, np.ndarray]:
        """Every group's encoded partial state framed as a msgpack ``str 32``, as :meth:`event_blob`."""
        return self._state_blob

    def states(self) -> list[list[list[Any]]]:
        """Per group, its partial state (what :func:`tiles.add_value` gives row by row)."""
        if self._states is None:
            groups = len(self.starts)
            states: list[list[list[Any]]] = [[] for _ in range(groups)]
            for column in self.columns:
                for g, state in enumerate(column.python(groups)):
                    states[g].append(state)
            self._states = states
        return self._states

    def _pack_events(self) -> list[bytes]:
        rows, index = self.rows, self.index.tolist()
        created, values = rows.created, rows.values
        packed = [
            _pack([event, created[i], *values[i]]) for i, event in zip(index, rows.events[index].tolist(), strict=True)
        ]
        bounds = np.append(self.starts, len(index)).tolist()
        return [b"".join(packed[bounds[g] : bounds[g + 1]]) for g in range(len(self.starts))]

    def _encode_events(self) -> tuple[np.ndarray, np.ndarray]:
        rows, index = self.rows, self.index
        encoder = _Msgpack(len(index))
        encoder.header(2 + len(self.columns))
        encoder.add("i", rows.events[index], None)
        encoder.add("i", rows.created_rank[index], rows.created_valid[index])
        for column in self.columns:
            assert column.kind is not None
            encoder.add(column.kind, column.data, column.valid)
        return encoder.blob(self.starts, framed=True)

    def _encode_states(self) -> tuple[np.ndarray, np.ndarray]:
        groups = len(self.starts)
        encoder = _Msgpack(groups)
        encoder.header(len(self.columns))
        for column in self.columns:
            assert column.kind is not None
            filled = column.counts > 0
            encoder.header(9)
            encoder.add("i", column.counts, None)
            encoder.add("i" if column.kind == "i" else "f", column.sums, column.sums_valid)
            encoder.add(column.kind, column.mins, column.mins_valid)
            encoder.add(column.kind, column.maxs, column.maxs_valid)
            encoder.add("i", column.last_events, filled)
            encoder.add("i", column.last_created, column.last_created_valid)
            encoder.add(column.kind, column.last_values, filled)
            encoder.nil()
            encoder.nil()
        return encoder.blob(np.arange(groups), framed=True)


_FRAME = 5  # a msgpack ``str 32`` header: 0xdb and the length (big-endian uint32)


def _joined(parts: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Byte strings framed as msgpack ``str 32`` in one byte array, and where each frame starts (and the end)."""
    bounds = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum([_FRAME + len(part) for part in parts], out=bounds[1:])
    framed = b"".join(b"\xdb" + len(part).to_bytes(4, "big") + part for part in parts)
    return np.frombuffer(framed, dtype=np.uint8), bounds


def _split(blob: np.ndarray, bounds: np.ndarray, skip: int = 0) -> list[bytes]:
    """The byte strings of a blob, cut at ``bounds`` (each without its first ``skip`` bytes)."""
    data, edges = blob.tobytes(), bounds.tolist()
    return [data[edges[g] + skip : edges[g + 1]] for g in range(len(edges) - 1)]


def _taken(blob: np.ndarray, bounds: np.ndarray, taken: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pieces of a blob (cut at ``bounds``) where ``taken``, back to back, and their bounds."""
    if taken.all():
        return blob, bounds
    lengths = np.diff(bounds)[taken]
    kept = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=kept[1:])
    return blob[np.repeat(taken, np.diff(bounds))], kept


class _Bytes:
    """Fixed-width msgpack items as byte matrices (one row per item), for :meth:`_Batch.appends`."""

    @staticmethod
    def ints(values: np.ndarray) -> np.ndarray:
        """Each int64 as msgpack ``int 64`` (9 bytes)."""
        n = len(values)
        matrix = np.empty((n, 9), dtype=np.uint8)
        matrix[:, 0] = 0xD3
        matrix[:, 1:] = np.asarray(values, dtype=np.int64).astype(">i8").view(np.uint8).reshape(n, 8)
        return matrix

    @staticmethod
    def short_str(matrix: np.ndarray) -> np.ndarray:
        """Each row (under 32 bytes) as a msgpack ``fixstr`` holding it."""
        header = np.full((len(matrix), 1), 0xA0 | matrix.shape[1], dtype=np.uint8)
        return np.hstack([header, matrix])

    @staticmethod
    def join(*matrices: np.ndarray) -> np.ndarray:
        """Matrices side by side (each row: the items in order)."""
        return np.hstack(matrices)


class _ColumnFold:
    """One input column folded per group: count, sum, min, max and last (numpy where the type allows)."""

    def __init__(
        self, layout: TileLayout, c: int, rows: _Rows, index: np.ndarray, group_of: np.ndarray, starts: np.ndarray
    ) -> None:
        groups = len(starts)
        taken = rows.columns[c].take(pa.array(index, pa.int64()))
        kind = taken.type
        self.valid = taken.is_valid().to_numpy(zero_copy_only=False)
        self.counts = np.add.reduceat(self.valid.astype(np.int64), starts) if groups else np.zeros(0, np.int64)
        self.kind: str | None = None
        if pa.types.is_integer(kind) or pa.types.is_timestamp(kind):
            self.kind = "i"
        elif pa.types.is_floating(kind):
            self.kind = "f"
        elif pa.types.is_boolean(kind):
            self.kind = "b"
        listed = pa.types.is_list(kind) or pa.types.is_large_list(kind)
        numeric = self.kind in ("i", "f")
        self.rows, self.c = rows, c
        self.data = _numpy(taken, self.kind) if self.kind is not None else None
        nothing = pa.nulls(groups)
        sums = mins = maxs = nothing
        if groups and not listed:
            wanted = [("v", "min"), ("v", "max")] + ([("v", "sum")] if numeric else [])
            group_column = pa.array(group_of, pa.int64())
            folded = pa.table({"g": group_column, "v": taken}).group_by("g", use_threads=False).aggregate(wanted)
            folded = folded.sort_by("g")
            mins, maxs = folded.column("v_min").combine_chunks(), folded.column("v_max").combine_chunks()
            if numeric:
                sums = folded.column("v_sum").combine_chunks()
        self.sums_arrow, self.mins_arrow, self.maxs_arrow = sums, mins, maxs
        self.sums, self.sums_valid = _numpy(sums, self.kind), sums.is_valid().to_numpy(zero_copy_only=False)
        self.mins, self.mins_valid = _numpy(mins, self.kind), mins.is_valid().to_numpy(zero_copy_only=False)
        self.maxs, self.maxs_valid = _numpy(maxs, self.kind), maxs.is_valid().to_numpy(zero_copy_only=False)
        # last: per group, the valid row with the highest (event, created, arrival)
        self.last_rows = np.zeros(groups, dtype=np.int64)
        positions = np.flatnonzero(self.valid)
        if len(positions):
            chosen = index[positions]
            ranked = positions[
                np.lexsort((positions, rows.created_rank[chosen], rows.events[chosen], group_of[positions]))
            ]
            ranked_groups = group_of[ranked]
            ending = np.ones(len(ranked), dtype=bool)
            ending[:-1] = ranked_groups[1:] != ranked_groups[:-1]
            self.last_rows[ranked_groups[ending]] = index[ranked[ending]]
        self.last_events = rows.events[self.last_rows]
        self.last_created = rows.created_rank[self.last_rows]
        self.last_created_valid = rows.created_valid[self.last_rows] & (self.counts > 0)
        self.last_values = self.data_of_rows(rows, c) if self.kind is not None else None
        self.distinct: list[Any] = [None] * groups
        self.registers: list[Any] = [None] * groups
        if layout.distinct[c] or layout.sketched[c]:
            pairs = zip(group_of[positions].tolist(), index[positions].tolist(), strict=True)
            self.distinct, self.registers = _distinct(
                layout.distinct[c], layout.sketched[c], rows.lists[c], pairs, groups
            )

    def data_of_rows(self, rows: _Rows, c: int) -> np.ndarray:
        """The column's values (numpy) at each group's last row."""
        return _numpy(rows.columns[c].take(pa.array(self.last_rows, pa.int64())), self.kind)

    def python(self, groups: int) -> list[list[Any]]:
        """Per group, the column's state as Python values."""
        counts = self.counts.tolist()
        sums, mins, maxs = self.sums_arrow.to_pylist(), self.mins_arrow.to_pylist(), self.maxs_arrow.to_pylist()
        last_events, last_rows = self.last_events.tolist(), self.last_rows.tolist()
        created, values = self.rows.created, self.rows.lists[self.c]
        states = []
        for g in range(groups):
            if counts[g]:
                row = last_rows[g]
                states.append(
                    [counts[g], sums[g], mins[g], maxs[g], last_events[g], created[row], values[row],
                     self.distinct[g], self.registers[g]]
                )  # fmt: skip
            else:
                states.append([0, None, None, None, None, None, None, self.distinct[g], self.registers[g]])
        return states


def _numpy(array: pa.Array, kind: str | None) -> np.ndarray:
    """An Arrow column as int64, float64 or bool numpy values (nulls filled; their validity is kept apart)."""
    if kind is None or not len(array):
        return np.zeros(len(array), dtype=np.int64)
    target = {"i": pa.int64(), "f": pa.float64(), "b": pa.bool_()}[kind]
    if array.type != target:
        array = pc.cast(array, target)
    filled = array.fill_null(False if kind == "b" else 0)
    values: np.ndarray = filled.to_numpy(zero_copy_only=False)
    return values


class _Msgpack:
    """Rows of msgpack arrays of fixed-width fields (int64, float64, bool, nil), encoded at once.

    Each field takes a slot of its widest encoding in a byte matrix, with a mask of the bytes
    used (a null takes one byte, ``nil``); the masked matrix read row by row is the rows' msgpack,
    back to back. Integers are always 64-bit (``0xd3``), which msgpack readers take as any other.
    """

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.matrices: list[np.ndarray] = []
        self.used: list[np.ndarray] = []

    def header(self, length: int) -> None:
        """An array of ``length`` (<= 15) items starts."""
        self._constant(0x90 | length)

    def nil(self) -> None:
        """A nil item."""
        self._constant(0xC0)

    def _constant(self, byte: int) -> None:
        self.matrices.append(np.full((self.rows, 1), byte, dtype=np.uint8))
        self.used.append(np.ones((self.rows, 1), dtype=bool))

    def add(self, kind: str, data: np.ndarray | None, valid: np.ndarray | None) -> None:
        """One item per row: ``data`` as ``kind`` (``i``, ``f``, ``b``), nil where not ``valid``."""
        assert data is not None
        n = self.rows
        ok = np.ones(n, dtype=bool) if valid is None else valid
        if kind == "b":
            self.matrices.append(np.where(ok, np.where(data, 0xC3, 0xC2), 0xC0).astype(np.uint8).reshape(n, 1))
            self.used.append(np.ones((n, 1), dtype=bool))
            return
        matrix = np.empty((n, 9), dtype=np.uint8)
        matrix[:, 0] = np.where(ok, 0xD3 if kind == "i" else 0xCB, 0xC0)
        matrix[:, 1:] = data.astype(">i8" if kind == "i" else ">f8").view(np.uint8).reshape(n, 8)
        used = np.empty((n, 9), dtype=bool)
        used[:, 0] = True
        used[:, 1:] = ok[:, None]
        self.matrices.append(matrix)
        self.used.append(used)

    def blob(self, starts: np.ndarray, *, framed: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The encoded rows back to back, and where each group of rows starting at ``starts`` starts (and the end).

        ``framed``: each group is preceded by a msgpack ``str 32`` header of its length (so the
        groups read as strings holding them), and the bounds are the headers'.
        """
        if not self.rows:
            return np.zeros(0, dtype=np.uint8), np.zeros(len(starts) + 1, dtype=np.int64)
        used = np.concatenate(self.used, axis=1)
        matrix = np.concatenate(self.matrices, axis=1)
        if framed:
            lengths = np.add.reduceat(used.sum(axis=1), starts) if len(starts) else np.zeros(0, np.int64)
            header = np.zeros((self.rows, _FRAME), dtype=np.uint8)
            header[starts, 0] = 0xDB
            header[starts, 1:] = lengths.astype(">u4").view(np.uint8).reshape(-1, 4)
            mask = np.zeros((self.rows, _FRAME), dtype=bool)
            mask[starts] = True
            used, matrix = np.hstack([mask, used]), np.hstack([header, matrix])
        blob = matrix[used]
        ends = np.cumsum(used.sum(axis=1))
        bounds = np.append(np.concatenate(([0], ends))[starts], ends[-1])
        return blob, bounds

    def slices(self, starts: np.ndarray) -> list[bytes]:
        """The encoded rows, joined per group of rows starting at ``starts``."""
        if not self.rows:
            return []
        return _split(*self.blob(starts))


def _distinct(
    kept: bool, sketched: bool, values: list[Any], pairs: Iterable[tuple[int, int]], groups: int
) -> tuple[list[Any], list[Any]]:
    """Per group, the distinct values (if ``kept``) and HyperLogLog registers (if ``sketched``).

    ``pairs``: the (group, row) of each valid value of ``values``.
    """
    distinct: list[Any] = [set() for _ in range(groups)] if kept else [None] * groups
    registers: list[Any] = [{} for _ in range(groups)] if sketched else [None] * groups
    if not (kept or sketched):
        return distinct, registers
    seen: dict[object, tuple[int, int]] = {}
    for g, row in pairs:
        value = values[row]
        if isinstance(value, list):
            continue
        if kept:
            distinct[g].add(value)
        if sketched:
            found = seen.get(value)
            if found is None:
                found = seen[value] = sketch.register(value)
            register, highest = found
            if highest > registers[g].get(register, 0):
                registers[g][register] = highest
    return distinct, registers


class _Record:
    """One key's tile record while a batch is merged into it."""

    def __init__(self, layout: TileLayout, stored: dict[bytes, bytes | None]) -> None:
        self.layout, self.stored = layout, stored
        packed = stored[WATERMARK]
        self.watermark: int | None = None if packed is None else _unpackb(packed)
        packed = stored.get(BATCH_FLOOR)
        self.floor: int | None = None if packed is None else _unpackb(packed)
        packed = stored[TILE_SET]
        self.present: set[int] = set() if packed is None else set(_unpackb(packed))
        self.offsets: dict[int, int] = {}
        self.moved: dict[int, int] = {}
        self.states: dict[int, list[list[Any]]] = {}
        self.appended: dict[int, list[bytes]] = defaultdict(list)

    def _applied_offset(self, partition: int) -> int:
        applied = self.offsets.get(partition)
        if applied is None:
            packed = self.stored[offset_field(partition)]
            applied = -1 if packed is None else _unpackb(packed)
        return applied

    def take_offset(self, partition: int, offset: int) -> bool:
        """Move the partition's applied offset to ``offset``; False if it was applied already."""
        if offset <= self._applied_offset(partition):
            return False
        self.offsets[partition] = self.moved[partition] = offset
        return True

    def accepts(self, limit: int, offsets: Sequence[tuple[int, int, int]], earliest: int) -> bool:
        """Whether no row of a folded batch is too late or replayed.

        That is: the watermark is at most ``limit``, the batch floor before ``earliest``, and each
        partition's applied offset before the batch's first.
        """
        if self.watermark is not None and self.watermark > limit:
            return False
        if self.floor is not None and self.floor >= earliest:
            return False
        return all(self._applied_offset(partition) < low for partition, low, _ in offsets)

    def _state(self, tile: int) -> list[list[Any]]:
        state = self.states.get(tile)
        if state is None:
            packed = self.stored.get(state_field(tile))
            state = self.states[tile] = new_state(self.layout) if packed is None else decode_state(packed)
        return state

    def add(self, event: int, created: int | None, row: tuple[Any, ...]) -> None:
        """Add one event to its tile's state and events."""
        self.watermark = event if self.watermark is None or event > self.watermark else self.watermark
        tile = event // self.layout.tile_us
        state = self._state(tile)
        for column, value in zip(state, row, strict=True):
            if value is not None:
                add_value(column, value, event, created)
        self.appended[tile].append(encode_event(event, created, row))
        self.present.add(tile)

    def add_partials(self, batch: _Batch, k: int) -> None:
        """Add key ``k``'s folded batch (every row not too late against the batch: :meth:`accepts` held)."""
        latest = batch.latest_list[k]
        self.watermark = latest if self.watermark is None or latest > self.watermark else self.watermark
        for partition, _, high in batch.offsets[k]:
            self.offsets[partition] = self.moved[partition] = high
        states, events = batch.fold.states(), batch.fold.events
        for tile, g in batch.tiles[k]:
            merge_into(self._state(tile), states[g])
            self.appended[tile].append(events[g])
            self.present.add(tile)

    def update(self, lateness_us: int) -> TileUpdate | None:
        """The change to store: states, events, watermark, offsets; tiles no read can reach deleted."""
        if not self.appended and not self.moved:
            return None
        changes: dict[bytes, bytes] = {offset_field(p): bytes(_pack(o)) for p, o in self.moved.items()}
        deleted: list[bytes] = []
        if self.appended:
            assert self.watermark is not None
            size = self.layout.tile_us
            horizon = self.watermark - lateness_us - self.layout.longest_us
            for tile in [tile for tile in self.present if (tile + 1) * size <= horizon]:
                self.present.discard(tile)
                self.states.pop(tile, None)
                self.appended.pop(tile, None)
                deleted += [state_field(tile), events_field(tile), count_field(tile)]
            changes[WATERMARK] = bytes(_pack(self.watermark))
            changes[TILE_SET] = bytes(_pack(sorted(self.present)))
            changes.update({state_field(tile): encode_state(state) for tile, state in self.states.items()})
            deleted += [count_field(tile) for tile in self.states]  # each state is now one, not several appended
        append = {events_field(tile): b"".join(parts) for tile, parts in self.appended.items()}
        return TileUpdate(changes, append, deleted)


def _micros(rows: pa.Table, name: str, table: str) -> pa.Array:
    column = rows.column(name)
    try:
        if column.type != TIMESTAMP_TYPE:
            column = pc.cast(column, TIMESTAMP_TYPE)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise DataError(f"rows for feature table {table!r}: column {name!r} is not a timestamp: {exc}") from None
    micros = column.cast(pa.int64())
    return micros.combine_chunks() if isinstance(micros, pa.ChunkedArray) else micros
