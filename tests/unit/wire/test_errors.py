"""One table maps every error to its HTTP status and gRPC code; errors cross the wire whole."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from provender import errors
from provender.errors import (
    AuthenticationError,
    BackendError,
    ConfigError,
    DataError,
    EntityNotFoundError,
    FeatureRefError,
    FeatureTableNotFoundError,
    PermissionDeniedError,
    ProjectNotServedError,
    RequestTooLargeError,
)
from provender.wire.errors import error_body, from_grpc_metadata, grpc_metadata, rebuild_error, status_of


@pytest.mark.parametrize(
    ("error", "http", "grpc"),
    [
        (DataError("bad"), 400, "INVALID_ARGUMENT"),
        (FeatureRefError("a:b:c", "bad"), 400, "INVALID_ARGUMENT"),
        (FeatureTableNotFoundError("t", project="p"), 400, "INVALID_ARGUMENT"),
        (EntityNotFoundError("e", project="p"), 400, "INVALID_ARGUMENT"),
        (RequestTooLargeError("big"), 413, "RESOURCE_EXHAUSTED"),
        (AuthenticationError("no"), 401, "UNAUTHENTICATED"),
        (PermissionDeniedError("p"), 403, "PERMISSION_DENIED"),
        (ProjectNotServedError("p", served=["default"]), 404, "NOT_FOUND"),
        (BackendError("down", retryable=True), 503, "UNAVAILABLE"),
        (BackendError("broken"), 500, "INTERNAL"),
        (ConfigError("k", "bad"), 500, "INTERNAL"),
        (RuntimeError("bug"), 500, "INTERNAL"),
    ],
)
def test_status_of(error: BaseException, http: int, grpc: str) -> None:
    status = status_of(error)
    assert (status.http, status.grpc) == (http, grpc)


def test_domain_errors_know_no_web_framework() -> None:
    import provender.errors as domain

    source = Path(domain.__file__).read_text(encoding="utf-8")
    for framework in ("grpc", "starlette", "uvicorn", "fastapi", "http."):
        assert f"import {framework}" not in source and f"from {framework}" not in source


# One error of every class in provender.errors, built as a service builds it.
SENT: list[errors.ProvenderError] = [
    errors.DefinitionError("FeatureTable 'trips'", "max_age", "must be positive"),
    errors.FeatureRefError("trips:nope", "feature table 'trips' has no feature 'nope'. Did you mean 'n'?"),
    errors.ConfigError("online.store", "unknown backend 'redsi'"),
    errors.RegistryConflictError(["entity 'driver_id' is used by feature tables: trips"], project="fraud"),
    errors.RegistryVersionConflictError(project="fraud", expected_version=3, actual_version=4),
    errors.ProjectArchivedError(project="old"),
    errors.JobStateError("job-1", "cannot set project", status="RUNNING"),
    errors.DataError("The request has 6 entity rows, more than this server's limit of 5."),
    errors.RequestTooLargeError("The request body is larger than 4194304 bytes."),
    errors.SourcePathNotAllowedError(
        "../secret", what="entity rows", roots=["data", "s3://lake/"], resolved="/srv/secret", reason=None
    ),
    errors.NotFoundError("thing", project="fraud"),
    errors.EntityNotFoundError("drivr", project="fraud", known=["driver"]),
    errors.FeatureTableNotFoundError("driver_stat", project="default", known=["driver_stats"]),
    errors.OnDemandFeaturesNotFoundError("ratio", project="default", known=["ratios"]),
    errors.OnDemandFunctionError("ratios", "acme.features:ratios", "raised ValueError: boom"),
    errors.ProjectNotFoundError("frau", known=["fraud"]),
    errors.JobNotFoundError("job-2"),
    errors.ProjectNotServedError("other", served=["default", "p"]),
    errors.MissingExtraError("redis", extra="redis", missing="redis"),
    errors.AuthenticationError("The request has no bearer token."),
    errors.PermissionDeniedError("p"),
    errors.PermissionDeniedError("fraud", needed="write", held="read"),
    errors.BackendError("The online store is unavailable (connection refused); retry later.", retryable=True),
    errors.BackendError("The store failed."),
    errors.RegistrySchemaError("/tmp/r.db", found=9, supported=3),
    errors.JobCancelledError("job job-3 was cancelled after 10 rows"),
]


def test_every_error_class_is_covered() -> None:
    classes = {cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.ProvenderError)}
    assert classes - {errors.ProvenderError} == {type(error) for error in SENT}


def _attributes(error: BaseException) -> dict[str, object]:
    return {name: list(v) if isinstance(v, tuple) else v for name, v in vars(error).items() if not name.startswith("_")}


@pytest.mark.parametrize("error", SENT, ids=[f"{type(e).__name__}-{n}" for n, e in enumerate(SENT)])
def test_errors_cross_http_and_grpc_with_their_class_attributes_and_message(error: errors.ProvenderError) -> None:
    status = status_of(error)
    # HTTP: the JSON body, as bytes on the wire.
    body = orjson.loads(orjson.dumps(error_body(error, code=status.grpc, message=str(error))))["error"]
    over_http = rebuild_error(body["type"], code=body["code"], message=body["message"], fields=body["fields"])
    # gRPC: the trailing metadata as the client sees it (the status details carry the message).
    kind, fields = from_grpc_metadata(grpc_metadata(error))
    over_grpc = rebuild_error(kind, code=status.grpc, message=str(error), fields=fields)
    for again in (over_http, over_grpc):
        assert type(again) is type(error)
        assert str(again) == str(error)
        assert _attributes(again) == _attributes(error)


def test_an_error_class_the_client_does_not_know_falls_back_by_status() -> None:
    unavailable = rebuild_error("StoreUnavailableError", code="UNAVAILABLE", message="down", fields={"retryable": True})
    assert type(unavailable) is errors.BackendError and unavailable.retryable and str(unavailable) == "down"
    assert type(rebuild_error("Whatever", code="INVALID_ARGUMENT", message="bad")) is errors.DataError
    backend = rebuild_error("BackendError", code="UNAVAILABLE", message="x", fields={"retryable": False})
    assert isinstance(backend, errors.BackendError) and backend.retryable
    assert from_grpc_metadata(None) == ("", {})
    assert from_grpc_metadata((("provender-error-fields-bin", b"not json"),)) == ("", {})
