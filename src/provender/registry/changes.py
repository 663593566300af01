"""Readable diffs of a changed definition, for the audit trail: one line per change, values included.

:func:`field_diff` compares two versions of an entity or feature table field by field; the
features of a table are compared by name, so a line says which feature was added, removed or
changed and how (``~ feature rate: value_type DOUBLE -> FLOAT``). Lines are short text, kept in
the history record, so any reader (the UI, the CLI, a client of the core service) shows them
without the old definition.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from datetime import timedelta

from provender.definitions import Definition, Feature

MAX_LINE = 240  # characters of one line (longer values are cut with an ellipsis)
MAX_LINES = 50  # lines per changed definition


def field_diff(old: Definition, new: Definition) -> tuple[str, ...]:
    """Return a line per difference between ``old`` and ``new`` (same kind), at most :data:`MAX_LINES`."""
    lines: list[str] = []
    for f in dataclasses.fields(old):
        before, after = getattr(old, f.name), getattr(new, f.name)
        if before == after:
            continue
        if f.name == "features":
            lines += _features_diff(before, after)
        else:
            lines.append(f"{f.name}: {text(before)} -> {text(after)}")
    if len(lines) > MAX_LINES:
        lines = [*lines[: MAX_LINES - 1], f"... and {len(lines) - MAX_LINES + 1} more"]
    return tuple(_cut(line) for line in lines)


def _features_diff(before: Sequence[Feature], after: Sequence[Feature]) -> list[str]:
    old = {f.name: f for f in before}
    new = {f.name: f for f in after}
    lines = [f"+ feature {name} ({text(f.value_type)})" for name, f in new.items() if name not in old]
    lines += [f"- feature {name}" for name in old if name not in new]
    for name, feature in new.items():
        previous = old.get(name)
        if previous is None or previous == feature:
            continue
        parts = [
            f"{f.name} {text(getattr(previous, f.name))} -> {text(getattr(feature, f.name))}"
            for f in dataclasses.fields(feature)
            if getattr(previous, f.name) != getattr(feature, f.name)
        ]
        lines.append(f"~ feature {name}: {'; '.join(parts)}")
    if not lines and [f.name for f in before] != [f.name for f in after]:
        lines.append(f"features reordered: {', '.join(f.name for f in after)}")
    return lines


def text(value: object) -> str:  # noqa: PLR0911 - one return per kind of value
    """A short, readable form of a definition's field value."""
    if value is None:
        return "none"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, timedelta):
        return str(value)
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}={text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(text(v) for v in value) + "]"
    describe = getattr(value, "describe", None)
    if callable(describe):
        return str(describe())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        args = [
            f"{f.name}={text(getattr(value, f.name))}" for f in dataclasses.fields(value) if not _is_default(value, f)
        ]
        return f"{type(value).__name__}({', '.join(args)})"
    return str(value)


def _is_default(value: object, f: dataclasses.Field[object]) -> bool:
    current = getattr(value, f.name)
    if f.default is not dataclasses.MISSING:
        return bool(current == f.default)
    if f.default_factory is not dataclasses.MISSING:
        return bool(current == f.default_factory())
    return False


def _cut(line: str) -> str:
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 1] + "…"
