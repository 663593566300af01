"""Entities: the keys that feature values are attached to (a driver, a customer)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from provender.definitions._validate import check_identifier, freeze_str_mapping, reduce_definition
from provender.definitions.types import ENTITY_KEY_TYPES, ValueType
from provender.errors import DefinitionError


@dataclass(frozen=True, slots=True, kw_only=True)
class Entity:
    """A named key, such as ``driver_id``, that feature tables are keyed by.

    Args:
        name: identifier; also the entity column's name in entity rows and sources.
        value_type: type of the key (INT32, INT64, STRING, BYTES or BOOL).
        description: free text for humans.
        labels: free-form string tags.

    Examples:
        >>> Entity(name="driver_id", value_type=ValueType.INT64).name
        'driver_id'
    """

    name: str
    value_type: ValueType
    description: str = ""
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    __reduce__ = reduce_definition

    def __post_init__(self) -> None:
        what = f"Entity {self.name!r}"
        check_identifier(what, "name", self.name)
        try:
            value_type = ValueType(self.value_type)
        except ValueError:
            raise DefinitionError(
                what, "value_type", f"{self.value_type!r} is not a ValueType; use one of {list(ValueType)}"
            ) from None
        if value_type not in ENTITY_KEY_TYPES:
            allowed = ", ".join(sorted(ENTITY_KEY_TYPES))
            raise DefinitionError(what, "value_type", f"{value_type} cannot be an entity key; use one of {allowed}")
        if not isinstance(self.description, str):
            raise DefinitionError(what, "description", "must be a string")
        object.__setattr__(self, "value_type", value_type)
        labels = freeze_str_mapping(what, "labels", self.labels)
        object.__setattr__(self, "labels", MappingProxyType(dict(labels)))
