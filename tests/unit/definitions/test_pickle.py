"""Definitions pickle (to reach other processes, e.g. Spark executors) and come back equal and frozen."""

from __future__ import annotations

import pickle
from datetime import timedelta
from types import MappingProxyType

import pytest

import provender as pv
from provender.errors import DefinitionError

DRIVER = pv.Entity(name="driver_id", value_type=pv.ValueType.INT64, labels={"team": "ops"})
TABLE = pv.FeatureTable(
    name="driver_stats",
    entities=["driver_id"],
    features=[pv.Feature("trips", pv.ValueType.INT64), pv.Feature("tags", pv.ValueType.STRING_LIST)],
    batch_source=pv.FileSource(
        path="data/*.csv",
        event_timestamp_column="ts",
        created_timestamp_column="created",
        field_mapping={"n_trips": "trips"},
        file_format=pv.CsvFormat(delimiter=";"),
    ),
    max_age=timedelta(hours=3),
    labels={"owner": "me"},
)


@pytest.mark.parametrize("definition", [DRIVER, TABLE, TABLE.batch_source], ids=["entity", "table", "source"])
def test_definitions_survive_pickling(definition: object) -> None:
    copy = pickle.loads(pickle.dumps(definition))
    assert copy == definition
    assert type(copy) is type(definition)


def test_a_pickled_table_stays_frozen() -> None:
    copy = pickle.loads(pickle.dumps(TABLE))
    assert isinstance(copy.labels, MappingProxyType)
    assert copy.batch_source is not None and isinstance(copy.batch_source.field_mapping, MappingProxyType)
    with pytest.raises(TypeError):
        copy.labels["owner"] = "someone else"  # type: ignore[index]


def test_unpickling_checks_the_definition_again() -> None:
    """A pickle is rebuilt through the constructor, so a tampered one fails like bad input."""
    data = pickle.dumps(DRIVER).replace(b"driver_id", b"driver-id")
    with pytest.raises(DefinitionError, match="driver-id"):
        pickle.loads(data)
