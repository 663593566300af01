"""Drift between two sets of statistics: population stability index and Jensen-Shannon distance.

Numbers are compared by histogram on shared bin edges: :data:`BINS` equal-width bins over the
union of both ranges, each side's stored 20-bin histogram spread onto them assuming values are
uniform within a stored bin (so the comparison needs no raw data; it is exact when the two
histograms already share edges). Strings and bytes are compared by their top values, with the
rest of the values in one "other" bucket (a value in one side's top list but not the other's
counts as absent from the other, an approximation that overstates drift a little). Lists and
timestamps are not compared.

- PSI = sum((c - b) * ln(c / b)) over buckets, each proportion floored at :data:`EPSILON`;
  the usual reading: < 0.1 stable, 0.1-0.2 moderate, > 0.2 significant shift.
- Jensen-Shannon distance = sqrt(JS divergence), log base 2: in [0, 1].

A feature is drifted when its PSI reaches ``psi_threshold`` or its JS distance ``js_threshold``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from provender.offline.statistics import FeatureStatistics, Histogram, TableStatistics

BINS = 20
EPSILON = 1e-4


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureDrift:
    """The drift of one feature (``psi`` and ``js_distance`` None when it cannot be compared)."""

    name: str
    psi: float | None
    js_distance: float | None
    drifted: bool
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftReport:
    """Per feature drift between a baseline and a current set of statistics."""

    table: str
    features: tuple[FeatureDrift, ...]
    psi_threshold: float
    js_threshold: float

    @property
    def drifted(self) -> list[str]:
        """The names of the drifted features."""
        return [f.name for f in self.features if f.drifted]

    def __getitem__(self, name: str) -> FeatureDrift:
        """The drift of feature ``name``."""
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(f"no drift for feature {name!r}; known: {[f.name for f in self.features]}")

    def to_dict(self) -> dict[str, object]:
        """JSON-ready values."""
        return {
            "table": self.table,
            "psi_threshold": self.psi_threshold,
            "js_threshold": self.js_threshold,
            "features": [
                {"name": f.name, "psi": f.psi, "js_distance": f.js_distance, "drifted": f.drifted, "note": f.note}
                for f in self.features
            ],
        }

    def to_arrow(self) -> pa.Table:
        """One row per feature."""
        return pa.Table.from_pylist(
            [{"name": f.name, "psi": f.psi, "js_distance": f.js_distance, "drifted": f.drifted} for f in self.features],
            schema=pa.schema(
                [("name", pa.string()), ("psi", pa.float64()), ("js_distance", pa.float64()), ("drifted", pa.bool_())]
            ),
        )

    def __repr__(self) -> str:
        """A readable table."""
        lines = [f"DriftReport({self.table!r}, psi >= {self.psi_threshold} or js >= {self.js_threshold} is drift)"]
        for f in self.features:
            if f.psi is None:
                lines.append(f"  {f.name}: not compared ({f.note})")
            else:
                mark = "DRIFTED" if f.drifted else "ok"
                lines.append(f"  {f.name}: psi={f.psi:.4f} js={f.js_distance:.4f} {mark}")
        return "\n".join(lines)


def compare(
    baseline: TableStatistics, current: TableStatistics, *, psi_threshold: float = 0.2, js_threshold: float = 0.1
) -> DriftReport:
    """Compare the features the two statistics share (by name), in the baseline's order."""
    names = {f.name for f in current.features}
    drifts = []
    for base in baseline.features:
        if base.name not in names:
            continue
        b, c = _distributions(base, current[base.name])
        if b is None or c is None:
            drifts.append(FeatureDrift(name=base.name, psi=None, js_distance=None, drifted=False, note=_why(base)))
            continue
        psi, js = population_stability_index(b, c), jensen_shannon_distance(b, c)
        drifts.append(
            FeatureDrift(name=base.name, psi=psi, js_distance=js, drifted=psi >= psi_threshold or js >= js_threshold)
        )
    return DriftReport(
        table=baseline.table, features=tuple(drifts), psi_threshold=psi_threshold, js_threshold=js_threshold
    )


def population_stability_index(baseline: Sequence[float], current: Sequence[float]) -> float:
    """PSI of two distributions over the same buckets (proportions floored at :data:`EPSILON`)."""
    total = 0.0
    for b, c in zip(baseline, current, strict=True):
        b, c = max(b, EPSILON), max(c, EPSILON)  # noqa: PLW2901 (floored proportions)
        total += (c - b) * math.log(c / b)
    return total


def jensen_shannon_distance(baseline: Sequence[float], current: Sequence[float]) -> float:
    """The square root of the Jensen-Shannon divergence (log base 2) of two distributions."""
    divergence = 0.0
    for b, c in zip(baseline, current, strict=True):
        m = (b + c) / 2
        if b > 0:
            divergence += 0.5 * b * math.log2(b / m)
        if c > 0:
            divergence += 0.5 * c * math.log2(c / m)
    return math.sqrt(max(divergence, 0.0))


def _why(feature: FeatureStatistics) -> str:
    if feature.kind in ("list", "timestamp"):
        return f"{feature.kind} features are not compared"
    return "no values on one side"


def _distributions(
    base: FeatureStatistics, current: FeatureStatistics
) -> tuple[list[float] | None, list[float] | None]:
    if base.kind == "number" and base.histogram is not None and current.histogram is not None:
        low = min(base.histogram.edges[0], current.histogram.edges[0])
        high = max(base.histogram.edges[-1], current.histogram.edges[-1])
        edges = [low + (high - low) * i / BINS for i in range(BINS + 1)] if high > low else [low, high]
        return _rebin(base.histogram, edges), _rebin(current.histogram, edges)
    if base.kind in ("string", "bytes") and base.top_values and current.top_values:
        keys = sorted({v for v, _ in base.top_values} | {v for v, _ in current.top_values})
        return _categorical(base, keys), _categorical(current, keys)
    return None, None


def _rebin(histogram: Histogram, edges: Sequence[float]) -> list[float]:
    """Spread ``histogram``'s counts onto ``edges`` (uniform within a bin), as proportions."""
    out = [0.0] * (len(edges) - 1)
    total = sum(histogram.counts)
    for n, count in enumerate(histogram.counts):
        if not count:
            continue
        low, high = histogram.edges[n], histogram.edges[n + 1]
        if high <= low:  # a point mass (every value equal)
            out[_bucket(edges, low)] += count
            continue
        for k in range(len(out)):
            overlap = min(high, edges[k + 1]) - max(low, edges[k])
            if overlap > 0:
                out[k] += count * overlap / (high - low)
    return [c / total for c in out] if total else out


def _bucket(edges: Sequence[float], value: float) -> int:
    for k in range(len(edges) - 1):
        if value < edges[k + 1]:
            return k
    return len(edges) - 2


def _categorical(feature: FeatureStatistics, keys: Sequence[str]) -> list[float]:
    counts = dict(feature.top_values or ())
    total = feature.count
    shares = [counts.get(k, 0) / total for k in keys]
    return [*shares, max(total - sum(counts.values()), 0) / total]
