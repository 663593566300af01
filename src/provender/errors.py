"""The one error hierarchy of Provender.

Every error Provender raises derives from :class:`ProvenderError`, and each base also
derives from the builtin it refines, so ``except LookupError`` keeps working::

    ProvenderError(Exception)
    ├── DefinitionError(ValueError)        a bad Entity / Feature / FeatureTable / source
    ├── FeatureRefError(ValueError)        a malformed or unknown "<table>:<feature>" ref
    ├── ConfigError(ValueError)            provender.yaml / PROVENDER_* / arguments
    ├── RegistryConflictError(ValueError)  an apply or delete that would break a reference
    │   ├── RegistryVersionConflictError   planned against a version that is no longer current
    │   └── ProjectArchivedError           a write to an archived project
    ├── JobStateError(ValueError)          a job update that its current status does not allow
    ├── DataError(ValueError)              bad input data: missing column, wrong type, bad row
    │   └── RequestTooLargeError           a request body over a service's size limit
    ├── OnDemandFunctionError              on-demand features' function missing, failing or mismatched
    ├── ProjectNotServedError(LookupError)  a project the serving service does not serve
    ├── NotFoundError(LookupError)
    │   ├── EntityNotFoundError
    │   ├── FeatureTableNotFoundError
    │   ├── OnDemandFeaturesNotFoundError
    │   ├── ProjectNotFoundError
    │   └── JobNotFoundError
    ├── MissingExtraError(ImportError)     a backend whose optional dependency is absent
    ├── AuthenticationError                no, or an invalid, bearer token (HTTP 401)
    ├── PermissionDeniedError(PermissionError)  the token lacks the project or role (HTTP 403)
    └── BackendError                       a store / engine / broker failed (``retryable``)
        └── RegistrySchemaError            a registry written by a newer Provender

Errors keep their inputs as attributes and say what failed, the offending value and the
next step.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest known name, or ``""``."""
    guess = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" Did you mean {guess[0]!r}?" if guess else ""


class ProvenderError(Exception):
    """Base of every error Provender raises."""


class DefinitionError(ProvenderError, ValueError):
    """A definition (entity, feature, feature table, source) is invalid.

    Attributes:
        obj: what is invalid, e.g. ``"FeatureTable 'driver_stats'"``.
        field: the offending field, e.g. ``"max_age"``.
    """

    def __init__(self, obj: str, field: str, problem: str) -> None:
        self.obj, self.field, self.problem = obj, field, problem
        super().__init__(f"{obj}: field {field!r}: {problem}")


class FeatureRefError(ProvenderError, ValueError):
    """A feature ref is malformed (``"a:b:c"``), names an unknown feature, or repeats one.

    Attributes:
        ref: the offending ref (for a feature requested twice, that feature's ``"<table>:<feature>"``).
        problem: what is wrong with it.
    """

    def __init__(self, ref: str, problem: str) -> None:
        self.ref, self.problem = ref, problem
        super().__init__(f"Feature ref {ref!r}: {problem}")


class ConfigError(ProvenderError, ValueError):
    """A setting is invalid or unknown.

    Attributes:
        key: the dotted setting name, e.g. ``"online.store"``.
        problem: what is wrong with it.
    """

    def __init__(self, key: str, problem: str) -> None:
        self.key, self.problem = key, problem
        super().__init__(f"Setting {key!r}: {problem}")


class RegistryConflictError(ProvenderError, ValueError):
    """An apply or delete was refused whole because it would break the registry.

    Attributes:
        conflicts: one human-readable line per conflict.
    """

    def __init__(self, conflicts: Sequence[str], *, project: str) -> None:
        self.conflicts = tuple(conflicts)
        self.project = project
        lines = "\n  - ".join(self.conflicts)
        super().__init__(f"Refused (project {project!r}, nothing was changed):\n  - {lines}")


class RegistryVersionConflictError(RegistryConflictError):
    """A change was planned against a registry version that is no longer the current one.

    Attributes:
        expected_version: the version the change was planned against.
        actual_version: the project's current version.
    """

    def __init__(self, *, project: str, expected_version: int, actual_version: int) -> None:
        self.expected_version, self.actual_version = expected_version, actual_version
        super().__init__(
            [
                f"the change was planned against version {expected_version}, but the registry is at version "
                f"{actual_version} (someone else changed it): plan and apply again"
            ],
            project=project,
        )


class ProjectArchivedError(RegistryConflictError):
    """A write to an archived project; its definitions are kept and can still be read."""

    def __init__(self, *, project: str) -> None:
        super().__init__(
            [f"project {project!r} is archived: its definitions can be read but not changed"], project=project
        )


class JobStateError(ProvenderError, ValueError):
    """A job record cannot be written in its current state (e.g. finishing a cancelled job).

    Attributes:
        job_id: the job's id.
        status: the job's current status (None if the record is new).
    """

    def __init__(self, job_id: str, problem: str, *, status: str | None = None) -> None:
        self.job_id, self.status = job_id, status
        super().__init__(f"Job {job_id!r}: {problem}")


class DataError(ProvenderError, ValueError):
    """Input data is unusable: a missing column, a wrong type, a bad row."""


