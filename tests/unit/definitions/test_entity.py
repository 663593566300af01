"""Entity: construction, immutability and every validation rule."""

from __future__ import annotations

import dataclasses

import pytest

from provender.definitions import Entity, ValueType
from provender.definitions.types import ENTITY_KEY_TYPES
from provender.errors import DefinitionError
from tests.unit.definitions.expect import definition_error

BAD_NAMES = ["driver id", "1driver", "driver-id", "", "class", "None", "driver__id", "__id", "é\u0301", "a.b"]


def test_valid_entity() -> None:
    entity = Entity(name="driver_id", value_type=ValueType.INT64, description="Driver id", labels={"team": "ride"})
    assert entity.name == "driver_id"
    assert entity.value_type is ValueType.INT64
    assert entity.description == "Driver id"
    assert dict(entity.labels) == {"team": "ride"}


def test_defaults() -> None:
    entity = Entity(name="driver_id", value_type=ValueType.INT64)
    assert entity.description == ""
    assert dict(entity.labels) == {}


def test_value_type_given_as_string_is_converted() -> None:
    entity = Entity(name="driver_id", value_type="STRING")  # type: ignore[arg-type]
    assert entity.value_type is ValueType.STRING
    assert entity == Entity(name="driver_id", value_type=ValueType.STRING)


@pytest.mark.parametrize("value_type", sorted(ENTITY_KEY_TYPES))
def test_every_key_type_is_allowed(value_type: ValueType) -> None:
    assert Entity(name="key", value_type=value_type).value_type is value_type


@pytest.mark.parametrize("value_type", sorted(set(ValueType) - ENTITY_KEY_TYPES))
def test_non_key_types_are_refused(value_type: ValueType) -> None:
    with definition_error("Entity 'key'", "value_type"):
        Entity(name="key", value_type=value_type)


@pytest.mark.parametrize("value_type", ["INTEGER", "int64", None, 64])
def test_unknown_value_type_is_refused(value_type: object) -> None:
    with definition_error("Entity 'key'", "value_type"):
        Entity(name="key", value_type=value_type)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused(name: str) -> None:
    with definition_error(f"Entity {name!r}", "name"):
        Entity(name=name, value_type=ValueType.INT64)


@pytest.mark.parametrize("name", [None, 5, b"driver_id"])
def test_non_string_names_are_refused(name: object) -> None:
    with definition_error("Entity", "name"):
        Entity(name=name, value_type=ValueType.INT64)  # type: ignore[arg-type]


def test_name_with_double_underscore_explains_why() -> None:
    with pytest.raises(DefinitionError, match="contains '__', which separates table and feature"):
        Entity(name="driver__id", value_type=ValueType.INT64)


def test_description_must_be_a_string() -> None:
    with definition_error("Entity 'driver_id'", "description"):
        Entity(name="driver_id", value_type=ValueType.INT64, description=None)  # type: ignore[arg-type]


@pytest.mark.parametrize("labels", [{"owner": 1}, {1: "owner"}, {"owner": None}, ["owner"], "owner=ride", 5])
def test_bad_labels_are_refused(labels: object) -> None:
    with definition_error("Entity 'driver_id'", "labels"):
        Entity(name="driver_id", value_type=ValueType.INT64, labels=labels)  # type: ignore[arg-type]


def test_entity_is_frozen() -> None:
    entity = Entity(name="driver_id", value_type=ValueType.INT64)
    with pytest.raises(dataclasses.FrozenInstanceError):
        entity.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        entity.value_type = ValueType.STRING  # type: ignore[misc]
    assert entity == Entity(name="driver_id", value_type=ValueType.INT64)


def test_labels_cannot_be_mutated_through_the_entity_or_the_caller() -> None:
    labels = {"owner": "ride"}
    entity = Entity(name="driver_id", value_type=ValueType.INT64, labels=labels)
    labels["owner"] = "someone else"
    assert dict(entity.labels) == {"owner": "ride"}
    with pytest.raises(TypeError):
        entity.labels["owner"] = "x"  # type: ignore[index]


def test_equality_ignores_label_order_but_not_values() -> None:
    first = Entity(name="driver_id", value_type=ValueType.INT64, labels={"a": "1", "b": "2"})
    assert first == Entity(name="driver_id", value_type=ValueType.INT64, labels={"b": "2", "a": "1"})
    assert first != Entity(name="driver_id", value_type=ValueType.INT64, labels={"a": "1", "b": "3"})
    assert first != Entity(name="driver_id", value_type=ValueType.INT64, labels={"a": "1", "b": "2"}, description="x")
    assert first != Entity(name="driver_id", value_type=ValueType.INT32, labels={"a": "1", "b": "2"})


def test_entity_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        Entity("driver_id", ValueType.INT64)  # type: ignore[call-arg]
