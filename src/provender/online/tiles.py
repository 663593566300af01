"""Tiles: windowed aggregations kept fresh in the online store, and evaluated exactly at read time.

Stream ingestion keeps, per (feature table, entity key), the key's events cut into **tiles**:
fixed, epoch-aligned spans of event time of ``tile_us`` microseconds (:func:`tile_size`). Each
tile holds two things, as fields of one record per key (a Redis hash, SQLite rows, a dict):

* ``s<i>``: the tile's **state**, the partial aggregates of its events per input column
  (count of non-null values, sum, min, max, the latest value by ``(event_timestamp,
  created_timestamp)``, the distinct values, HyperLogLog registers), which merge across tiles;
* ``e<i>``: the tile's **events** (time, created time, input values), appended.

A new event updates its one tile (state merged, event appended): nothing else of the window is
read or rewritten. A read at *T* computes each aggregation over ``T - window < event_timestamp
<= T`` (``plan.AGGREGATION_RULE``) exactly: the tiles strictly between the window's two edge
tiles contribute their states, and the two edge tiles (the one holding ``T - window + 1 us`` and
the one holding *T*) their events, filtered to the bounds. So an event stops counting the
moment it leaves a read's window, whatever the tile size, and the value read at *T* equals the
historical value at *T* over the same events. The price of exact bounds is memory: every event
of the longest window (plus the allowed lateness) is kept, besides the states.

The record's other fields: ``w``, the latest event time applied for the key (its watermark;
its presence means "the key has tiles"); ``t``, the tiles present (so old ones can be deleted);
``b``, the batch floor: the ``end`` of the batch ingestion that rebuilt the key's tiles from the
offline source (events at or before it are that source's: a stream event at or before it is
skipped and counted too late); ``c<i>``, how many states were appended to ``s<i>`` beyond its
first (Redis appends a batch's partial state without reading; a read merges them, and the writer
compacts them to one after ``MAX_APPENDED_STATES`` or once the tile is no longer the newest);
``o<p>``, per stream partition, the last offset applied (so records replayed after a crash or
a rebalance are not counted twice: at-least-once delivery, exactly-once tiles).

Tables whose layout changes (windows, functions, input types) get a new :attr:`TileLayout.id`,
which is part of the record's name: old tiles are never misread.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NamedTuple, Protocol

import msgpack  # type: ignore[import-untyped]

from provender.definitions import Aggregation, FeatureTable, ValueType, sketch
from provender.online.codec import to_datetime

_US = timedelta(microseconds=1)
_SECOND = 1_000_000
TILE_CHOICES_US: tuple[int, ...] = tuple(
    s * _SECOND for s in (1, 10, 60, 300, 900, 3600, 6 * 3600, 86400)
)  # fmt: skip
"""The tile sizes :func:`tile_size` picks from (1 s to 1 day)."""
MIN_TILES_PER_WINDOW = 8
MAX_TILES_PER_WINDOW = 512
_LOW = -(2**63) - 1  # ranks a missing created time below every real one

WATERMARK = b"w"
TILE_SET = b"t"
BATCH_FLOOR = b"b"

# Per input column, a tile's state is a list: count, sum, min, max, last (event, created, value),
# distinct values, HyperLogLog registers ({register: highest rank}, sketch.py).
_N, _SUM, _MIN, _MAX, _LAST_EVENT, _LAST_CREATED, _LAST_VALUE, _DISTINCT, _SKETCH = range(9)

_pack = msgpack.Packer().pack
_unpackb = msgpack.unpackb


def state_field(tile: int) -> bytes:
    """The field holding tile ``tile``'s state."""
    return b"s%d" % tile


def events_field(tile: int) -> bytes:
    """The field holding tile ``tile``'s events."""
    return b"e%d" % tile


def count_field(tile: int) -> bytes:
    """The field counting the states appended to tile ``tile``'s state field beyond its first."""
    return b"c%d" % tile


def offset_field(partition: int) -> bytes:
    """The field holding the last offset applied from stream partition ``partition``."""
    return b"o%d" % partition


