"""Errors on the wire: a Provender error as a JSON-ready dict, and back through its constructor.

A service answers a failed request with ``{"error": {"code", "type", "message", "fields"}}``
(:func:`error_body`); a remote client turns that body back into the same exception class, built
through its constructor with the same attributes (``project``, ``expected_version``, ``field``
...) and the server's message (:func:`rebuild_error`). So ``except FeatureTableNotFoundError as
e: e.name`` works the same against a local registry and through the core service.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import cast

from provender import errors

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
    "FeatureRefError": lambda m, f: errors.FeatureRefError(_text(f, "ref"), m),
    "ConfigError": lambda m, f: errors.ConfigError(_text(f, "key"), m),
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
    "RequestTooLargeError": lambda m, _f: errors.RequestTooLargeError(m),
    "JobCancelledError": lambda m, _f: errors.JobCancelledError(m),
    "NotFoundError": _not_found(errors.NotFoundError),
    "EntityNotFoundError": _not_found(errors.EntityNotFoundError),
    "FeatureTableNotFoundError": _not_found(errors.FeatureTableNotFoundError),
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


def error_fields(error: BaseException) -> dict[str, object]:
    """Return the public attributes of ``error`` that JSON can carry (tuples as lists)."""
    fields: dict[str, object] = {}
    for name, value in vars(error).items():
        if name.startswith("_"):
            continue
        if isinstance(value, tuple | list):
            value = [item if isinstance(item, str | int | float | bool) else str(item) for item in value]
        elif value is not None and not isinstance(value, str | int | float | bool):
            value = str(value)
        fields[name] = value
    return fields


def error_body(error: BaseException, *, code: str, message: str) -> dict[str, object]:
    """Return the ``{"error": {...}}`` body answering ``error`` (``code``: the gRPC-style status name)."""
    return {"error": {"code": code, "type": type(error).__name__, "message": message, "fields": error_fields(error)}}


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
        if code in ("INVALID_ARGUMENT", "NOT_FOUND"):
            return errors.DataError(message)
        return errors.BackendError(message, retryable=code == "UNAVAILABLE")
    error = builder(message, fields)
    error.args = (message,)
    if isinstance(error, errors.BackendError) and code == "UNAVAILABLE":
        error.retryable = True
    return error
