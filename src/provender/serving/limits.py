"""What one request may make the serving service do: the ``serving.max_*`` limits.

Every request is checked against the same limits whatever its transport, before any work
that grows with it (a plan, a store read, a log line): the number of feature refs, entity rows
and entity (or pass-through) columns, and how deeply a value nests lists and objects. The body
or message size is bounded by the transports themselves (``read_body`` for HTTP, which refuses
a declared ``Content-Length`` before reading, and ``grpc.max_receive_message_length`` for
gRPC), from ``serving.max_request_bytes``; that bounds the one cost paid before the counts are
known, parsing the body (JSON: about 5 ms per MiB of small strings on the development machine).
The transports then call :meth:`RequestLimits.check_counts` on the parsed containers' lengths,
before they look at any element (type checks, decoding protobuf columns into Python values).

A request over a limit gets :class:`~provender.errors.RequestTooLargeError` (HTTP 413, gRPC
RESOURCE_EXHAUSTED), whose message names the setting to raise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from provender.config import ServingSection
from provender.errors import RequestTooLargeError


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """The limits of ``serving:`` (see :class:`~provender.config.ServingSection`)."""

    max_feature_refs: int
    max_entity_rows: int
    max_entity_columns: int
    max_request_bytes: int
    max_value_depth: int

    @classmethod
    def of(cls, serving: ServingSection) -> RequestLimits:
        """Return the limits of a ``serving:`` section."""
        return cls(
            max_feature_refs=serving.max_feature_refs,
            max_entity_rows=serving.max_entity_rows,
            max_entity_columns=serving.max_entity_columns,
            max_request_bytes=serving.max_request_bytes,
            max_value_depth=serving.max_value_depth,
        )

    def check_counts(self, refs: int, columns: int) -> None:
        """Check a request's numbers of refs and of entity columns, before decoding them.

        Raises:
            RequestTooLargeError: a limit is exceeded; the message names the setting.
        """
        if refs > self.max_feature_refs:
            raise _over(f"{refs} feature refs", self.max_feature_refs, "max_feature_refs")
        if columns > self.max_entity_columns:
            raise _over(f"{columns} entity columns", self.max_entity_columns, "max_entity_columns")

    def check_rows(self, rows: int) -> None:
        """Check a request's number of entity rows (its longest column), before decoding them.

        Raises:
            RequestTooLargeError: over ``serving.max_entity_rows``; the message names it.
        """
        if rows > self.max_entity_rows:
            raise _over(f"{rows} entity rows", self.max_entity_rows, "max_entity_rows")

    def check(self, features: Sequence[str], entities: Mapping[str, Sequence[object]]) -> None:
        """Check a request's refs and entity columns against the limits.

        Raises:
            RequestTooLargeError: a limit is exceeded; the message names the setting.
        """
        if len(features) > self.max_feature_refs:
            raise _over(f"{len(features)} feature refs", self.max_feature_refs, "max_feature_refs")
        if len(entities) > self.max_entity_columns:
            raise _over(f"{len(entities)} entity columns", self.max_entity_columns, "max_entity_columns")
        for name, values in entities.items():
            if len(values) > self.max_entity_rows:
                raise _over(f"{len(values)} entity rows", self.max_entity_rows, "max_entity_rows")
            if not all(type(value) in _SCALARS for value in values):
                self._check_depth(name, values)

    def _check_depth(self, column: str, values: Sequence[object]) -> None:
        limit = self.max_value_depth
        stack: list[tuple[object, int]] = [(value, 1) for value in values]
        while stack:
            value, depth = stack.pop()
            if isinstance(value, Mapping):
                children: Sequence[object] = list(value.values())
            elif isinstance(value, list | tuple):
                children = value
            else:
                continue
            if depth > limit:
                raise RequestTooLargeError(
                    f"A value of entity column {column[:100]!r} nests lists or objects more than {limit} deep, "
                    "this server's limit (serving.max_value_depth)."
                )
            stack.extend((child, depth + 1) for child in children)


_SCALARS = frozenset({int, str, float, bool, bytes, type(None)})


def _over(what: str, limit: int, setting: str) -> RequestTooLargeError:
    return RequestTooLargeError(
        f"The request has {what}, more than this server's limit of {limit} (serving.{setting}); "
        "split it into smaller requests."
    )
