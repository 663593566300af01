"""Feature statistics: the result model, and the SQL every offline engine runs to compute it.

The rows described are those of a feature table's batch source with
``start <= event_timestamp < end`` (every row, not only the latest per key). Per feature:

- every type: ``count`` (non-null values) and ``null_count``;
- numbers (``INT32``, ``INT64``, ``FLOAT``, ``DOUBLE``, ``BOOL`` as 0/1): ``mean``, ``std``
  (sample standard deviation, ``ddof=1`` as in pandas), ``min``, ``max``, ``zeros``, the
  quantiles :data:`QUANTILES`, and a histogram of :data:`HISTOGRAM_BINS` equal-width bins from
  ``min`` to ``max`` (``[e_i, e_i+1)``, the last bin closed, as ``numpy.histogram``). NaN values
  are counted in ``nan_count`` and left out of the other number statistics;
- strings and bytes: ``distinct_count``, the :data:`TOP_VALUES` most frequent values with their
  counts (ties by value), and the length range and mean (characters for strings, bytes for bytes);
- lists: the length range and mean (a null list has no length);
- timestamps: ``count`` and ``null_count`` only.

Everything is exact: quantiles are the order statistics of the values with linear
interpolation (``numpy.quantile``'s default, to the bit), histograms count exactly as
``numpy.histogram`` with the same edges, distinct counts are exact ``COUNT(DISTINCT ...)``.
Means and standard deviations are exact up to the floating-point summation order (relative
error ~1e-12). Every engine computes them with the same SQL (:mod:`.statistics_sql`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Literal

import pyarrow as pa

from provender.definitions import ValueType
from provender.offline.plan import TableJoin

QUANTILES: tuple[float, ...] = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
HISTOGRAM_BINS = 20
TOP_VALUES = 10

Kind = Literal["number", "string", "bytes", "list", "timestamp"]

_NUMBERS = {ValueType.BOOL, ValueType.INT32, ValueType.INT64, ValueType.FLOAT, ValueType.DOUBLE}
_FLOATS = {ValueType.FLOAT, ValueType.DOUBLE}


def kind_of(value_type: ValueType) -> Kind:
    """Return which statistics a feature of ``value_type`` gets."""
    if value_type.is_list:
        return "list"
    if value_type in _NUMBERS:
        return "number"
    if value_type is ValueType.STRING:
        return "string"
    if value_type is ValueType.BYTES:
        return "bytes"
    return "timestamp"


@dataclass(frozen=True, slots=True, kw_only=True)
class Histogram:
    """Equal-width bins: ``counts[i]`` values in ``[edges[i], edges[i+1])``, the last bin closed."""

    edges: tuple[float, ...]
    counts: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureStatistics:
    """The statistics of one feature (fields that do not apply to its kind are ``None``).

    Top values of bytes features are hex strings.
    """

    name: str
    value_type: ValueType
    kind: Kind
    count: int
    null_count: int
    nan_count: int | None = None
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    zeros: int | None = None
    quantiles: tuple[float, ...] | None = None
    histogram: Histogram | None = None
    distinct_count: int | None = None
    top_values: tuple[tuple[str, int], ...] | None = None
    min_length: int | None = None
    max_length: int | None = None
    mean_length: float | None = None

    def quantile(self, q: float) -> float | None:
        """Return the quantile ``q`` (one of :data:`QUANTILES`), or ``None`` without values."""
        return None if self.quantiles is None else self.quantiles[QUANTILES.index(q)]

    def to_dict(self) -> dict[str, object]:
        """Return the statistics as JSON-compatible values."""
        data = asdict(self)
        data["value_type"] = self.value_type.value
        data["quantiles"] = (
            None if self.quantiles is None else dict(zip(_quantile_names(), self.quantiles, strict=True))
        )
        data["top_values"] = None if self.top_values is None else [list(v) for v in self.top_values]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> FeatureStatistics:
        """Rebuild statistics from :meth:`to_dict`'s output."""
        values = dict(data)
        values["value_type"] = ValueType(str(values["value_type"]))
        quantiles = values.get("quantiles")
        if isinstance(quantiles, Mapping):  # by name: stored JSON may order keys differently
            values["quantiles"] = tuple(float(quantiles[name]) for name in _quantile_names())
        histogram = values.get("histogram")
        if isinstance(histogram, Mapping):
            values["histogram"] = Histogram(edges=tuple(histogram["edges"]), counts=tuple(histogram["counts"]))
        top = values.get("top_values")
        values["top_values"] = None if top is None else tuple((str(v), int(c)) for v, c in top)  # type: ignore[attr-defined]
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True, kw_only=True)
class TableStatistics:
    """The statistics of a feature table's rows with ``start <= event_timestamp < end``."""

    table: str
    start: datetime
    end: datetime
    rows: int
    features: tuple[FeatureStatistics, ...]
    engine: str = ""
    job_id: str | None = None
    notes: tuple[str, ...] = field(default=())

    def __getitem__(self, name: str) -> FeatureStatistics:
        """Return the statistics of feature ``name``."""
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(f"no statistics for feature {name!r}; known: {[f.name for f in self.features]}")

    def to_dict(self) -> dict[str, object]:
        """Return the statistics as JSON-compatible values (times as ISO 8601)."""
        return {
            "table": self.table,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "rows": self.rows,
            "engine": self.engine,
            "job_id": self.job_id,
            "notes": list(self.notes),
            "features": [f.to_dict() for f in self.features],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> TableStatistics:
        """Rebuild statistics from :meth:`to_dict`'s output."""
        features = data["features"]
        assert isinstance(features, list)
        return cls(
            table=str(data["table"]),
            start=datetime.fromisoformat(str(data["start"])),
            end=datetime.fromisoformat(str(data["end"])),
            rows=int(data["rows"]),  # type: ignore[call-overload]
            engine=str(data.get("engine", "")),
            job_id=None if data.get("job_id") is None else str(data["job_id"]),
            notes=tuple(str(n) for n in data.get("notes", ())),  # type: ignore[attr-defined]
            features=tuple(FeatureStatistics.from_dict(f) for f in features),
        )

    def to_arrow(self) -> pa.Table:
        """Return one row per feature; quantiles, histograms and top values as list columns."""
        rows = [f.to_dict() for f in self.features]
        columns: dict[str, list[object]] = {name: [r[name] for r in rows] for name in _SCALAR_COLUMNS}
        for q, name in zip(QUANTILES, _quantile_names(), strict=True):
            columns[name] = [f.quantile(q) for f in self.features]
        columns["histogram_edges"] = [None if f.histogram is None else list(f.histogram.edges) for f in self.features]
        columns["histogram_counts"] = [None if f.histogram is None else list(f.histogram.counts) for f in self.features]
        columns["top_values"] = [
            None if f.top_values is None else [{"value": v, "count": c} for v, c in f.top_values] for f in self.features
        ]
        return pa.table({name: pa.array(values, type=_ARROW_TYPES.get(name)) for name, values in columns.items()})

    def __repr__(self) -> str:
        """Return a readable table: one line per feature."""
        header = f"TableStatistics({self.table!r}, [{self.start.isoformat()}, {self.end.isoformat()}), rows={self.rows}"
        lines = [header + (f", job={self.job_id}" if self.job_id else "") + ")"]
        for f in self.features:
            lines.append(f"  {f.name} ({f.value_type.value}): count={f.count} nulls={f.null_count}{_describe(f)}")
        return "\n".join(lines)


def _describe(f: FeatureStatistics) -> str:
    if f.kind == "number" and f.count:
        return (
            f" mean={_g(f.mean)} std={_g(f.std)} min={_g(f.min)} p50={_g(f.quantile(0.5))} max={_g(f.max)}"
            f" zeros={f.zeros}" + (f" nan={f.nan_count}" if f.nan_count else "")
        )
    if f.kind in ("string", "bytes") and f.count:
        top = ", ".join(f"{v!r}: {c}" for v, c in (f.top_values or ())[:3])
        return f" distinct={f.distinct_count} length=[{f.min_length}, {f.max_length}] top={{{top}}}"
    if f.kind == "list" and f.count:
        return f" length=[{f.min_length}, {f.max_length}] mean_length={_g(f.mean_length)}"
    return ""


def _g(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _quantile_names() -> list[str]:
    return [f"p{round(q * 100)}" for q in QUANTILES]


_SCALAR_COLUMNS = (
    "name",
    "value_type",
    "kind",
    "count",
    "null_count",
    "nan_count",
    "mean",
    "std",
    "min",
    "max",
    "zeros",
    "distinct_count",
    "min_length",
    "max_length",
    "mean_length",
)
_ARROW_TYPES: dict[str, pa.DataType] = {
    "name": pa.string(),
    "value_type": pa.string(),
    "kind": pa.string(),
    **{
        c: pa.int64()
        for c in ("count", "null_count", "nan_count", "zeros", "distinct_count", "min_length", "max_length")
    },
    **{c: pa.float64() for c in ("mean", "std", "min", "max", "mean_length", *_quantile_names())},
    "histogram_edges": pa.list_(pa.float64()),
    "histogram_counts": pa.list_(pa.int64()),
    "top_values": pa.list_(pa.struct([("value", pa.string()), ("count", pa.int64())])),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class StatisticsPlan:
    """Statistics of ``join.features`` over the source rows with ``start <= event_timestamp < end``."""

    join: TableJoin
    start: datetime
    end: datetime


def histogram_edges(low: float, high: float) -> tuple[float, ...] | None:
    """The :data:`HISTOGRAM_BINS` + 1 edges from ``low`` to ``high`` (``numpy.linspace``'s), or None if not finite."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    if low == high:
        return (low, high)
    step = (high - low) / HISTOGRAM_BINS
    return (low, *(low + i * step for i in range(1, HISTOGRAM_BINS)), high)