class SourcePathNotAllowedError(DataError):
    """A source, entity-row file or output path lies outside the setting ``sources.allowed_roots``.

    Attributes:
        path: the path or URL as given.
        what: what uses it (e.g. "batch source of feature table 'trips'").
        roots: the allowed roots.
        resolved: the real path it resolves to, when that differs (symlinks, ``..``).
        reason: why, when it is not simply outside every root.
    """

    def __init__(
        self,
        path: str,
        *,
        what: str,
        roots: Sequence[str],
        resolved: str | None = None,
        reason: str | None = None,
    ) -> None:
        self.path, self.what, self.roots = path, what, tuple(roots)
        self.resolved, self.reason = resolved, reason
        where = f" (it resolves to {resolved})" if resolved else ""
        why = reason or f"it is outside sources.allowed_roots {list(self.roots)}"
        super().__init__(
            f"{what}: {path!r}{where} is not allowed: {why}. Add its folder or URL prefix to the setting "
            "sources.allowed_roots, or move the data under an allowed root."
        )


class OnDemandFunctionError(ProvenderError):
    """On-demand features' function is missing, not the applied one, fails, or returns bad output.

    Attributes:
        name: the on-demand features' name.
        function: the function's import path.
        problem: what went wrong.
    """

    def __init__(self, name: str, function: str, problem: str) -> None:
        self.name, self.function, self.problem = name, function, problem
        super().__init__(f"OnDemandFeatures {name!r}, function {function!r}: {problem}")


class RequestTooLargeError(DataError):
    """A request body is larger than the service accepts."""


class NotFoundError(ProvenderError, LookupError):
    """A named object does not exist."""

    kind = "object"

    def __init__(self, name: str, *, project: str, known: Sequence[str] = ()) -> None:
        self.name, self.project = name, project
        hint = did_you_mean(name, known) or " Run `provender apply` to register it."
        super().__init__(f"No {self.kind} {name!r} in project {project!r}.{hint}")


class EntityNotFoundError(NotFoundError):
    """No entity of that name is registered."""

    kind = "entity"


class FeatureTableNotFoundError(NotFoundError):
    """No feature table of that name is registered."""

    kind = "feature table"


class OnDemandFeaturesNotFoundError(NotFoundError):
    """No on-demand features of that name are registered."""

    kind = "on-demand features"


class ProjectNotFoundError(NotFoundError):
    """No project of that name has been written to."""

    kind = "project"

    def __init__(self, name: str, *, known: Sequence[str] = ()) -> None:
        self.name, self.project = name, name
        hint = did_you_mean(name, known) or " `provender projects list` shows the projects."
        super(NotFoundError, self).__init__(f"No project {name!r}.{hint}")


class JobNotFoundError(NotFoundError):
    """No job of that id is recorded."""

    kind = "job"

    def __init__(self, job_id: str) -> None:
        self.name, self.project = job_id, ""
        super(NotFoundError, self).__init__(f"No job {job_id!r}. `provender jobs list` shows the recorded jobs.")


class ProjectNotServedError(ProvenderError, LookupError):
    """A request names a project that this serving service does not serve.

    Attributes:
        project: the project asked for.
        served: the projects that are served.
    """

    def __init__(self, project: str, *, served: Sequence[str]) -> None:
        self.project, self.served = project, list(served)
        names = ", ".join(self.served) or "(none)"
        super().__init__(f"Project {project!r} is not served here; served projects: {names}.")


class MissingExtraError(ProvenderError, ImportError):
    """A backend needs an optional dependency that is not installed."""

    def __init__(self, backend: str, *, extra: str, missing: str) -> None:
        self.backend, self.extra, self.missing = backend, extra, missing
        super().__init__(
            f"Backend {backend!r} needs the Python package {missing!r}, which is not installed. "
            f"Run: pip install 'provender[{extra}]'"
        )


class AuthenticationError(ProvenderError):
    """The request has no bearer token, or one that is invalid or expired."""


class PermissionDeniedError(ProvenderError, PermissionError):
    """The token is valid but does not grant the project, or not the role needed there.

    Attributes:
        project: the project asked for.
        needed: the role the request needs (None: any role).
        held: the role the token holds in the project (None: none).
    """

    def __init__(self, project: str, *, needed: str | None = None, held: str | None = None) -> None:
        self.project, self.needed, self.held = project, needed, held
        if needed is None or held is None:
            message = f"The token does not grant project {project!r}; ask for a token that lists it."
        else:
            message = (
                f"The token holds role {held!r} in project {project!r}, but this needs {needed!r}; "
                "ask for a token with that role."
            )
        super().__init__(message)


class BackendError(ProvenderError):
    """A backing service (store, engine, broker) failed.

    Attributes:
        retryable: whether trying again later may succeed (e.g. a connection refused).
    """

    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        self.retryable = retryable
        super().__init__(message)


class RegistrySchemaError(BackendError):
    """The registry's storage schema is newer than this Provender understands.

    Attributes:
        found: the schema version stored in the registry.
        supported: the newest schema version this Provender knows.
    """

    def __init__(self, location: str, *, found: int, supported: int) -> None:
        self.found, self.supported = found, supported
        super().__init__(
            f"The registry at {location} has schema version {found}, newer than this Provender supports "
            f"({supported}): upgrade provender (it was written by a newer release)"
        )


class JobCancelledError(ProvenderError):
    """The job was cancelled before it finished."""
