"""Errors on the wire: how each error is answered, and its fields there and back.

**Statuses.** :data:`ERROR_STATUSES` is the one table of HTTP statuses and gRPC codes, used by
the serving service (HTTP and gRPC) and the core service (the first matching row along the
exception's MRO wins)::

    AuthenticationError        401  UNAUTHENTICATED
    PermissionDeniedError      403  PERMISSION_DENIED
    ProjectNotServedError      404  NOT_FOUND
    RequestTooLargeError       413  RESOURCE_EXHAUSTED  a request over a serving limit (named in the message)
    RegistryVersionConflictError  409  ABORTED          (core) an apply planned against an older version
    RegistryConflictError      409  FAILED_PRECONDITION  (core) a change that would break a reference
    JobStateError              409  FAILED_PRECONDITION  (core) e.g. finishing a cancelled job
    ProjectNotFoundError, JobNotFoundError  404  NOT_FOUND  (core)
    DataError                  400  INVALID_ARGUMENT   invalid JSON, wrong key type, too many rows
    FeatureRefError            400  INVALID_ARGUMENT   a malformed ref or unknown feature
    NotFoundError              400  INVALID_ARGUMENT   an unknown table or entity named in the request
    DefinitionError            400  INVALID_ARGUMENT
    BackendError, retryable    503  UNAVAILABLE        the store is down: retry later
    BackendError               500  INTERNAL
    ProvenderError             500  INTERNAL
    anything else              500  INTERNAL           (logged with its traceback)

**Fields.** A service answers a failed request with ``{"error": {"code", "type", "message",
"fields"}}`` over HTTP (:func:`error_body`), and over gRPC with the status code, the message as
its details and the type and fields in the trailing metadata (:func:`grpc_metadata`). A remote
client turns either back into the same exception class, built through its constructor with the
same attributes (``ref``, ``name``, ``project``, ``expected_version``, ``field`` ...) and the
server's message (:func:`rebuild_error`). So ``except FeatureTableNotFoundError as e: e.name``
works the same in-process, through the serving service and through the core service.

Examples:
    >>> error = errors.FeatureTableNotFoundError("driver_stat", project="default", known=["driver_stats"])
    >>> body = error_body(error, code="INVALID_ARGUMENT", message=str(error))["error"]
    >>> body["fields"]
    {'name': 'driver_stat', 'project': 'default'}
    >>> again = rebuild_error(body["type"], code=body["code"], message=body["message"], fields=body["fields"])
    >>> type(again).__name__, again.name, str(again) == str(error)
    ('FeatureTableNotFoundError', 'driver_stat', True)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

import orjson

from provender import errors

TYPE_METADATA_KEY = "provender-error"
"""gRPC trailing metadata: the error's class name."""
FIELDS_METADATA_KEY = "provender-error-fields-bin"
"""gRPC trailing metadata (binary): the error's fields as a JSON object."""

Fields = Mapping[str, object]
_Builder = Callable[[str, Fields], errors.ProvenderError]


def _text(fields: Fields, name: str) -> str:
    value = fields.get(name)
    return "" if value is None else str(value)


def _optional(fields: Fields, name: str) -> str | None:
    value = fields.get(name)
    return None if value is None else str(value)


def _number(fields: Fields, name: str) -> int:
    value = fields.get(name)
    return value if isinstance(value, int) else 0


def _not_found(cls: type[errors.NotFoundError]) -> _Builder:
    return lambda _m, f: cls(_text(f, "name"), project=_text(f, "project"))


