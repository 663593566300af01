"""Errors -> HTTP statuses and gRPC codes: the one table, used by both transports.

Domain errors come from :mod:`provender.errors` (authentication errors included), which knows
nothing of HTTP or gRPC; the few errors only the serving service raises are defined here, inside
the same hierarchy::

    ProvenderError
    └── ProjectNotServedError(LookupError)  a project the server does not serve    404 NOT_FOUND

The whole table (the first matching row along the exception's MRO wins)::

    AuthenticationError        401  UNAUTHENTICATED
    PermissionDeniedError      403  PERMISSION_DENIED
    ProjectNotServedError      404  NOT_FOUND
    RequestTooLargeError       413  INVALID_ARGUMENT
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
"""

from __future__ import annotations

from dataclasses import dataclass

from provender.errors import (
    AuthenticationError,
    BackendError,
    DataError,
    DefinitionError,
    FeatureRefError,
    JobNotFoundError,
    JobStateError,
    NotFoundError,
    PermissionDeniedError,
    ProjectNotFoundError,
    ProvenderError,
    RegistryConflictError,
    RegistryVersionConflictError,
    RequestTooLargeError,
)


class ProjectNotServedError(ProvenderError, LookupError):
    """The request names a project that this server does not serve.

    Attributes:
        project: the project asked for.
        served: the projects that are served.
    """

    def __init__(self, project: str, *, served: list[str]) -> None:
        self.project, self.served = project, served
        super().__init__(f"Project {project!r} is not served here; served projects: {', '.join(served) or '(none)'}.")


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
    AuthenticationError: ErrorStatus(401, "UNAUTHENTICATED"),
    PermissionDeniedError: ErrorStatus(403, "PERMISSION_DENIED"),
    ProjectNotServedError: ErrorStatus(404, "NOT_FOUND"),
    RequestTooLargeError: ErrorStatus(413, "INVALID_ARGUMENT"),
    RegistryVersionConflictError: ErrorStatus(409, "ABORTED"),
    RegistryConflictError: ErrorStatus(409, "FAILED_PRECONDITION"),
    JobStateError: ErrorStatus(409, "FAILED_PRECONDITION"),
    ProjectNotFoundError: ErrorStatus(404, "NOT_FOUND"),
    JobNotFoundError: ErrorStatus(404, "NOT_FOUND"),
    DataError: _INVALID,
    FeatureRefError: _INVALID,
    NotFoundError: _INVALID,
    DefinitionError: _INVALID,
    BackendError: INTERNAL,
    ProvenderError: INTERNAL,
}
"""The one table; a retryable :class:`BackendError` is answered with :data:`UNAVAILABLE`."""


def status_of(error: BaseException) -> ErrorStatus:
    """Return how ``error`` is answered over HTTP and gRPC (see the module docstring)."""
    if isinstance(error, BackendError) and error.retryable:
        return UNAVAILABLE
    for cls in type(error).__mro__:
        status = ERROR_STATUSES.get(cls)
        if status is not None:
            return status
    return INTERNAL


def is_expected(error: BaseException) -> bool:
    """Whether ``error`` is a client's or the store's fault (not a bug worth a traceback)."""
    return isinstance(error, ProvenderError)
