"""Entity keys as bytes: one deterministic, typed encoding shared by every online store.

An entity key is the value of each entity of a feature table, e.g. ``{"driver_id": 1001}`` or
``{"customer_id": 7, "driver_id": 1001}``. It is encoded as readable ASCII-ish bytes, the
entities sorted by name and joined by ``,``::

    driver_id=i:1001                      INT32 / INT64: decimal
    customer_id=i:7,driver_id=i:1001      a composite key, in entity-name order
    user=s5:alice                         STRING: UTF-8 byte length, ':', the UTF-8 bytes
    token=y:00ff                          BYTES: hex
    is_test=b:1                           BOOL: 0 or 1

Properties the stores rely on (tested by a round-trip property test):

* deterministic: the same key always gives the same bytes, whatever the order of the entity
  columns in the request or the table's declaration;
* typed and injective: ``1001`` (an integer) and ``"1001"`` (a string) differ, and different
  keys never collide (strings are length-prefixed, so a value containing ``,`` or ``=`` is safe);
* integers of either width share the tag ``i``: an entity's type is fixed by the registry, and
  an INT32 column arriving where INT64 was declared must still find the same key;
* no ``{`` or ``}`` outside STRING values, so the Redis key's hash tag ``{<entity key>}`` spans
  the whole key for every non-string entity (see ``redis.py``).

The hot read path encodes keys from plain Python values (:class:`KeyEncoder`); ingestion
encodes Arrow columns (:func:`encode_arrow_keys`). Both use the same value formatters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from provender.definitions import ValueType
from provender.errors import DataError

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

_TAGS: dict[ValueType, bytes] = {
    ValueType.INT32: b"i",
    ValueType.INT64: b"i",
    ValueType.STRING: b"s",
    ValueType.BYTES: b"y",
    ValueType.BOOL: b"b",
}
_ARROW_KEY_TYPES: dict[pa.DataType, ValueType] = {
    pa.int8(): ValueType.INT32,
    pa.int16(): ValueType.INT32,
    pa.int32(): ValueType.INT32,
    pa.int64(): ValueType.INT64,
    pa.uint8(): ValueType.INT32,
    pa.uint16(): ValueType.INT32,
    pa.uint32(): ValueType.INT64,
    pa.string(): ValueType.STRING,
    pa.large_string(): ValueType.STRING,
    pa.binary(): ValueType.BYTES,
    pa.large_binary(): ValueType.BYTES,
    pa.bool_(): ValueType.BOOL,
}

KeyValue = int | str | bytes | bool


def _format_int(value: int) -> bytes:
    return b"%d" % value


def _format_str(value: str) -> bytes:
    data = value.encode("utf-8")
    return b"%d:" % len(data) + data


def _format_bytes(value: bytes) -> bytes:
    return b":" + value.hex().encode("ascii")


def _format_bool(value: bool) -> bytes:
    return b":1" if value else b":0"


def _formatter(value_type: ValueType) -> Callable[[object], bytes]:
    """Return the function giving the bytes after ``name=<tag>`` for a checked value."""
    if value_type in (ValueType.INT32, ValueType.INT64):
        return lambda value: b":" + _format_int(value)  # type: ignore[arg-type]
    if value_type is ValueType.STRING:
        return _format_str  # type: ignore[return-value]
    if value_type is ValueType.BYTES:
        return _format_bytes  # type: ignore[return-value]
    if value_type is ValueType.BOOL:
        return _format_bool  # type: ignore[return-value]
    raise DataError(f"{value_type} cannot be an entity key type")


def _check_value(value: object, value_type: ValueType) -> KeyValue | None:
    """Return ``value`` as the Python type of ``value_type``, or None if it is not one."""
    if value_type in (ValueType.INT32, ValueType.INT64):
        if isinstance(value, bool) or not hasattr(value, "__index__"):
            return None
        number = value.__index__()  # accepts numpy integers, refuses floats
        low, high = (INT32_MIN, INT32_MAX) if value_type is ValueType.INT32 else (INT64_MIN, INT64_MAX)
        return number if low <= number <= high else None
    if value_type is ValueType.STRING:
        return value if isinstance(value, str) else None
    if value_type is ValueType.BYTES:
        return bytes(value) if isinstance(value, bytes | bytearray | memoryview) else None
    if value_type is ValueType.BOOL:
        return value if isinstance(value, bool) else None
    return None


_PYTHON_NAMES = {
    ValueType.INT32: "an int",
    ValueType.INT64: "an int",
    ValueType.STRING: "a str",
    ValueType.BYTES: "bytes",
    ValueType.BOOL: "a bool",
}


class KeyEncoder:
    """Encode entity keys of one entity set (e.g. ``driver_id``, or ``customer_id`` + ``driver_id``).

    Args:
        entities: ``(name, value_type)`` of each entity, in any order.

    Examples:
        >>> KeyEncoder([("driver_id", ValueType.INT64)]).encode_rows([{"driver_id": 1001}])
        [b'driver_id=i:1001']
    """

    __slots__ = ("_formats", "_heads", "_int_bounds", "names", "types")

    def __init__(self, entities: Sequence[tuple[str, ValueType]]) -> None:
        ordered = sorted(entities)
        if not ordered:
            raise DataError("an entity key needs at least one entity")
        self.names: tuple[str, ...] = tuple(name for name, _ in ordered)
        self.types: tuple[ValueType, ...] = tuple(ValueType(value_type) for _, value_type in ordered)
        self._heads = tuple(
            (b"," if n else b"") + name.encode() + b"=" + _TAGS[vt] for n, (name, vt) in enumerate(ordered)
        )
        self._formats = tuple(_formatter(vt) for vt in self.types)
        first = self.types[0]
        self._int_bounds: tuple[int, int] | None = None
        if len(ordered) == 1 and first in (ValueType.INT32, ValueType.INT64):
            self._int_bounds = (INT32_MIN, INT32_MAX) if first is ValueType.INT32 else (INT64_MIN, INT64_MAX)

    def encode_rows(self, rows: Sequence[Mapping[str, object]], *, what: str = "entity_rows") -> list[bytes]:
        """Return the encoded key of each row, checking each value against its entity's type.

        Raises:
            DataError: a row lacks an entity column, or holds a value of the wrong type; the
                message names the column and the row (``entity_rows[3]['driver_id']``).
        """
        if self._int_bounds is not None:
            # The hot path: one integer entity. Anything unusual falls back to the checked path.
            name, (low, high) = self.names[0], self._int_bounds
            head = self._heads[0] + b":"
            try:
                out = []
                for row in rows:
                    value = row[name]
                    if type(value) is not int or not low <= value <= high:
                        raise TypeError
                    out.append(head + b"%d" % value)
            except (KeyError, TypeError):
                pass
            else:
                return out
        return [self.encode_values(self._values(row, n, what), row_number=n, what=what) for n, row in enumerate(rows)]

    def encode_values(self, values: Sequence[object], *, row_number: int = 0, what: str = "entity_rows") -> bytes:
        """Return the encoded key for ``values``, one per entity in :attr:`names` order.

        Raises:
            DataError: a value does not match its entity's type.
        """
        parts = []
        for head, fmt, name, value_type, value in zip(
            self._heads, self._formats, self.names, self.types, values, strict=True
        ):
            checked = _check_value(value, value_type)
            if checked is None:
                raise DataError(
                    f"{what}[{row_number}][{name!r}] is {value!r} ({type(value).__name__}), "
                    f"not a valid {value_type} key; pass {_PYTHON_NAMES[value_type]}"
                    + (" in range" if isinstance(value, int) and not isinstance(value, bool) else "")
                    + "."
                )
            parts.append(head + fmt(checked))
        return b"".join(parts)

    def _values(self, row: Mapping[str, object], number: int, what: str) -> list[object]:
        if not isinstance(row, Mapping):
            raise DataError(f"{what}[{number}] is a {type(row).__name__}, not a mapping of entity names to values.")
        try:
            return [row[name] for name in self.names]
        except KeyError as exc:
            raise DataError(
                f"{what}[{number}] lacks the entity column {exc.args[0]!r}; it has {sorted(map(str, row))}."
            ) from None


def encode_arrow_keys(rows: pa.Table, entity_names: Sequence[str]) -> list[bytes]:
    """Return the encoded key of every row of ``rows``, from its entity columns (see :func:`arrow_keys`)."""
    keys: list[bytes] = arrow_keys(rows, entity_names).to_pylist()
    return keys


def arrow_keys(rows: pa.Table, entity_names: Sequence[str]) -> pa.Array:
    """Return the encoded key of every row of ``rows``, from its entity columns, as an Arrow binary array.

    The columns' Arrow types give the entity types (int*, string, binary, bool). The bytes are
    built with Arrow compute kernels (a property test checks they equal :class:`KeyEncoder`'s).

    Raises:
        DataError: an entity column is missing, of a type that cannot be a key, or null.
    """
    entities = []
    for name in entity_names:
        if name not in rows.column_names:
            raise DataError(f"the rows lack the entity column {name!r}; they have {rows.column_names}.")
        arrow_type = rows.schema.field(name).type
        value_type = _ARROW_KEY_TYPES.get(arrow_type)
        if value_type is None:
            raise DataError(f"entity column {name!r} has Arrow type {arrow_type}, which cannot be an entity key.")
        column = rows.column(name)
        if column.null_count:
            first = column.is_null().to_pylist().index(True)
            raise DataError(f"entity column {name!r} is null in {column.null_count} row(s), the first at row {first}.")
        entities.append((name, value_type))
    encoder = KeyEncoder(entities)
    if rows.num_rows == 0:
        return pa.array([], pa.binary())
    parts: list[pa.ChunkedArray | pa.Array | bytes] = []
    for head, name, value_type in zip(encoder._heads, encoder.names, encoder.types, strict=True):
        parts += _arrow_part(head, rows.column(name), value_type)
    joined = pc.binary_join_element_wise(*parts, b"")
    if isinstance(joined, pa.ChunkedArray):
        joined = joined.combine_chunks()
    return joined


def _arrow_part(head: bytes, column: pa.ChunkedArray, value_type: ValueType) -> list[pa.ChunkedArray | bytes]:
    """Pieces whose concatenation is ``head`` + the formatted values (see the module docstring)."""
    binary = pa.binary()
    if value_type in (ValueType.INT32, ValueType.INT64):
        return [head + b":", pc.cast(pc.cast(column, pa.string()), binary)]
    if value_type is ValueType.BOOL:
        return [head, pc.if_else(column, pa.scalar(b":1"), pa.scalar(b":0"))]
    if value_type is ValueType.STRING:
        column = pc.cast(column, pa.string())  # also large_string
        lengths = pc.cast(pc.cast(pc.binary_length(column), pa.string()), binary)
        return [head, lengths, b":", pc.cast(column, binary)]
    # BYTES: hex has no Arrow kernel; these keys are rare.
    return [head, pa.chunked_array([pa.array([_format_bytes(v) for v in column.to_pylist()], binary)])]


def decode_key(key: bytes) -> dict[str, KeyValue]:  # noqa: PLR0912 - one branch per value type
    """Return the entity values of an encoded key (the inverse of the encoders).

    Raises:
        DataError: ``key`` is not an encoded entity key.

    Examples:
        >>> decode_key(b"customer_id=i:7,driver_id=i:1001")
        {'customer_id': 7, 'driver_id': 1001}
    """
    result: dict[str, KeyValue] = {}
    pos, size = 0, len(key)
    try:
        while pos < size:
            eq = key.index(b"=", pos)
            name, tag = key[pos:eq].decode("ascii"), key[eq + 1 : eq + 2]
            pos = eq + 2
            if tag == b"s":
                colon = key.index(b":", pos)
                length = int(key[pos:colon])
                if colon + 1 + length > size:
                    raise ValueError("string shorter than its length")
                result[name] = key[colon + 1 : colon + 1 + length].decode("utf-8")
                pos = colon + 1 + length
            else:
                if key[pos : pos + 1] != b":":
                    raise ValueError("missing ':'")
                end = key.find(b",", pos)
                end = size if end < 0 else end
                text = key[pos + 1 : end]
                pos = end
                if tag == b"i":
                    result[name] = int(text)
                elif tag == b"y":
                    result[name] = bytes.fromhex(text.decode("ascii"))
                elif tag == b"b" and text in (b"0", b"1"):
                    result[name] = text == b"1"
                else:
                    raise ValueError(f"unknown tag {tag!r}")
            if pos < size:
                if key[pos : pos + 1] != b",":
                    raise ValueError("missing ','")
                pos += 1
                if pos == size:
                    raise ValueError("trailing ','")
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{key!r} is not an encoded entity key: {exc}") from None
    return result
