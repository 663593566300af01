"""Windowed aggregations: features computed over a key's events in a sliding time window.

For an entity row at time *T*, an aggregation covers the key's source events with
``T - window < event_timestamp <= T`` (the lower bound exclusive, the upper inclusive). Null
input values are skipped, as in SQL. With no event in the window, ``count`` and
``count_distinct`` are ``0`` and the other functions are null. ``last`` is the value of the
latest event in the window by ``(event_timestamp, created_timestamp)``, the point-in-time
rule's ranking. ``count_distinct`` is exact (its error is zero); ``approx_count_distinct`` is a
HyperLogLog estimate (``sketch.py``: 1.6 % relative standard error) with the same registers
offline and online, so both give the same estimate.

Examples:
    >>> from datetime import timedelta
    >>> agg = Aggregation(column="fare", function="sum", window=timedelta(days=7), name="fare_sum_7d")
    >>> agg.output_type(ValueType.FLOAT)
    <ValueType.DOUBLE: 'DOUBLE'>
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from provender.definitions._validate import check_identifier
from provender.definitions.types import ValueType
from provender.errors import DefinitionError

_NUMERIC: Final = frozenset({ValueType.INT32, ValueType.INT64, ValueType.FLOAT, ValueType.DOUBLE})
_ORDERED: Final = _NUMERIC | {ValueType.STRING, ValueType.UNIX_TIMESTAMP}
_SCALAR: Final = frozenset(t for t in ValueType if not t.is_list)

FUNCTIONS: Final[dict[str, frozenset[ValueType]]] = {
    "count": frozenset(ValueType),
    "count_distinct": _SCALAR,
    "approx_count_distinct": frozenset(
        {ValueType.INT32, ValueType.INT64, ValueType.FLOAT, ValueType.DOUBLE, ValueType.STRING}
    ),
    "sum": _NUMERIC,
    "mean": _NUMERIC,
    "min": _ORDERED,
    "max": _ORDERED,
    "last": frozenset(ValueType),
}
"""Each supported function and the input value types it accepts."""

__all__ = ["FUNCTIONS", "Aggregation"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Aggregation:
    """A feature aggregating one column of a feature table's source over a time window.

    Args:
        column: the input: a feature declared in the table's ``features`` (a source column).
        function: one of ``count``, ``count_distinct``, ``approx_count_distinct``, ``sum``,
            ``mean``, ``min``, ``max``, ``last``.
        window: a positive duration; events with ``T - window < event_timestamp <= T`` count.
        name: the feature's name (ref ``<table>:<name>``, column ``<table>__<name>``).
        description: free text.
    """

    column: str
    function: str
    window: timedelta
    name: str
    description: str = ""

    def __post_init__(self) -> None:
        what = f"Aggregation {self.name!r}"
        check_identifier(what, "name", self.name)
        check_identifier(what, "column", self.column)
        if self.function not in FUNCTIONS:
            raise DefinitionError(
                what, "function", f"{self.function!r} is not supported; use one of {', '.join(FUNCTIONS)}"
            )
        if not isinstance(self.window, timedelta) or self.window <= timedelta(0):
            raise DefinitionError(what, "window", f"must be a positive timedelta, got {self.window!r}")
        if self.window % timedelta(microseconds=1):
            raise DefinitionError(what, "window", f"must be a whole number of microseconds, got {self.window!r}")
        if not isinstance(self.description, str):
            raise DefinitionError(what, "description", "must be a string")

    @property
    def counts(self) -> bool:
        """Whether the function counts (``count``, ``count_distinct``, ``approx_count_distinct``): 0 with no event."""
        return self.function in ("count", "count_distinct", "approx_count_distinct")

    def output_type(self, input_type: ValueType) -> ValueType:
        """The value type of the aggregate over an input of ``input_type``.

        Raises:
            DefinitionError: ``function`` does not accept ``input_type``.
        """
        if input_type not in FUNCTIONS[self.function]:
            allowed = ", ".join(sorted(t.value for t in FUNCTIONS[self.function]))
            raise DefinitionError(
                f"Aggregation {self.name!r}",
                "function",
                f"{self.function!r} cannot aggregate column {self.column!r} of type {input_type.value}; "
                f"it accepts {allowed}",
            )
        if self.counts:
            return ValueType.INT64
        if self.function == "mean" or (self.function == "sum" and input_type in (ValueType.FLOAT, ValueType.DOUBLE)):
            return ValueType.DOUBLE
        if self.function == "sum":
            return ValueType.INT64
        return input_type
