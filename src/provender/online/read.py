"""Online reads: feature refs + entity rows -> the latest values, in one store call.

:class:`OnlineReader` is what ``Client.get_online_features`` delegates to. Per call it:

1. resolves the refs against the registry (:class:`~provender.definitions.request.FeatureRequest`,
   the same resolver as historical retrieval) into a cached :class:`_ReadPlan` (refs are parsed
   and checked once per distinct ref list and registry version, not per call);
2. encodes each entity row's key once per entity set (tables keyed by the same entities share
   keys), checking every value against its entity's type;
3. makes ONE ``store.read`` call for every table and row (one round trip to Redis);
4. builds plain-Python columns: ``<table>__<feature>`` values, null when the row is missing or
   (plain features only) older than ``now - max_age`` (but 0 for a counting aggregation of a key
   nothing is stored for, status NOT_FOUND: no event is known, which historical retrieval counts
   as 0); statuses are derived only when asked for.

Windowed aggregations of a table with a stream source are computed at ``now`` from the key's
tiles (``tiles.py``: one more store call for those tables), exactly over
``now - window < event_timestamp <= now``; a key without tiles keeps the value batch ingestion
wrote (as of that job's ``end``). ``max_age`` never applies to aggregations (the window is their
bound, as offline), whether they come from tiles or from the stored row: a row older than
``now - max_age`` nulls its plain features (OUTSIDE_MAX_AGE) and keeps its aggregates.

The registry snapshot is cached for ``refresh_seconds`` (bounded staleness: a change made by
another process is seen within that time; :meth:`OnlineReader.invalidate` forgets it at once,
which the client does after its own registry changes). A ref to a table the cached snapshot
does not know triggers one re-read before the error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, Protocol, TypeVar, cast

import pyarrow as pa

from provender.definitions import Entity, FeatureTable, OnDemandFeatures, ValueType
from provender.definitions.request import FeatureRequest, check_passthrough_columns, ref_list
from provender.errors import DataError, EntityNotFoundError, FeatureRefError, FeatureTableNotFoundError
from provender.on_demand import OnDemandRunner
from provender.online import tiles
from provender.online.codec import CorruptRow, StoredRow
from provender.online.keys import KeyEncoder
from provender.online.store import AsyncReads, OnlineStore, ReadRequest

REGISTRY_REFRESH_SECONDS = 5.0
PLAN_CACHE_BYTES = 1024 * 1024
"""How many bytes of feature refs the plan caches keep as keys (per reader, per served project)."""
_V = TypeVar("_V")


class FeatureStatus(StrEnum):
    """Why a value is what it is. Compares equal to its name (``"PRESENT"``).

    ``PRESENT``: the stored value. ``NOT_FOUND``: nothing is stored for the key (or it was
    written under another schema of the table). ``OUTSIDE_MAX_AGE``: the stored value is older
    than now - ``max_age`` (plain features only: never an aggregation). ``NULL_VALUE``: the
    stored value is null. ``CORRUPT``: the stored bytes cannot be decoded (logged with the table
    and key, counted by the serving's ``provender_serving_corrupt_rows_total``); the value is
    null and the read's other values are unaffected.
    """

    PRESENT = "PRESENT"
    NOT_FOUND = "NOT_FOUND"
    OUTSIDE_MAX_AGE = "OUTSIDE_MAX_AGE"
    NULL_VALUE = "NULL_VALUE"
    CORRUPT = "CORRUPT"


class Catalog(Protocol):
    """What reads need from the registry (``RegistrySnapshot`` has it)."""

    @property
    def project(self) -> str:
        """The project's name."""
        ...

    @property
    def version(self) -> int:
        """The registry version the catalog was read at."""
        ...

    @property
    def entities(self) -> Mapping[str, Entity]:
        """The registered entities by name."""
        ...

    @property
    def feature_tables(self) -> Mapping[str, FeatureTable]:
        """The registered feature tables by name."""
        ...

    @property
    def on_demand_features(self) -> Mapping[str, OnDemandFeatures]:
        """The registered on-demand features by name."""
        ...


@dataclass(frozen=True, slots=True)
class _TablePlan:
    """One requested table: where its keys come from and which features become which columns."""

    table: FeatureTable
    group: int  # index of its entity set in _ReadPlan.encoders
    picks: tuple[tuple[str, int], ...]  # (result column, feature index)
    max_age_us: int | None
    tile_slots: Mapping[int, int]  # feature index -> its aggregation's place in the tile layout (tiled tables)
    counted: frozenset[int] = frozenset()  # feature indexes of counting aggregations (0 for a key never stored)
    ageless: frozenset[int] = frozenset()  # feature indexes of aggregations: max_age does not apply to them


@dataclass(frozen=True, slots=True)
class _ReadPlan:
    tables: tuple[_TablePlan, ...]
    encoders: tuple[KeyEncoder, ...]
    entity_columns: tuple[str, ...]  # every entity the tables need, first-seen order
    feature_columns: tuple[str, ...]  # result columns in ref order (on-demand ones included)
    entity_types: Mapping[str, pa.DataType]
    feature_types: Mapping[str, pa.DataType]
    request: FeatureRequest
    on_demand: OnDemandRunner | None  # computes the on-demand columns, if any are requested

    @property
    def tiled(self) -> bool:
        """Whether some requested aggregation is read from tiles."""
        return any(table.tile_slots for table in self.tables)


def compile_plan(feature_refs: Sequence[str], catalog: Catalog) -> _ReadPlan:
    """Resolve refs against the registry (:class:`FeatureRequest`) and plan the store reads.

    Raises:
        FeatureRefError: an empty list, a malformed ref, an unknown feature, or one requested twice.
        FeatureTableNotFoundError: an unknown table (with a "did you mean").
        EntityNotFoundError: a requested table's entity is not registered.
    """
    request = FeatureRequest.resolve(
        feature_refs,
        feature_tables=catalog.feature_tables,
        entities=catalog.entities,
        project=catalog.project,
        on_demand_features=catalog.on_demand_features,
    )
    group_of: dict[tuple[str, ...], int] = {}
    encoders: list[KeyEncoder] = []
    plans = []
    for requested in request.tables:
        table = requested.table
        entity_set = tuple(sorted(table.entities))
        if entity_set not in group_of:
            group_of[entity_set] = len(encoders)
            encoders.append(KeyEncoder([(e.name, e.value_type) for e in requested.entities]))
        max_age_us = None if table.max_age is None else int(table.max_age.total_seconds() * 1_000_000)
        picks = tuple(zip(requested.columns, requested.indexes, strict=True))
        layout = tiles.layout_for(table) if table.stream_source is not None else None
        slots: dict[int, int] = {}
        if layout is not None:
            wanted = set(requested.indexes)
            slots = {index: slot for slot, index in enumerate(layout.feature_indexes) if index in wanted}
        aggregations = {
            index: aggregation
            for index in requested.indexes
            if (aggregation := table.get_aggregation(table.features[index].name)) is not None
        }
        counted = frozenset(index for index, aggregation in aggregations.items() if aggregation.counts)
        plans.append(
            _TablePlan(table, group_of[entity_set], picks, max_age_us, slots, counted, frozenset(aggregations))
        )
    arrow_types = {name: value_type.to_arrow() for name, value_type in request.types.items()}
    entity_columns = tuple(entity.name for entity in request.entities)
    return _ReadPlan(
        tables=tuple(plans),
        encoders=tuple(encoders),
        entity_columns=entity_columns,
        feature_columns=request.columns,
        entity_types={name: arrow_types[name] for name in entity_columns},
        feature_types={name: arrow_types[name] for name in request.columns},
        request=request,
        on_demand=OnDemandRunner(request) if request.on_demand else None,
    )


class OnlineResponse:
    """The result of an online read: columns of plain Python values, one entry per entity row.

    Examples:
        With a value stored for driver 1001 only (see :class:`~provender.client.client.Client`
        for a complete, running example):

        >>> response.to_dict()  # doctest: +SKIP
        {'driver_id': [1001, 1002], 'driver_statistics__conv_rate': [0.5, None]}
        >>> response.statuses()  # doctest: +SKIP
        {'driver_statistics__conv_rate': ['PRESENT', 'NOT_FOUND']}
    """

    __slots__ = ("_columns", "_now_us", "_plan", "_stored", "_tiled", "entity_columns", "feature_columns")

    def __init__(
        self,
        *,
        columns: dict[str, list[object]],
        entity_columns: tuple[str, ...],
        plan: _ReadPlan,
        stored: list[list[StoredRow | None]],
        now_us: int,
        tiled: list[list[list[object] | None] | None] | None = None,
    ) -> None:
        self._columns = columns
        self.entity_columns = entity_columns
        self.feature_columns = plan.feature_columns
        self._plan, self._stored, self._now_us = plan, stored, now_us
        self._tiled = tiled or [None] * len(plan.tables)

    def __len__(self) -> int:
        """The number of entity rows."""
        first = next(iter(self._columns.values()), [])
        return len(first)

    def to_dict(self) -> dict[str, list[object]]:
        """Return ``{column: values}``: entity columns first, then ``<table>__<feature>`` in ref order.

        Values are plain Python: int, float, str, bytes, bool, list, UTC datetime, or None.
        """
        return {name: list(values) for name, values in self._columns.items()}

    def statuses(self) -> dict[str, list[FeatureStatus]]:
        """Return ``{<table>__<feature>: [status per entity row]}`` (see :class:`FeatureStatus`)."""
        result: dict[str, list[FeatureStatus]] = {}
        for plan, rows, tiled in zip(self._plan.tables, self._stored, self._tiled, strict=True):
            cutoff = None if plan.max_age_us is None else self._now_us - plan.max_age_us
            for column, index in plan.picks:
                statuses = [_status(row, index, None if index in plan.ageless else cutoff) for row in rows]
                slot = plan.tile_slots.get(index)
                if tiled is not None and slot is not None:
                    for n, values in enumerate(tiled):
                        if values is not None:
                            present = values[slot] is not None
                            statuses[n] = FeatureStatus.PRESENT if present else FeatureStatus.NULL_VALUE
                result[column] = statuses
        for requested in self._plan.request.on_demand:  # computed: PRESENT unless null
            for column in requested.columns:
                result[column] = [
                    FeatureStatus.NULL_VALUE if value is None else FeatureStatus.PRESENT
                    for value in self._columns[column]
                ]
        return {column: result[column] for column in self.feature_columns}

    def to_arrow(self) -> pa.Table:
        """Return the values as an Arrow table, typed by the registry (entity and feature types)."""
        plan = self._plan
        arrays = {}
        for name, values in self._columns.items():
            arrow_type = plan.entity_types.get(name) or plan.feature_types.get(name)
            arrays[name] = pa.array(values, type=arrow_type)
        return pa.table(arrays)

    def __repr__(self) -> str:
        return f"OnlineResponse(rows={len(self)}, columns={list(self._columns)})"


def _status(row: StoredRow | None, index: int, cutoff: int | None) -> FeatureStatus:
    if row is None:
        return FeatureStatus.NOT_FOUND
    if type(row) is CorruptRow:
        return FeatureStatus.CORRUPT
    if cutoff is not None and row.event_us < cutoff:
        return FeatureStatus.OUTSIDE_MAX_AGE
    if row.values[index] is None:
        return FeatureStatus.NULL_VALUE
    return FeatureStatus.PRESENT


class PlanCache(Generic[_V]):
    """Plans cached by their refs, bounded by the bytes of the keys (not by their count).

    A key larger than a quarter of the budget is never cached (a huge request pays its own
    planning and cannot evict every other plan); when the budget is full the cache starts over.

    Args:
        max_bytes: the budget: the summed length of the cached refs.
    """

    def __init__(self, max_bytes: int = PLAN_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._plans: dict[tuple[object, tuple[str, ...]], _V] = {}

    def get(self, key: tuple[object, tuple[str, ...]]) -> _V | None:
        """Return the plan cached for ``key`` (a version, the refs), or None."""
        return self._plans.get(key)

    def put(self, key: tuple[object, tuple[str, ...]], plan: _V) -> None:
        """Cache ``plan`` under ``key`` if it fits the budget."""
        cost = 64 + sum(len(ref) + 8 for ref in key[1])
        if cost * 4 > self.max_bytes:
            return
        if self.size + cost > self.max_bytes:
            self.clear()
        self._plans[key] = plan
        self.size += cost

    def clear(self) -> None:
        """Forget every plan."""
        self._plans = {}
        self.size = 0

    def __len__(self) -> int:
        return len(self._plans)


class OnlineReader:
    """Reads online features for a client: cached plans over one store.

    Args:
        store: the online store (opened for the client's project).
        load_catalog: returns the current registry snapshot of the project.
        refresh_seconds: how long a snapshot is used before it is re-read.
        clock: monotonic clock, in seconds (for tests).
    """

    def __init__(
        self,
        store: OnlineStore,
        *,
        load_catalog: Callable[[], Catalog],
        refresh_seconds: float = REGISTRY_REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._load_catalog = load_catalog
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._catalog: Catalog | None = None
        self._expires_at = 0.0
        self._plans: PlanCache[_ReadPlan] = PlanCache()

    def invalidate(self) -> None:
        """Forget the cached registry snapshot and plans (the next read re-reads the registry)."""
        self._catalog = None
        self._plans.clear()

    def read(
        self,
        feature_refs: Sequence[str],
        entity_rows: Sequence[Mapping[str, object]],
        *,
        now_us: int | None = None,
    ) -> OnlineResponse:
        """Return the latest values of ``feature_refs`` for ``entity_rows``.

        Args:
            feature_refs: ``"<table>:<feature>"`` or ``"<table>"`` (all its features).
            entity_rows: one mapping per row, holding every entity the tables are keyed by
                (e.g. ``{"driver_id": 1001}``); other keys pass through to the result.
            now_us: the current time in Unix microseconds, for ``max_age`` and the windows of
                aggregations read from tiles (default: now).

        Raises:
            FeatureRefError, FeatureTableNotFoundError: a bad ref.
            DataError: a missing entity column or a key of the wrong type (naming row and column).
            BackendError: the store failed.
        """
        plan, requests = self._start(feature_refs, entity_rows)
        stored = self.store.read(requests)
        now_us = time.time_ns() // 1000 if now_us is None else now_us
        return self._finish(plan, entity_rows, stored, now_us, self._read_tiles(plan, requests, now_us))

    @property
    def reads_async(self) -> bool:
        """Whether :meth:`read_async` can be used (the store has ``capabilities.async_reads``)."""
        return self.store.capabilities.async_reads

    async def read_async(
        self,
        feature_refs: Sequence[str],
        entity_rows: Sequence[Mapping[str, object]],
        *,
        now_us: int | None = None,
        executor: Executor | None = None,
    ) -> OnlineResponse:
        """:meth:`read`, awaiting the store on the running event loop (only if :attr:`reads_async`).

        Planning and decoding run on the loop; only the store round trip is awaited. On-demand
        features (user code of unknown cost) are computed on ``executor`` (default: the loop's).

        Raises:
            FeatureRefError, FeatureTableNotFoundError, DataError, BackendError: as :meth:`read`.
        """
        plan, requests = self._start(feature_refs, entity_rows)
        stored = await cast(AsyncReads, self.store).read_async(requests)
        now_us = time.time_ns() // 1000 if now_us is None else now_us
        loop = asyncio.get_running_loop()
        tiled = None
        if plan.tiled:  # tile records are read by the (blocking) store, off the loop
            tiled = await loop.run_in_executor(executor, self._read_tiles, plan, requests, now_us)
        if plan.on_demand is not None:
            return await loop.run_in_executor(executor, self._finish, plan, entity_rows, stored, now_us, tiled)
        return self._finish(plan, entity_rows, stored, now_us, tiled)

    def _read_tiles(
        self, plan: _ReadPlan, requests: Sequence[ReadRequest], now_us: int
    ) -> list[list[list[object] | None] | None] | None:
        """Per table, the aggregates at ``now_us`` from its keys' tiles (None: the table is not tiled)."""
        if not plan.tiled:
            return None
        return [
            tiles.read_values(self.store, p.table, request.keys, now_us) if p.tile_slots else None
            for p, request in zip(plan.tables, requests, strict=True)
        ]

    def _start(
        self, feature_refs: Sequence[str], entity_rows: Sequence[Mapping[str, object]]
    ) -> tuple[_ReadPlan, list[ReadRequest]]:
        """The plan and the store requests of a read (keys checked and encoded)."""
        plan = self._plan(feature_refs)
        if isinstance(entity_rows, Mapping):
            raise DataError("entity_rows must be a list of mappings, e.g. [{'driver_id': 1001}]; got one mapping.")
        keys = [encoder.encode_rows(entity_rows) for encoder in plan.encoders]
        return plan, [ReadRequest(p.table, keys[p.group]) for p in plan.tables]

    @staticmethod
    def _finish(
        plan: _ReadPlan,
        entity_rows: Sequence[Mapping[str, object]],
        stored: list[list[StoredRow | None]],
        now_us: int,
        tiled: list[list[list[object] | None] | None] | None = None,
    ) -> OnlineResponse:
        """The response from the stored rows (``max_age`` applied at ``now_us`` to plain features) and the tiles."""
        tiled = tiled or [None] * len(plan.tables)
        columns: dict[str, list[object]] = {}
        names = tuple(entity_rows[0]) if entity_rows else plan.entity_columns
        check_passthrough_columns(names, plan.request.all_columns, where="entity rows")
        for name in names:
            columns[name] = [row.get(name) for row in entity_rows]
        features: dict[str, list[object]] = {}
        for table_plan, rows, from_tiles in zip(plan.tables, stored, tiled, strict=True):
            fresh = rows
            if table_plan.max_age_us is not None:
                cutoff = now_us - table_plan.max_age_us
                fresh = [row if row is not None and row.event_us >= cutoff else None for row in rows]
            for column, index in table_plan.picks:
                kept = rows if index in table_plan.ageless else fresh  # max_age: plain features only
                values = [None if row is None else row.values[index] for row in kept]
                slot = table_plan.tile_slots.get(index)
                if from_tiles is not None and slot is not None:
                    values = [
                        value if tile is None else tile[slot] for value, tile in zip(values, from_tiles, strict=True)
                    ]
                if index in table_plan.counted:  # nothing stored: no event counted, as historical retrieval says
                    values = [0 if v is None and row is None else v for v, row in zip(values, rows, strict=True)]
                features[column] = values
        if plan.on_demand is not None:
            features.update(plan.on_demand.run_rows({**columns, **features}))
        for column in plan.feature_columns:
            columns[column] = features[column]
        return OnlineResponse(
            columns=columns, entity_columns=names, plan=plan, stored=stored, now_us=now_us, tiled=tiled
        )

    def _plan(self, feature_refs: Sequence[str]) -> _ReadPlan:
        if self._catalog is None or self._clock() >= self._expires_at:
            self._refresh()
        cache_key = (None, ref_list(feature_refs))
        plan = self._plans.get(cache_key)
        if plan is not None:
            return plan
        assert self._catalog is not None
        try:
            plan = compile_plan(feature_refs, self._catalog)
        except (FeatureTableNotFoundError, FeatureRefError, EntityNotFoundError):
            # The snapshot may predate an apply made elsewhere: look once more before failing.
            self._refresh()
            plan = compile_plan(feature_refs, self._catalog)
        self._plans.put(cache_key, plan)
        return plan

    def _refresh(self) -> None:
        catalog = self._load_catalog()
        if self._catalog is None or catalog.version != self._catalog.version:
            self._plans.clear()
        self._catalog = catalog
        self._expires_at = self._clock() + self._refresh_seconds


def to_entity_value(text: str, entity: Entity) -> object:
    """Parse a command-line entity value (``"1001"``) as the entity's type.

    Raises:
        DataError: the text is not a value of that type.
    """
    return parse_text(text, entity.value_type, what=f"entity {entity.name!r}")


def parse_text(text: str, value_type: ValueType, *, what: str) -> object:
    """Parse a command-line value as ``value_type`` (scalars; other types stay text).

    Raises:
        DataError: the text is not a value of that type (``what`` names the entity or field).
    """
    try:
        if value_type in (ValueType.INT32, ValueType.INT64):
            return int(text)
        if value_type in (ValueType.FLOAT, ValueType.DOUBLE):
            return float(text)
        if value_type is ValueType.BOOL:
            lowered = text.strip().lower()
            if lowered in ("true", "1", "yes"):
                return True
            if lowered in ("false", "0", "no"):
                return False
            raise ValueError("expected true or false")
        if value_type is ValueType.BYTES:
            return bytes.fromhex(text[2:]) if text.startswith("0x") else text.encode("utf-8")
    except ValueError as exc:
        raise DataError(f"{what}: {text!r} is not a valid {value_type} value: {exc}") from None
    return text