# How each error class is rebuilt from its fields (the message is then set to the server's).
_BUILDERS: dict[str, _Builder] = {
    "DefinitionError": lambda _m, f: errors.DefinitionError(_text(f, "obj"), _text(f, "field"), _text(f, "problem")),
    "FeatureRefError": lambda _m, f: errors.FeatureRefError(_text(f, "ref"), _text(f, "problem")),
    "ConfigError": lambda _m, f: errors.ConfigError(_text(f, "key"), _text(f, "problem")),
    "RegistryConflictError": lambda _m, f: errors.RegistryConflictError(
        [str(c) for c in cast(list[object], f.get("conflicts") or [])], project=_text(f, "project")
    ),
    "RegistryVersionConflictError": lambda _m, f: errors.RegistryVersionConflictError(
        project=_text(f, "project"),
        expected_version=_number(f, "expected_version"),
        actual_version=_number(f, "actual_version"),
    ),
    "ProjectArchivedError": lambda _m, f: errors.ProjectArchivedError(project=_text(f, "project")),
    "JobStateError": lambda m, f: errors.JobStateError(_text(f, "job_id"), m, status=_optional(f, "status")),
    "DataError": lambda m, _f: errors.DataError(m),
    "OnDemandFunctionError": lambda _m, f: errors.OnDemandFunctionError(
        _text(f, "name"), _text(f, "function"), _text(f, "problem")
    ),
    "RequestTooLargeError": lambda m, _f: errors.RequestTooLargeError(m),
    "SourcePathNotAllowedError": lambda _m, f: errors.SourcePathNotAllowedError(
        _text(f, "path"),
        what=_text(f, "what"),
        roots=[str(root) for root in cast(list[object], f.get("roots") or [])],
        resolved=_optional(f, "resolved"),
        reason=_optional(f, "reason"),
    ),
    "JobCancelledError": lambda m, _f: errors.JobCancelledError(m),
    "ProjectNotServedError": lambda _m, f: errors.ProjectNotServedError(
        _text(f, "project"), served=[str(name) for name in cast(list[object], f.get("served") or [])]
    ),
    "NotFoundError": _not_found(errors.NotFoundError),
    "EntityNotFoundError": _not_found(errors.EntityNotFoundError),
    "FeatureTableNotFoundError": _not_found(errors.FeatureTableNotFoundError),
    "OnDemandFeaturesNotFoundError": _not_found(errors.OnDemandFeaturesNotFoundError),
    "ProjectNotFoundError": lambda _m, f: errors.ProjectNotFoundError(_text(f, "name")),
    "JobNotFoundError": lambda _m, f: errors.JobNotFoundError(_text(f, "name")),
    "MissingExtraError": lambda _m, f: errors.MissingExtraError(
        _text(f, "backend"), extra=_text(f, "extra"), missing=_text(f, "missing")
    ),
    "BackendError": lambda m, f: errors.BackendError(m, retryable=bool(f.get("retryable"))),
    "RegistrySchemaError": lambda _m, f: errors.RegistrySchemaError(
        "", found=_number(f, "found"), supported=_number(f, "supported")
    ),
    "AuthenticationError": lambda m, _f: errors.AuthenticationError(m),
    "PermissionDeniedError": lambda _m, f: errors.PermissionDeniedError(
        _text(f, "project"), needed=_optional(f, "needed"), held=_optional(f, "held")
    ),
}


MAX_ECHO_CHARS = 1000
"""The longest text (a message, a field) an error answer carries: client values are echoed shortened."""
_MAX_ECHO_ITEMS = 50