def tile_size(windows: Sequence[timedelta]) -> int:
    """The tile size (microseconds) for a table's windows.

    The largest of :data:`TILE_CHOICES_US` with at least 8 tiles in the shortest window, made
    larger if the longest window would span more than 512 tiles (a read merges that many
    states). A window shorter than 8 s gets tiles of an eighth of it.
    """
    shortest = min(windows) // _US
    longest = max(windows) // _US
    fitting = [size for size in TILE_CHOICES_US if size * MIN_TILES_PER_WINDOW <= shortest]
    size = fitting[-1] if fitting else max(1, shortest // MIN_TILES_PER_WINDOW)
    for choice in TILE_CHOICES_US:
        if longest // size <= MAX_TILES_PER_WINDOW:
            break
        size = max(size, choice)
    if longest // size > MAX_TILES_PER_WINDOW:
        size = -(-longest // MAX_TILES_PER_WINDOW)
    return size


class _Spec(NamedTuple):
    feature: int  # index in table.features
    column: int  # index in TileLayout.columns
    aggregation: Aggregation
    window_us: int
    output: ValueType


@dataclass(frozen=True, slots=True)
class TileLayout:
    """How one feature table's aggregations are tiled (derived from its definition only).

    Attributes:
        table: the table's name.
        tile_us: the tile size in microseconds.
        columns: the aggregations' input columns (each once).
        column_types: their value types.
        specs: per aggregation: its feature index, column index, definition, window, output type.
        windows_us: the distinct windows, shortest first.
        longest_us: the longest window.
        distinct: per column, whether its distinct values are kept (a ``count_distinct`` reads it).
        sketched: per column, whether its HyperLogLog registers are kept (``approx_count_distinct``).
        id: a short hex fingerprint of all of the above, part of the stored record's name.
    """

    table: str
    tile_us: int
    columns: tuple[str, ...]
    column_types: tuple[ValueType, ...]
    specs: tuple[_Spec, ...]
    windows_us: tuple[int, ...]
    longest_us: int
    distinct: tuple[bool, ...]
    sketched: tuple[bool, ...]
    id: str

    @property
    def feature_indexes(self) -> tuple[int, ...]:
        """The table's feature indexes that are aggregations, in the layout's order."""
        return tuple(spec.feature for spec in self.specs)


_LAYOUTS: dict[tuple[object, ...], TileLayout] = {}


def layout_for(table: FeatureTable) -> TileLayout | None:
    """Return the (cached) tile layout of ``table``, or None if it has no aggregations."""
    if not table.aggregations:
        return None
    cache_key = (table.name, tuple(table.features), tuple(table.aggregations))
    layout = _LAYOUTS.get(cache_key)
    if layout is not None:
        return layout
    types = {f.name: f.value_type for f in table.features}
    columns = tuple(dict.fromkeys(a.column for a in table.aggregations))
    names = table.feature_names
    specs = tuple(
        _Spec(names.index(a.name), columns.index(a.column), a, a.window // _US, a.output_type(types[a.column]))
        for a in table.aggregations
    )
    tile_us = tile_size([a.window for a in table.aggregations])
    signature = f"{tile_us};" + ";".join(
        f"{s.aggregation.name}:{s.aggregation.function}:{s.aggregation.column}:{types[s.aggregation.column]}:"
        f"{s.window_us}"
        for s in specs
    )
    layout = TileLayout(
        table=table.name,
        tile_us=tile_us,
        columns=columns,
        column_types=tuple(types[c] for c in columns),
        specs=specs,
        windows_us=tuple(sorted({s.window_us for s in specs})),
        longest_us=max(s.window_us for s in specs),
        distinct=tuple(
            any(a.column == c and a.function == "count_distinct" for a in table.aggregations) for c in columns
        ),
        sketched=tuple(
            any(a.column == c and a.function == "approx_count_distinct" for a in table.aggregations) for c in columns
        ),
        id=struct.pack(">I", zlib.crc32(signature.encode())).hex(),
    )
    if len(_LAYOUTS) > 1024:
        _LAYOUTS.clear()
    _LAYOUTS[cache_key] = layout
    return layout


# -- states


def new_state(layout: TileLayout) -> list[list[Any]]:
    """An empty tile state of ``layout`` (distinct values kept only for the columns that need them)."""
    return [
        [0, None, None, None, None, None, None, set() if kept else None, {} if sketched else None]
        for kept, sketched in zip(layout.distinct, layout.sketched, strict=True)
    ]


def add_value(column: list[Any], value: object, event_us: int, created_us: int | None) -> None:
    """Add one non-null input value (of an event) to a column's state."""
    column[_N] += 1
    if isinstance(value, int | float) and not isinstance(value, bool):
        column[_SUM] = value if column[_SUM] is None else column[_SUM] + value
    if not isinstance(value, list):
        if column[_MIN] is None or value < column[_MIN]:
            column[_MIN] = value
        if column[_MAX] is None or value > column[_MAX]:
            column[_MAX] = value
        if column[_DISTINCT] is not None:
            column[_DISTINCT].add(value)
        if column[_SKETCH] is not None:
            register, highest = sketch.register(value)
            if highest > column[_SKETCH].get(register, 0):
                column[_SKETCH][register] = highest
    rank = (event_us, _LOW if created_us is None else created_us)
    last = column[_LAST_EVENT]
    if last is None or rank >= (last, _LOW if column[_LAST_CREATED] is None else column[_LAST_CREATED]):
        column[_LAST_EVENT], column[_LAST_CREATED], column[_LAST_VALUE] = event_us, created_us, value


def merge_into(target: list[list[Any]], other: list[list[Any]]) -> None:
    """Merge state ``other`` into ``target`` (column by column)."""
    for into, column in zip(target, other, strict=True):
        if not column[_N]:
            continue
        if not into[_N]:
            _copy_into(into, column)
            continue
        into[_N] += column[_N]
        if column[_SUM] is not None:
            into[_SUM] = column[_SUM] if into[_SUM] is None else into[_SUM] + column[_SUM]
        if column[_MIN] is not None and (into[_MIN] is None or column[_MIN] < into[_MIN]):
            into[_MIN] = column[_MIN]
        if column[_MAX] is not None and (into[_MAX] is None or column[_MAX] > into[_MAX]):
            into[_MAX] = column[_MAX]
        if column[_DISTINCT] is not None and into[_DISTINCT] is not None:
            into[_DISTINCT].update(column[_DISTINCT])
        if column[_SKETCH] is not None and into[_SKETCH] is not None:
            _merge_registers(into[_SKETCH], column[_SKETCH])
        rank = (column[_LAST_EVENT], _LOW if column[_LAST_CREATED] is None else column[_LAST_CREATED])
        if rank >= (into[_LAST_EVENT], _LOW if into[_LAST_CREATED] is None else into[_LAST_CREATED]):
            into[_LAST_EVENT], into[_LAST_CREATED], into[_LAST_VALUE] = (
                column[_LAST_EVENT],
                column[_LAST_CREATED],
                column[_LAST_VALUE],
            )


def _copy_into(into: list[Any], column: list[Any]) -> None:
    into[:_DISTINCT] = column[:_DISTINCT]
    if column[_DISTINCT] is not None:
        into[_DISTINCT] = set(column[_DISTINCT])
    if column[_SKETCH] is not None:
        into[_SKETCH] = dict(column[_SKETCH])


def _merge_registers(into: dict[int, int], other: dict[int, int]) -> None:
    for register, rank in other.items():
        if rank > into.get(register, 0):
            into[register] = rank


def encode_state(state: list[list[Any]]) -> bytes:
    """The stored bytes of a state (msgpack; distinct values as a list)."""
    if all(column[_DISTINCT] is None for column in state):
        return bytes(_pack(state))
    return bytes(
        _pack(
            [
                [*column[:_DISTINCT], None if column[_DISTINCT] is None else list(column[_DISTINCT]), column[_SKETCH]]
                for column in state
            ]
        )
    )


def decode_state(packed: bytes) -> list[list[Any]]:
    """A state from its stored bytes: one encoded state, or several appended (merged in order)."""
    try:
        return _decoded(_unpackb(packed, strict_map_key=False))
    except msgpack.ExtraData:
        pass
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(packed)
    parts = iter(unpacker)
    state = _decoded(next(parts))
    for part in parts:
        merge_into(state, _decoded(part))
    return state


def _decoded(state: list[list[Any]]) -> list[list[Any]]:
    for column in state:
        if column[_DISTINCT] is not None:
            column[_DISTINCT] = set(column[_DISTINCT])
    return state


def encode_event(event_us: int, created_us: int | None, values: Sequence[object]) -> bytes:
    """The stored bytes of one event (appended to its tile's events field)."""
    return bytes(_pack([event_us, created_us, *values]))


def decode_events(packed: bytes) -> list[list[Any]]:
    """The events of a tile, in the order they were appended."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(packed)
    return list(unpacker)


# -- reads


class TileRead(NamedTuple):
    """The fields a read at one time needs, and how to combine them (see :func:`read_plan`)."""

    at_us: int
    fields: list[bytes]
    # per distinct window (shortest first): (first interior tile, last interior tile, lower edge tile)
    windows: list[tuple[int, int, int]]
    head: int  # the tile holding at_us
    state_at: dict[int, int]  # tile -> index in fields
    events_at: dict[int, int]


def read_plan(layout: TileLayout, at_us: int) -> TileRead:
    """Which fields to read for a read at ``at_us`` (the same for every key of the table)."""
    size = layout.tile_us
    head = at_us // size
    windows = []
    lowest = head
    for window in layout.windows_us:
        edge = (at_us - window + 1) // size
        windows.append((edge + 1, head - 1, edge))
        lowest = min(lowest, edge + 1)
    fields = [WATERMARK]
    state_at = {}
    for tile in range(lowest, head):
        state_at[tile] = len(fields)
        fields.append(state_field(tile))
    events_at = {}
    for tile in sorted({edge for _, _, edge in windows} | {head}):
        events_at[tile] = len(fields)
        fields.append(events_field(tile))
    return TileRead(at_us, fields, windows, head, state_at, events_at)


def evaluate(layout: TileLayout, plan: TileRead, values: Sequence[bytes | None]) -> list[object] | None:
    """The aggregates at ``plan.at_us`` from one key's fields (read as ``plan.fields``).

    Returns:
        One value per aggregation (``layout.specs`` order), or None if the key has no tiles.
    """
    if values[0] is None:
        return None
    at_us = plan.at_us
    states: dict[int, list[list[Any]]] = {}
    events: dict[int, list[list[Any]]] = {}
    for tile, index in plan.events_at.items():
        packed = values[index]
        events[tile] = [] if packed is None else decode_events(packed)
    results: dict[int, list[list[Any]]] = {}
    for window, (first, last, edge) in zip(layout.windows_us, plan.windows, strict=True):
        total = new_state(layout)
        for tile in range(first, last + 1):
            state = states.get(tile)
            if state is None:
                packed = values[plan.state_at[tile]]
                if packed is None:
                    continue
                state = states[tile] = decode_state(packed)
            merge_into(total, state)
        lower = at_us - window  # exclusive
        for tile in {edge, plan.head}:
            for event in events[tile]:
                if lower < event[0] <= at_us:
                    for column, value in zip(total, event[2:], strict=True):
                        if value is not None:
                            add_value(column, value, event[0], event[1])
        results[window] = total
    return [_result(spec, results[spec.window_us][spec.column]) for spec in layout.specs]


def _result(spec: _Spec, column: list[Any]) -> object:
    function = spec.aggregation.function
    if spec.aggregation.counts:
        if function == "count":
            return column[_N]
        if function == "count_distinct":
            return 0 if column[_DISTINCT] is None else len(column[_DISTINCT])
        return 0 if column[_SKETCH] is None else sketch.estimate(column[_SKETCH])
    if not column[_N]:
        return None
    if function in ("sum", "mean"):
        return column[_SUM] if function == "sum" else column[_SUM] / column[_N]
    value = {"min": column[_MIN], "max": column[_MAX], "last": column[_LAST_VALUE]}[function]
    return _output(value, spec.output)


def _output(value: object, output: ValueType) -> object:
    if output is ValueType.UNIX_TIMESTAMP and isinstance(value, int):
        return to_datetime(value)
    if output is ValueType.UNIX_TIMESTAMP_LIST and isinstance(value, list):
        return [None if v is None else to_datetime(v) for v in value]
    return value


class TileUpdate(NamedTuple):
    """What to change in one key's record: fields replaced, fields appended to, fields deleted."""

    set: dict[bytes, bytes]
    append: dict[bytes, bytes]
    delete: list[bytes]


class TileAppends(NamedTuple):
    """Several keys' folded batches, for a store that applies them without a read (``append_tiles``).

    Column by column, each a run of msgpack values (integers as ``int 64``, bytes as ``str``) in
    key order; per key ``i``: its head, 6 items at ``heads[i * head_width:]``: ``watermark limit,
    latest time, its encoding, earliest time, P, G``; its P partition entries
    (``entry_bounds[i]`` to ``entry_bounds[i + 1]``, ``entry_width`` bytes each): ``partition
    (index in partitions, from 1), first offset, encoded last offset``; its G tiles
    (``group_bounds[i]`` to ``group_bounds[i + 1]``): in ``groups`` (``group_width`` bytes each)
    the tile's index in ``tiles`` (from 1), in ``states`` (from byte ``state_bounds[i]``) the
    encoded state of its events, in ``events`` (from ``event_bounds[i]``) the encoded events.

    The store applies a key's batch atomically, and only if none of its events is too late or a
    replay against the key's record: the stored watermark is at most the limit, each partition's
    stored offset is below the batch's first, and the batch floor (``b``, if any) is before the
    earliest time. It then appends each tile's state to ``s<tile>`` (several states appended read
    as their merge; :func:`decode_state`) and counts the extra ones in ``c<tile>``, appends the
    events to ``e<tile>``, moves the watermark to the latest time if later and the offsets to the
    batch's last; when a tile is new to the key, it adds it to the tile set and deletes the tiles
    no read can reach (as ``tile_writer._Record`` does on every change; here only then, so an
    unreachable tile may outlive its horizon until the key's next new tile).
    """

    tiles: list[int]
    partitions: list[bytes]  # the offset fields (``o<p>``)
    heads: bytes
    head_width: int
    entries: bytes
    entry_width: int
    groups: bytes
    group_width: int
    states: bytes
    events: bytes
    entry_bounds: list[int]
    group_bounds: list[int]
    state_bounds: list[int]
    event_bounds: list[int]


TileAppended = int | list[int]
"""Per key of ``append_tiles``: 0 refused (merge it instead), 1 applied, or the tiles (applied) whose
states should be compacted (:data:`MAX_APPENDED_STATES` reached, or no longer the key's newest)."""

MAX_APPENDED_STATES = 8
"""A tile's state field holds at most this many appended states before the writer compacts it."""

TileMerge = Callable[[int, list[bytes | None]], TileUpdate | None]
"""Called with a key's index and its fields' stored values; returns the change (None: nothing)."""


class TileStore(Protocol):
    """What a store offers for tiles (every built-in store has it)."""

    def read_tiles(
        self, table: FeatureTable, layout: TileLayout, keys: Sequence[bytes], fields: Sequence[bytes]
    ) -> list[list[bytes | None]]:
        """Per key, the values of ``fields`` (None where absent)."""
        ...

    def update_tiles(
        self,
        table: FeatureTable,
        layout: TileLayout,
        keys: Sequence[bytes],
        fields: Sequence[Sequence[bytes]],
        merge: TileMerge,
    ) -> None:
        """For each key, read ``fields[i]``, call ``merge(i, values)`` and apply its change atomically.

        If another writer changed the key between the read and the write, the key is read and
        merged again (``merge`` may be called more than once per key; its last answer counts).
        """
        ...


def read_values(store: TileStore, table: FeatureTable, keys: Sequence[bytes], at_us: int) -> list[list[object] | None]:
    """The aggregates of ``table`` at ``at_us`` for each key from its tiles (None: no tiles)."""
    layout = layout_for(table)
    assert layout is not None
    plan = read_plan(layout, at_us)
    stored = store.read_tiles(table, layout, keys, plan.fields)
    return [evaluate(layout, plan, values) for values in stored]
