"""One table maps every error to its HTTP status and gRPC code."""

from __future__ import annotations

from pathlib import Path

import pytest

from provender.errors import (
    BackendError,
    ConfigError,
    DataError,
    EntityNotFoundError,
    FeatureRefError,
    FeatureTableNotFoundError,
)
from provender.serving.errors import (
    AuthenticationError,
    PermissionDeniedError,
    ProjectNotServedError,
    RequestTooLargeError,
    status_of,
)


@pytest.mark.parametrize(
    ("error", "http", "grpc"),
    [
        (DataError("bad"), 400, "INVALID_ARGUMENT"),
        (FeatureRefError("a:b:c", "bad"), 400, "INVALID_ARGUMENT"),
        (FeatureTableNotFoundError("t", project="p"), 400, "INVALID_ARGUMENT"),
        (EntityNotFoundError("e", project="p"), 400, "INVALID_ARGUMENT"),
        (RequestTooLargeError("big"), 413, "INVALID_ARGUMENT"),
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
