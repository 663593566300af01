"""HTTP bodies: pydantic models for the OpenAPI document, and the hand-written request parser.

The models describe the API (``GET /v1/openapi.json``). Requests are *parsed* by
:func:`parse_online_request`, which checks the same rules by hand: validating a body with
pydantic costs more than the rest of a small request, and the hot path is what the service is
measured by. ``tests/unit/serving/test_schemas.py`` checks that both agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from provender import __version__
from provender.errors import DataError
from provender.serving.limits import RequestLimits

StatusName = Literal["PRESENT", "NOT_FOUND", "OUTSIDE_MAX_AGE", "NULL_VALUE", "CORRUPT"]


class OnlineFeaturesRequest(BaseModel):
    """``POST /v1/online-features``: the latest values of some features for some entity rows."""

    model_config = ConfigDict(extra="forbid", strict=True)
    features: list[str] = Field(
        description="Feature refs: '<table>:<feature>', or '<table>' for all of a table's features; an empty "
        "list, a malformed or unknown ref, or a feature named twice is a FeatureRefError.",
        examples=[["driver_statistics:conv_rate", "driver_statistics:acc_rate"]],
    )
    entities: dict[str, list[Any]] = Field(
        description="Entity columns, all of the same length: one value per entity row. BYTES keys are "
        "base64 strings. Columns that are not entities pass through to the response.",
        examples=[{"driver_id": [1001, 1002]}],
    )
    project: str | None = Field(default=None, description="The project to read (default: the server's).")
    include_statuses: bool = Field(default=False, description="Also return a status per value.")
    include_types: bool = Field(default=False, description="Also return each column's value type.")


class OnlineFeaturesResponse(BaseModel):
    """The values, column by column; NaN and infinities are the strings 'NaN', 'Infinity', '-Infinity'."""

    columns: dict[str, list[Any]] = Field(
        description="The entity columns as sent, then '<table>__<feature>' columns in ref order. BYTES are "
        "base64 strings, UNIX_TIMESTAMP RFC 3339 strings (UTC).",
        examples=[{"driver_id": [1001, 1002], "driver_statistics__conv_rate": [0.5, None]}],
    )
    statuses: dict[str, list[StatusName]] | None = Field(
        default=None, description="Only with include_statuses: a status per feature value."
    )
    types: dict[str, str] | None = Field(
        default=None, description="Only with include_types: the ValueType of each entity and feature column."
    )


class ErrorDetail(BaseModel):
    """What went wrong."""

    code: str = Field(description="The gRPC-style code, e.g. INVALID_ARGUMENT, UNAVAILABLE.")
    type: str = Field(description="The error class, e.g. FeatureTableNotFoundError.")
    message: str = Field(description="What failed, the offending value, and what to do.")


class ErrorResponse(BaseModel):
    """An error answer (any status other than 200)."""

    error: ErrorDetail


class HealthResponse(BaseModel):
    """``GET /v1/health`` and ``GET /v1/ready``."""

    status: Literal["ok", "ready", "unavailable"]
    detail: str | None = None
    version: str | None = Field(default=None, description="The serving package's version (on /v1/health).")


# -- the hand-written parser -----------------------------------------------------------------------

_FIELDS = ("features", "entities", "project", "include_statuses", "include_types")
_FIELD_SET = frozenset(_FIELDS)


@dataclass(frozen=True, slots=True, kw_only=True)
class OnlineRequest:
    """A parsed ``POST /v1/online-features`` body (see :class:`OnlineFeaturesRequest`)."""

    features: tuple[str, ...]
    entities: dict[str, list[Any]]
    project: str | None
    include_statuses: bool
    include_types: bool


def parse_online_request(body: bytes, *, limits: RequestLimits) -> OnlineRequest:
    """Parse and check a request body; the counts are checked against ``limits`` before the elements.

    Raises:
        DataError: invalid JSON, a missing or mistyped field, or columns of different lengths;
            the message names the problem.
        RequestTooLargeError: more refs, columns or rows than ``limits`` allow.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise DataError(f"The request body is not valid JSON: {exc}") from None
    if type(data) is not dict:
        raise DataError(f"The request body must be a JSON object, got {_json_type(data)}.")
    if len(data) > 2 and not data.keys() <= _FIELD_SET:
        unknown = sorted(set(data) - _FIELD_SET)
        raise DataError(f"Unknown field(s) {unknown} in the request; expected {', '.join(_FIELDS)}.")
    features = data.get("features")
    if type(features) is not list:
        raise DataError("'features' must be a list of feature refs, e.g. [\"driver_statistics:conv_rate\"].")
    entities = data.get("entities")
    if type(entities) is not dict:
        raise DataError("'entities' must be an object of entity columns, e.g. {\"driver_id\": [1001, 1002]}.")
    limits.check_counts(len(features), len(entities))
    limits.check_rows(max((len(values) for values in entities.values() if type(values) is list), default=0))
    # An empty list is the request model's to refuse (FeatureRefError), as on every other path.
    if not all(type(ref) is str for ref in features):
        raise DataError("'features' must be a list of feature refs, e.g. [\"driver_statistics:conv_rate\"].")
    rows = -1
    for name, values in entities.items():
        if type(values) is not list:
            raise DataError(f"entities[{name!r}] must be a list with one value per entity row.")
        if rows < 0:
            rows = len(values)
        elif len(values) != rows:
            raise DataError(
                f"The entity columns differ in length: entities[{name!r}] has {len(values)} values, "
                f"the first column {rows}."
            )
    project = data.get("project")
    if project is not None and (type(project) is not str or not project):
        raise DataError("'project' must be a non-empty string.")
    include_statuses = data.get("include_statuses", False)
    include_types = data.get("include_types", False)
    if type(include_statuses) is not bool or type(include_types) is not bool:
        raise DataError("'include_statuses' and 'include_types' must be true or false.")
    return OnlineRequest(
        features=tuple(features),
        entities=entities,
        project=project,
        include_statuses=include_statuses,
        include_types=include_types,
    )


