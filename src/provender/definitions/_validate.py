"""Checks shared by the definition classes (identifiers, labels)."""

from __future__ import annotations

import dataclasses
import keyword
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from provender.errors import DefinitionError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_identifier(obj: str, field: str, value: object) -> None:
    """Raise DefinitionError unless ``value`` is a non-keyword Python-style identifier."""
    if not isinstance(value, str) or not value:
        raise DefinitionError(obj, field, f"must be a non-empty string, got {value!r}")
    if not _IDENTIFIER.match(value) or keyword.iskeyword(value):
        raise DefinitionError(
            obj, field, f"{value!r} is not an identifier (letters, digits and '_', not starting with a digit)"
        )
    if "__" in value:
        raise DefinitionError(obj, field, f"{value!r} contains '__', which separates table and feature in results")


def check_column(obj: str, field: str, value: object) -> None:
    """Raise DefinitionError unless ``value`` is a non-empty column name."""
    if not isinstance(value, str) or not value.strip():
        raise DefinitionError(obj, field, f"must name a column, got {value!r}")


def freeze_str_mapping(obj: str, field: str, value: object) -> tuple[tuple[str, str], ...]:
    """Return a mapping of str to str as sorted pairs, or raise DefinitionError."""
    if value is None:
        return ()
    if isinstance(value, tuple):
        value = dict(value)
    if not isinstance(value, Mapping):
        raise DefinitionError(obj, field, f"must be a mapping of strings to strings, got {type(value).__name__}")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise DefinitionError(obj, field, f"entry {key!r}: {item!r} must map a string to a string")
    return tuple(sorted(value.items()))


def reduce_definition(obj: DataclassInstance) -> tuple[Callable[..., object], tuple[object, ...]]:
    """``__reduce__`` of a frozen definition: rebuilt by its constructor, read-only mappings as dicts.

    Definitions are pickled to reach other processes (Spark executors); a ``MappingProxyType``
    cannot be pickled itself, and the constructor checks and freezes the values again.
    """
    values = {}
    for item in dataclasses.fields(obj):
        value = getattr(obj, item.name)
        values[item.name] = dict(value) if isinstance(value, MappingProxyType) else value
    return _rebuild, (type(obj), values)


def _rebuild(cls: Callable[..., object], values: dict[str, object]) -> object:
    return cls(**values)
