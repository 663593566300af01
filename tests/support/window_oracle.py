"""A brute-force windowed aggregation, written event by event to be obviously correct.

It states the rule of :mod:`provender.offline.plan` directly: for an entity key and a time *T*,
an aggregation covers the key's events with ``T - window < event_timestamp <= T`` whose input
value is not null; ``count`` and ``count_distinct`` of no event are 0, the others null; ``last``
is the value of the event with the greatest ``(event_timestamp, created_timestamp)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import provender as pv
from provender.definitions import sketch


def aggregate(
    events: Sequence[Mapping[str, Any]],
    aggregation: pv.Aggregation,
    *,
    key: Mapping[str, object],
    at: datetime,
    event_column: str = "event_timestamp",
    created_column: str = "created_timestamp",
) -> Any:
    """The value of ``aggregation`` for ``key`` at ``at`` over ``events`` (rows by source column)."""
    rows = [
        e
        for e in events
        if all(e[name] == value for name, value in key.items())
        and at - aggregation.window < e[event_column] <= at
        and e[aggregation.column] is not None
    ]
    values = [e[aggregation.column] for e in rows]
    function = aggregation.function
    if function == "count":
        return len(values)
    if function == "count_distinct":
        return len(set(values))
    if function == "approx_count_distinct":  # the sketch's registers, filled value by value
        registers: dict[int, int] = {}
        for value in values:
            register, rank = sketch.register(value)
            registers[register] = max(rank, registers.get(register, 0))
        return sketch.estimate(registers)
    if not values:
        return None
    if function == "sum":
        return sum(values)
    if function == "mean":
        return sum(values) / len(values)
    if function == "min":
        return min(values)
    if function == "max":
        return max(values)
    assert function == "last", function
    latest = max(rows, key=lambda e: (e[event_column], e[created_column]))
    return latest[aggregation.column]
