"""Feature refs: ``"<table>:<feature>"``, or a bare ``"<table>"`` for all its features."""

from __future__ import annotations

from dataclasses import dataclass

from provender.errors import FeatureRefError

COLUMN_SEPARATOR = "__"


def result_column(table: str, feature: str) -> str:
    """Return the result column of ``feature`` of ``table``: ``<table>__<feature>``.

    The one place this name is built; every path (historical, online, HTTP, gRPC) uses it,
    through :class:`~provender.definitions.request.FeatureRequest`.

    Examples:
        >>> result_column("driver_statistics", "conv_rate")
        'driver_statistics__conv_rate'
    """
    return f"{table}{COLUMN_SEPARATOR}{feature}"


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureRef:
    """A parsed feature ref. ``feature`` is None for a bare table ref (all features).

    Examples:
        >>> FeatureRef.parse("driver_statistics:conv_rate")
        FeatureRef(table='driver_statistics', feature='conv_rate')
        >>> FeatureRef.parse("driver_statistics").feature is None
        True
    """

    table: str
    feature: str | None = None

    @classmethod
    def parse(cls, ref: str) -> FeatureRef:
        """Parse ``"table:feature"`` or ``"table"``; raise FeatureRefError if malformed."""
        if not isinstance(ref, str):
            raise FeatureRefError(repr(ref), "must be a string like 'table:feature'")
        parts = ref.split(":")
        if len(parts) > 2 or not all(part and part.strip() == part for part in parts):
            raise FeatureRefError(ref, "expected '<table>:<feature>' or '<table>'")
        return cls(table=parts[0], feature=parts[1] if len(parts) == 2 else None)

    @property
    def column(self) -> str:
        """The result column name, ``<table>__<feature>``."""
        if self.feature is None:
            raise FeatureRefError(self.table, "a bare table ref has no single column; expand it first")
        return result_column(self.table, self.feature)

    def __str__(self) -> str:
        return self.table if self.feature is None else f"{self.table}:{self.feature}"
