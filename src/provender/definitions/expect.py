"""Expectations: what a feature's values (or a job's rows) must satisfy, declared in definitions.

Per value (a violating row can be skipped): :func:`not_null`, :func:`between`, :func:`one_of`,
:func:`matches`. Over a job's rows (they fail or warn, never skip): :func:`max_null_fraction` on a
feature, :func:`row_count_between` on a feature table. Arguments are checked when the feature or
table using them is built, so errors name it.

Examples:
    >>> from provender.definitions import Feature, ValueType, expect
    >>> Feature("conv_rate", ValueType.FLOAT, expect=[expect.not_null(), expect.between(0, 1)]).expect
    (NotNull(), Between(min=0, max=1))
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from provender.definitions.types import ValueType

_NUMBERS = {ValueType.INT32, ValueType.INT64, ValueType.FLOAT, ValueType.DOUBLE}
_INTEGERS = {ValueType.INT32, ValueType.INT64}


@dataclass(frozen=True, slots=True)
class NotNull:
    """Every value is present."""

    kind: ClassVar[str] = "not_null"
    per_row: ClassVar[bool] = True

    def problem(self, value_type: ValueType) -> str | None:  # noqa: ARG002 (applies to every type)
        """Why this expectation cannot apply to ``value_type`` (None if it can)."""
        return None

    def describe(self) -> str:
        """A short text, e.g. ``not_null``."""
        return "not_null"


@dataclass(frozen=True, slots=True)
class Between:
    """Every present value is in ``[min, max]`` (a bound of None is open; NaN violates)."""

    min: float | None = None
    max: float | None = None
    kind: ClassVar[str] = "between"
    per_row: ClassVar[bool] = True

    def problem(self, value_type: ValueType) -> str | None:
        """Why this expectation cannot apply to ``value_type`` (None if it can)."""
        if value_type not in _NUMBERS:
            return f"between applies to numbers (INT32, INT64, FLOAT, DOUBLE), not {value_type.value}"
        for name, bound in (("min", self.min), ("max", self.max)):
            if bound is not None and (
                isinstance(bound, bool) or not isinstance(bound, int | float) or math.isnan(bound)
            ):
                return f"between: {name} must be a number or None, got {bound!r}"
        if self.min is None and self.max is None:
            return "between needs a min or a max"
        if self.min is not None and self.max is not None and self.min > self.max:
            return f"between: min ({self.min}) is greater than max ({self.max})"
        return None

    def describe(self) -> str:
        """A short text, e.g. ``between(0, 1)``."""
        return f"between({self.min}, {self.max})"


@dataclass(frozen=True, slots=True)
class OneOf:
    """Every present value is one of ``values``."""

    values: tuple[object, ...]
    kind: ClassVar[str] = "one_of"
    per_row: ClassVar[bool] = True

    def problem(self, value_type: ValueType) -> str | None:
        """Why this expectation cannot apply to ``value_type`` (None if it can)."""
        if value_type not in {ValueType.STRING, ValueType.BOOL, *_INTEGERS}:
            return f"one_of applies to STRING, BOOL, INT32 and INT64 features, not {value_type.value}"
        if not self.values:
            return "one_of needs at least one value"
        wanted: type | tuple[type, ...] = {ValueType.STRING: str, ValueType.BOOL: bool}.get(value_type, int)
        for value in self.values:
            if not isinstance(value, wanted) or (wanted is int and isinstance(value, bool)):
                return f"one_of: {value!r} is not a {value_type.value} value"
        return None

    def describe(self) -> str:
        """A short text, e.g. ``one_of('a', 'b')``."""
        return f"one_of({', '.join(repr(v) for v in self.values)})"


@dataclass(frozen=True, slots=True)
class Matches:
    """Every present string matches ``pattern`` in full (RE2 syntax, as Python's ``re.fullmatch``)."""

    pattern: str
    kind: ClassVar[str] = "matches"
    per_row: ClassVar[bool] = True

    def problem(self, value_type: ValueType) -> str | None:
        """Why this expectation cannot apply to ``value_type`` (None if it can)."""
        if value_type is not ValueType.STRING:
            return f"matches applies to STRING features, not {value_type.value}"
        if not isinstance(self.pattern, str):
            return f"matches: the pattern must be a string, got {self.pattern!r}"
        try:
            re.compile(self.pattern)
            pc.match_substring_regex(pa.array([""]), pattern=self.anchored)
        except (re.error, pa.ArrowInvalid) as exc:
            return f"matches: {self.pattern!r} is not a valid regular expression ({exc})"
        return None

    @property
    def anchored(self) -> str:
        """The pattern anchored at both ends (a full match)."""
        return f"^(?:{self.pattern})$"

    def describe(self) -> str:
        """A short text, e.g. ``matches('[a-z]+')``."""
        return f"matches({self.pattern!r})"


@dataclass(frozen=True, slots=True)
class MaxNullFraction:
    """At most ``fraction`` of a job's values are null (checked over the job's rows)."""

    fraction: float
    kind: ClassVar[str] = "max_null_fraction"
    per_row: ClassVar[bool] = False

    def problem(self, value_type: ValueType) -> str | None:  # noqa: ARG002 (applies to every type)
        """Why this expectation cannot apply (None if it can)."""
        fraction = self.fraction
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 <= fraction <= 1:
            return f"max_null_fraction: fraction must be a number in [0, 1], got {fraction!r}"
        return None

    def describe(self) -> str:
        """A short text, e.g. ``max_null_fraction(0.1)``."""
        return f"max_null_fraction({self.fraction})"


@dataclass(frozen=True, slots=True)
class RowCountBetween:
    """A job writes between ``min`` and ``max`` rows (a feature table's expectation)."""

    min: int | None = None
    max: int | None = None
    kind: ClassVar[str] = "row_count_between"
    per_row: ClassVar[bool] = False

    def problem(self) -> str | None:
        """Why this expectation is invalid (None if it is valid)."""
        for name, bound in (("min", self.min), ("max", self.max)):
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int) or bound < 0):
                return f"row_count_between: {name} must be a non-negative integer or None, got {bound!r}"
        if self.min is None and self.max is None:
            return "row_count_between needs a min or a max"
        if self.min is not None and self.max is not None and self.min > self.max:
            return f"row_count_between: min ({self.min}) is greater than max ({self.max})"
        return None

    def describe(self) -> str:
        """A short text, e.g. ``row_count_between(1, None)``."""
        return f"row_count_between({self.min}, {self.max})"