def _json_type(value: object) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), "null"
    )


def openapi_document() -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of the HTTP API (served at ``GET /v1/openapi.json``)."""
    models: list[type[BaseModel]] = [OnlineFeaturesRequest, OnlineFeaturesResponse, ErrorResponse, HealthResponse]
    _, definitions = models_json_schema(
        [(model, "validation") for model in models], ref_template="#/components/schemas/{model}"
    )

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}

    def error(description: str) -> dict[str, Any]:
        return {"description": description, **ref(ErrorResponse)}

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Provender serving",
            "version": __version__,
            "description": "Online feature lookups. Also served over gRPC: protos/provender/serving/v1/serving.proto.",
        },
        "paths": {
            "/v1/online-features": {
                "post": {
                    "summary": "Read the latest feature values for entity rows",
                    "operationId": "getOnlineFeatures",
                    "requestBody": {"required": True, **ref(OnlineFeaturesRequest)},
                    "responses": {
                        "200": {"description": "The values", **ref(OnlineFeaturesResponse)},
                        "400": error("Invalid JSON, an unknown ref, a wrong key type, too many rows"),
                        "401": error("No, or an invalid, bearer token"),
                        "403": error("The token does not grant the project"),
                        "404": error("The project is not served"),
                        "413": error("The body is too large"),
                        "503": error("The online store is unavailable; retry later"),
                    },
                    "security": [{}, {"bearer": []}],
                }
            },
            "/v1/health": {
                "get": {
                    "summary": "Liveness: the process answers",
                    "operationId": "health",
                    "responses": {"200": {"description": "Alive", **ref(HealthResponse)}},
                }
            },
            "/v1/ready": {
                "get": {
                    "summary": "Readiness: the online store answers",
                    "operationId": "ready",
                    "responses": {
                        "200": {"description": "Ready", **ref(HealthResponse)},
                        "503": {"description": "The store does not answer", **ref(HealthResponse)},
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "operationId": "metrics",
                    "responses": {"200": {"description": "Exposition text", "content": {"text/plain": {}}}},
                }
            },
        },
        "components": {
            "schemas": definitions["$defs"],
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