def shorten(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """Return ``text``, or its start and end around a note of how much was left out.

    Examples:
        >>> shorten("x" * 2000, 40)
        'xxxxxxxxxxxxxxxxxxxx…[1970 chars]…xxxxxxxxxx'
    """
    if len(text) <= limit:
        return text
    head, tail = limit // 2, limit // 4
    return f"{text[:head]}…[{len(text) - head - tail} chars]…{text[len(text) - tail :]}"


def error_fields(error: BaseException) -> dict[str, object]:
    """Return the public attributes of ``error`` that JSON can carry (tuples as lists, long text shortened)."""
    return {name: _json_ready(value) for name, value in vars(error).items() if not name.startswith("_")}


def _json_ready(value: object) -> object:
    if isinstance(value, tuple | list):
        return [
            shorten(item)
            if isinstance(item, str)
            else item
            if isinstance(item, int | float | bool)
            else shorten(str(item))
            for item in value[:_MAX_ECHO_ITEMS]
        ]
    if value is None or isinstance(value, int | float | bool):
        return value
    return shorten(str(value))


def error_body(error: BaseException, *, code: str, message: str) -> dict[str, object]:
    """Return the ``{"error": {...}}`` body answering ``error`` (``code``: the gRPC-style status name)."""
    fields = error_fields(error)
    return {"error": {"code": code, "type": type(error).__name__, "message": shorten(message), "fields": fields}}


def rebuild_error(
    kind: str,
    *,
    code: str,
    message: str,
    fields: Fields | None = None,
    extra: Mapping[str, _Builder] | None = None,
) -> errors.ProvenderError:
    """Return the error a service reported: the same class, attributes and message.

    Args:
        kind: the error's class name (``type`` in the body).
        code: the status name (``UNAVAILABLE`` makes an unknown error a retryable BackendError).
        message: the server's message, kept as the error's text.
        fields: the error's attributes as sent.
        extra: builders of error classes this module does not know (a transport's own).
    """
    fields = fields or {}
    builder = (extra or {}).get(kind) or _BUILDERS.get(kind)
    if builder is None:
        if code == "RESOURCE_EXHAUSTED":  # gRPC's own message-size refusal
            return errors.RequestTooLargeError(f"{message} (the server's limit: serving.max_request_bytes)")
        if code in ("INVALID_ARGUMENT", "NOT_FOUND"):
            return errors.DataError(message)
        return errors.BackendError(message, retryable=code == "UNAVAILABLE")
    error = builder(message, fields)
    error.args = (message,)
    if isinstance(error, errors.BackendError) and code == "UNAVAILABLE":
        error.retryable = True
    return error


def grpc_metadata(error: BaseException) -> tuple[tuple[str, str | bytes], ...]:
    """Return the gRPC trailing metadata naming ``error``'s class and carrying its fields."""
    return ((TYPE_METADATA_KEY, type(error).__name__), (FIELDS_METADATA_KEY, orjson.dumps(error_fields(error))))


def from_grpc_metadata(metadata: object) -> tuple[str, dict[str, object]]:
    """Return the error type and fields that :func:`grpc_metadata` put in trailing metadata.

    Missing or unreadable entries give ``""`` and ``{}``.
    """
    kind, fields = "", {}
    for key, value in cast("tuple[tuple[str, str | bytes], ...]", metadata or ()):
        if key == TYPE_METADATA_KEY:
            kind = value if isinstance(value, str) else value.decode()
        elif key == FIELDS_METADATA_KEY:
            try:
                loaded = orjson.loads(value)
            except orjson.JSONDecodeError:
                continue
            if isinstance(loaded, dict):
                fields = loaded
    return kind, fields


# -- statuses ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErrorStatus:
    """How an error is answered.

    Attributes:
        http: the HTTP status code.
        grpc: the name of the gRPC status code (``grpc.StatusCode[name]``).
    """

    http: int
    grpc: str


INTERNAL = ErrorStatus(500, "INTERNAL")
UNAVAILABLE = ErrorStatus(503, "UNAVAILABLE")
_INVALID = ErrorStatus(400, "INVALID_ARGUMENT")

ERROR_STATUSES: dict[type[BaseException], ErrorStatus] = {
    errors.AuthenticationError: ErrorStatus(401, "UNAUTHENTICATED"),
    errors.PermissionDeniedError: ErrorStatus(403, "PERMISSION_DENIED"),
    errors.ProjectNotServedError: ErrorStatus(404, "NOT_FOUND"),
    errors.RequestTooLargeError: ErrorStatus(413, "RESOURCE_EXHAUSTED"),
    errors.RegistryVersionConflictError: ErrorStatus(409, "ABORTED"),
    errors.RegistryConflictError: ErrorStatus(409, "FAILED_PRECONDITION"),
    errors.JobStateError: ErrorStatus(409, "FAILED_PRECONDITION"),
    errors.ProjectNotFoundError: ErrorStatus(404, "NOT_FOUND"),
    errors.JobNotFoundError: ErrorStatus(404, "NOT_FOUND"),
    errors.DataError: _INVALID,
    errors.FeatureRefError: _INVALID,
    errors.NotFoundError: _INVALID,
    errors.DefinitionError: _INVALID,
    errors.BackendError: INTERNAL,
    errors.ProvenderError: INTERNAL,
}
"""The one table; a retryable :class:`~provender.errors.BackendError` is answered with :data:`UNAVAILABLE`."""


def status_of(error: BaseException) -> ErrorStatus:
    """Return how ``error`` is answered over HTTP and gRPC (see the module docstring)."""
    if isinstance(error, errors.BackendError) and error.retryable:
        return UNAVAILABLE
    for cls in type(error).__mro__:
        status = ERROR_STATUSES.get(cls)
        if status is not None:
            return status
    return INTERNAL


def is_expected(error: BaseException) -> bool:
    """Whether ``error`` is a client's or the store's fault (not a bug worth a traceback)."""
    return isinstance(error, errors.ProvenderError)
