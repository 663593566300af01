"""Value types of entities and features, and their Arrow equivalents."""

from __future__ import annotations

from enum import StrEnum

import pyarrow as pa


class ValueType(StrEnum):
    """The type of an entity key or a feature value.

    Scalars and their list forms; ``UNIX_TIMESTAMP`` is a UTC instant (microseconds).
    """

    BOOL = "BOOL"
    INT32 = "INT32"
    INT64 = "INT64"
    FLOAT = "FLOAT"
    DOUBLE = "DOUBLE"
    STRING = "STRING"
    BYTES = "BYTES"
    UNIX_TIMESTAMP = "UNIX_TIMESTAMP"
    BOOL_LIST = "BOOL_LIST"
    INT32_LIST = "INT32_LIST"
    INT64_LIST = "INT64_LIST"
    FLOAT_LIST = "FLOAT_LIST"
    DOUBLE_LIST = "DOUBLE_LIST"
    STRING_LIST = "STRING_LIST"
    BYTES_LIST = "BYTES_LIST"
    UNIX_TIMESTAMP_LIST = "UNIX_TIMESTAMP_LIST"

    @property
    def is_list(self) -> bool:
        """Whether values of this type are lists."""
        return self.value.endswith("_LIST")

    @property
    def element(self) -> ValueType:
        """The scalar type of a list type's elements (a scalar type returns itself)."""
        return ValueType(self.value.removesuffix("_LIST"))

    def to_arrow(self) -> pa.DataType:
        """Return the Arrow type that holds values of this type."""
        if self.is_list:
            return pa.list_(self.element.to_arrow())
        return _SCALAR_ARROW[self]


_SCALAR_ARROW: dict[ValueType, pa.DataType] = {
    ValueType.BOOL: pa.bool_(),
    ValueType.INT32: pa.int32(),
    ValueType.INT64: pa.int64(),
    ValueType.FLOAT: pa.float32(),
    ValueType.DOUBLE: pa.float64(),
    ValueType.STRING: pa.string(),
    ValueType.BYTES: pa.binary(),
    ValueType.UNIX_TIMESTAMP: pa.timestamp("us", tz="UTC"),
}

ENTITY_KEY_TYPES = frozenset({ValueType.INT32, ValueType.INT64, ValueType.STRING, ValueType.BYTES, ValueType.BOOL})
"""Types an entity key may have: lists, floats and timestamps make poor keys."""
