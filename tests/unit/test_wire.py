"""Errors on the wire: every error a service answers comes back as the same class, fields and message."""

from __future__ import annotations

import orjson
import pytest

from provender import errors
from provender.wire import error_body, rebuild_error

ERRORS: list[errors.ProvenderError] = [
    errors.DefinitionError("FeatureTable 'trips'", "max_age", "must be positive"),
    errors.FeatureRefError("trips:nope", "no feature 'nope' in table 'trips'"),
    errors.ConfigError("online.store", "unknown backend 'redsi'"),
    errors.RegistryConflictError(["entity 'driver_id' is used by feature tables: trips"], project="fraud"),
    errors.RegistryVersionConflictError(project="fraud", expected_version=3, actual_version=4),
    errors.ProjectArchivedError(project="old"),
    errors.JobStateError("job-1", "cannot set project", status="RUNNING"),
    errors.DataError("column 'driver_id' is missing"),
    errors.RequestTooLargeError("The request body is larger than 10 bytes."),
    errors.EntityNotFoundError("drivr", project="fraud", known=["driver"]),
    errors.FeatureTableNotFoundError("trps", project="fraud", known=["trips"]),
    errors.ProjectNotFoundError("frau", known=["fraud"]),
    errors.JobNotFoundError("job-2"),
    errors.MissingExtraError("redis", extra="redis", missing="redis"),
    errors.BackendError("registry down", retryable=True),
    errors.RegistrySchemaError("/tmp/r.db", found=9, supported=3),
    errors.AuthenticationError("Missing bearer token."),
    errors.PermissionDeniedError("fraud", needed="write", held="read"),
    errors.JobCancelledError("job job-3 was cancelled after 10 rows"),
    errors.NotFoundError("thing", project="fraud"),
]


def test_every_error_class_is_covered() -> None:
    classes = {cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.ProvenderError)}
    assert classes - {errors.ProvenderError} == {type(error) for error in ERRORS}


@pytest.mark.parametrize("error", ERRORS, ids=[type(e).__name__ for e in ERRORS])
def test_an_error_is_rebuilt_with_its_class_fields_and_message(error: errors.ProvenderError) -> None:
    body = orjson.loads(orjson.dumps(error_body(error, code="SOME_CODE", message=str(error))))["error"]
    rebuilt = rebuild_error(body["type"], code=body["code"], message=body["message"], fields=body["fields"])
    assert type(rebuilt) is type(error)
    assert str(rebuilt) == str(error)
    expected = {k: list(v) if isinstance(v, tuple) else v for k, v in vars(error).items()}
    got = {k: list(v) if isinstance(v, tuple) else v for k, v in vars(rebuilt).items()}
    assert got == expected


def test_unknown_errors_fall_back_by_status() -> None:
    unavailable = rebuild_error("SomethingNew", code="UNAVAILABLE", message="down")
    assert isinstance(unavailable, errors.BackendError) and unavailable.retryable
    assert type(rebuild_error("SomethingNew", code="INVALID_ARGUMENT", message="bad")) is errors.DataError
    assert rebuild_error("BackendError", code="UNAVAILABLE", message="x", fields={"retryable": False}).retryable
