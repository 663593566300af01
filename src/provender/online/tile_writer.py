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

from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, NamedTuple

import msgpack  # type: ignore[import-untyped]
import pyarrow as pa
import pyarrow.compute as pc

from provender.definitions import FeatureTable, ValueType
from provender.definitions.request import CREATED_TIMESTAMP, EVENT_TIMESTAMP, TIMESTAMP_TYPE
from provender.errors import DataError
from provender.online.keys import encode_arrow_keys
from provender.online.tiles import (
    TILE_SET,
    WATERMARK,
    TileLayout,
    TileStore,
    TileUpdate,
    add_value,
    decode_state,
    encode_event,
    encode_state,
    events_field,
    layout_for,
    new_state,
    offset_field,
    state_field,
)

_pack = msgpack.Packer().pack
_unpackb = msgpack.unpackb


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
        """Add ``rows`` (normalized, in arrival order) to their keys' tiles.

        Args:
            rows: the entity columns, the aggregations' input columns and ``event_timestamp``
                (``created_timestamp`` optional).
            partitions: each row's stream partition (with ``offsets``: replays are skipped).
            offsets: each row's offset in its partition.

        Raises:
            DataError: a missing column or a null key or event time.
            BackendError: the store failed (safe to retry: replays are skipped).
        """
        if not rows.num_rows:
            return TileReport(0, 0, 0)
        layout = self.layout
        keys = encode_arrow_keys(rows, self.table.entities)
        events = _micros(rows, EVENT_TIMESTAMP, self.table.name)
        if None in events:
            raise DataError(f"rows for feature table {self.table.name!r}: {EVENT_TIMESTAMP!r} has nulls.")
        created: list[int | None] = [None] * rows.num_rows
        if CREATED_TIMESTAMP in rows.column_names:
            created = _micros(rows, CREATED_TIMESTAMP, self.table.name)
        values = []
        for name, value_type in zip(layout.columns, layout.column_types, strict=True):
            if name not in rows.column_names:
                raise DataError(f"rows for feature table {self.table.name!r} lack the column {name!r}.")
            values.append(pc.cast(rows.column(name), _storage(value_type)).to_pylist())
        by_key: dict[bytes, list[int]] = defaultdict(list)
        for index, key in enumerate(keys):
            by_key[key].append(index)
        distinct = list(by_key)
        fields = []
        for key in distinct:
            indexes = by_key[key]
            tiles = sorted({events[i] // layout.tile_us for i in indexes})  # type: ignore[operator]
            parts = sorted({partitions[i] for i in indexes}) if partitions is not None else []
            fields.append([WATERMARK, TILE_SET, *map(offset_field, parts), *map(state_field, tiles)])
        reports: dict[int, TileReport] = {}
        batch = _Batch(events, created, list(zip(*values, strict=True)), partitions, offsets)  # type: ignore[arg-type]

        def merge(position: int, stored: list[bytes | None]) -> TileUpdate | None:
            record = _Record(self.layout, dict(zip(fields[position], stored, strict=True)))
            reports[position] = self._add(record, batch, by_key[distinct[position]])
            return record.update(self.lateness_us)

        self.store.update_tiles(self.table, layout, distinct, fields, merge)
        return TileReport(
            sum(r.applied for r in reports.values()),
            sum(r.too_late for r in reports.values()),
            sum(r.replayed for r in reports.values()),
        )

    def _add(self, record: _Record, batch: _Batch, indexes: list[int]) -> TileReport:
        """Add a key's rows of the batch to its record, in arrival order (replays and late ones skipped)."""
        applied = too_late = replayed = 0
        for i in indexes:
            guarded = batch.partitions is not None and batch.offsets is not None
            if guarded and not record.take_offset(batch.partitions[i], batch.offsets[i]):  # type: ignore[index]
                replayed += 1
                continue
            event = batch.events[i]
            watermark = record.watermark
            if watermark is not None and event < watermark - self.lateness_us:
                too_late += 1
                continue
            record.add(event, batch.created[i], batch.columns[i])
            applied += 1
        return TileReport(applied, too_late, replayed)


class _Batch(NamedTuple):
    events: list[int]
    created: list[int | None]
    columns: list[tuple[Any, ...]]
    partitions: Sequence[int] | None
    offsets: Sequence[int] | None


class _Record:
    """One key's tile record while a batch is merged into it."""

    def __init__(self, layout: TileLayout, stored: dict[bytes, bytes | None]) -> None:
        self.layout, self.stored = layout, stored
        packed = stored[WATERMARK]
        self.watermark: int | None = None if packed is None else _unpackb(packed)
        packed = stored[TILE_SET]
        self.present: set[int] = set() if packed is None else set(_unpackb(packed))
        self.offsets: dict[int, int] = {}
        self.moved: dict[int, int] = {}
        self.states: dict[int, list[list[Any]]] = {}
        self.appended: dict[int, list[bytes]] = defaultdict(list)

    def take_offset(self, partition: int, offset: int) -> bool:
        """Move the partition's applied offset to ``offset``; False if it was applied already."""
        applied = self.offsets.get(partition)
        if applied is None:
            packed = self.stored[offset_field(partition)]
            applied = -1 if packed is None else _unpackb(packed)
        if offset <= applied:
            return False
        self.offsets[partition] = self.moved[partition] = offset
        return True

    def add(self, event: int, created: int | None, row: tuple[Any, ...]) -> None:
        """Add one event to its tile's state and events."""
        self.watermark = event if self.watermark is None or event > self.watermark else self.watermark
        tile = event // self.layout.tile_us
        state = self.states.get(tile)
        if state is None:
            packed = self.stored[state_field(tile)]
            state = self.states[tile] = new_state(self.layout) if packed is None else decode_state(packed)
        for column, value in zip(state, row, strict=True):
            if value is not None:
                add_value(column, value, event, created)
        self.appended[tile].append(encode_event(event, created, row))
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
                deleted += [state_field(tile), events_field(tile)]
            changes[WATERMARK] = bytes(_pack(self.watermark))
            changes[TILE_SET] = bytes(_pack(sorted(self.present)))
            changes.update({state_field(tile): encode_state(state) for tile, state in self.states.items()})
        append = {events_field(tile): b"".join(parts) for tile, parts in self.appended.items()}
        return TileUpdate(changes, append, deleted)


def _micros(rows: pa.Table, name: str, table: str) -> list[int | None]:
    column = rows.column(name)
    try:
        if column.type != TIMESTAMP_TYPE:
            column = pc.cast(column, TIMESTAMP_TYPE)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise DataError(f"rows for feature table {table!r}: column {name!r} is not a timestamp: {exc}") from None
    return column.cast(pa.int64()).to_pylist()  # type: ignore[no-any-return]
