"""The readable diff kept in the audit trail for a changed definition."""

from __future__ import annotations

from datetime import timedelta

import provender as pv
from provender.registry.changes import MAX_LINE, MAX_LINES, field_diff

SOURCE = pv.FileSource(path="/data/trips", event_timestamp_column="ts")


def table(**overrides: object) -> pv.FeatureTable:
    values: dict[str, object] = {
        "name": "trips",
        "entities": ["driver_id"],
        "features": [
            pv.Feature("trips", pv.ValueType.INT64, description="Completed trips"),
            pv.Feature("rate", pv.ValueType.DOUBLE, expect=[pv.expect.between(0, 1)]),
        ],
        "batch_source": SOURCE,
        "labels": {"team": "pricing"},
    }
    values.update(overrides)
    return pv.FeatureTable(**values)  # type: ignore[arg-type]


def test_each_changed_field_is_a_line_with_its_old_and_new_values() -> None:
    new = table(
        max_age=timedelta(days=2),
        labels={"team": "growth"},
        batch_source=pv.FileSource(path="/data/trips_v2", event_timestamp_column="ts"),
    )
    assert field_diff(table(), new) == (
        "batch_source: FileSource(path='/data/trips', event_timestamp_column='ts') -> "
        "FileSource(path='/data/trips_v2', event_timestamp_column='ts')",
        "max_age: none -> 2 days, 0:00:00",
        "labels: {team='pricing'} -> {team='growth'}",
    )
    assert field_diff(table(), table()) == ()


def test_features_are_compared_by_name() -> None:
    new = table(
        features=[
            pv.Feature("trips", pv.ValueType.INT32, description="Trips today"),
            pv.Feature("tag", pv.ValueType.STRING),
            pv.Feature("rate", pv.ValueType.DOUBLE, expect=[pv.expect.between(0, 2)]),
        ]
    )
    lines = field_diff(table(), new)
    assert lines[0] == "+ feature tag (STRING)"
    assert lines[1] == "~ feature trips: value_type INT64 -> INT32; description 'Completed trips' -> 'Trips today'"
    assert lines[2].startswith("~ feature rate: expect [between") and "-> [between" in lines[2]
    removed = table(features=[pv.Feature("trips", pv.ValueType.INT64, description="Completed trips")])
    assert field_diff(table(), removed) == ("- feature rate",)
    swapped = table(features=list(reversed(table().features)))
    assert field_diff(table(), swapped) == ("features reordered: rate, trips",)


def test_lines_and_their_number_are_bounded() -> None:
    many = table(features=[pv.Feature(f"f{i}", pv.ValueType.INT64) for i in range(80)])
    lines = field_diff(table(), many)
    assert len(lines) == MAX_LINES and lines[-1] == f"... and {80 + 2 - MAX_LINES + 1} more"
    long = field_diff(table(), table(labels={"note": "x" * 1000}))
    assert len(long[0]) == MAX_LINE and long[0].endswith("…")