FeatureExpectation = NotNull | Between | OneOf | Matches | MaxNullFraction
TableExpectation = RowCountBetween
VALIDATION_POLICIES = ("fail", "skip", "warn")


def not_null() -> NotNull:
    """Every value is present."""
    return NotNull()


def between(min: float | None = None, max: float | None = None) -> Between:
    """Every present value is in ``[min, max]``; None leaves a side open."""
    return Between(min, max)


def one_of(values: Sequence[object]) -> OneOf:
    """Every present value is one of ``values``."""
    return OneOf(tuple(values))


def matches(pattern: str) -> Matches:
    """Every present string matches ``pattern`` in full."""
    return Matches(pattern)


def max_null_fraction(fraction: float) -> MaxNullFraction:
    """At most ``fraction`` of a job's values are null."""
    return MaxNullFraction(fraction)


def row_count_between(min: int | None = None, max: int | None = None) -> RowCountBetween:
    """A job writes between ``min`` and ``max`` rows (declare it on the feature table)."""
    return RowCountBetween(min, max)


def to_spec(expectation: FeatureExpectation | TableExpectation) -> dict[str, object]:
    """The JSON form of an expectation: ``{"type": kind, ...arguments}``."""
    if isinstance(expectation, Between | RowCountBetween):
        return {"type": expectation.kind, "min": expectation.min, "max": expectation.max}
    if isinstance(expectation, OneOf):
        return {"type": expectation.kind, "values": list(expectation.values)}
    if isinstance(expectation, Matches):
        return {"type": expectation.kind, "pattern": expectation.pattern}
    if isinstance(expectation, MaxNullFraction):
        return {"type": expectation.kind, "fraction": expectation.fraction}
    return {"type": expectation.kind}


def from_spec(spec: Mapping[str, object]) -> FeatureExpectation | TableExpectation:
    """Rebuild an expectation from :func:`to_spec`'s output (ValueError on an unknown type)."""
    kind = spec.get("type")
    if kind == "not_null":
        return NotNull()
    if kind == "between":
        return Between(spec.get("min"), spec.get("max"))  # type: ignore[arg-type]
    if kind == "one_of":
        return OneOf(tuple(spec.get("values", ())))  # type: ignore[arg-type]
    if kind == "matches":
        return Matches(str(spec.get("pattern")))
    if kind == "max_null_fraction":
        return MaxNullFraction(spec.get("fraction"))  # type: ignore[arg-type]
    if kind == "row_count_between":
        return RowCountBetween(spec.get("min"), spec.get("max"))  # type: ignore[arg-type]
    raise ValueError(f"unknown expectation type {kind!r}")
