"""The OpenAPI 3.1 document of the core service (``GET /v1/openapi.json``), written by hand.

Definitions travel in their versioned registry form (``{"format_version", "kind", "spec"}``, see
:mod:`provender.registry.codec`); the schemas below describe the envelopes around them.
"""

from __future__ import annotations

_OBJECT = {"type": "object"}
_DEFINITION = {
    "type": "object",
    "description": "An entity, feature table or on-demand features in its versioned registry form.",
    "required": ["format_version", "kind", "spec"],
    "properties": {
        "format_version": {"type": "integer"},
        "kind": {"type": "string", "enum": ["entity", "feature_table", "on_demand_features"]},
        "spec": _OBJECT,
    },
}
_TIME = {"type": ["string", "null"], "format": "date-time"}
SCHEMAS: dict[str, object] = {
    "Definition": _DEFINITION,
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "type", "message"],
                "properties": {
                    "code": {"type": "string", "description": "gRPC-style status name, e.g. ABORTED"},
                    "type": {"type": "string", "description": "the error class, e.g. RegistryVersionConflictError"},
                    "message": {"type": "string"},
                    "fields": {"type": "object", "description": "the error's attributes, e.g. expected_version"},
                },
            }
        },
    },
    "Project": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "integer"},
            "updated_at": _TIME,
            "archived_at": _TIME,
        },
    },
    "Snapshot": {
        "type": "object",
        "properties": {
            "project": {"type": "string"},
            "version": {"type": "integer"},
            "updated_at": _TIME,
            "archived_at": _TIME,
            "entities": {"type": "array", "items": {"$ref": "#/components/schemas/Definition"}},
            "feature_tables": {"type": "array", "items": {"$ref": "#/components/schemas/Definition"}},
            "on_demand_features": {"type": "array", "items": {"$ref": "#/components/schemas/Definition"}},
        },
    },
    "ApplyRequest": {
        "type": "object",
        "required": ["definitions"],
        "properties": {
            "definitions": {"type": "array", "items": {"$ref": "#/components/schemas/Definition"}},
            "expected_version": {
                "type": ["integer", "null"],
                "description": "the version the plan was made against; a different current version answers 409",
            },
        },
    },
    "Plan": {
        "type": "object",
        "properties": {
            "project": {"type": "string"},
            "version": {"type": "integer"},
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                        "action": {"type": "string", "enum": ["added", "changed", "unchanged", "refused"]},
                        "detail": {"type": "string"},
                    },
                },
            },
        },
    },
    "ChangeRequest": {
        "type": "object",
        "required": ["expected_version", "change"],
        "properties": {
            "expected_version": {"type": "integer"},
            "change": {
                "type": "object",
                "properties": {
                    "put": {"type": "array", "items": {"$ref": "#/components/schemas/Definition"}},
                    "delete_entities": {"type": "array", "items": {"type": "string"}},
                    "delete_feature_tables": {"type": "array", "items": {"type": "string"}},
                    "delete_on_demand_features": {"type": "array", "items": {"type": "string"}},
                    "description": {"type": "string"},
                },
            },
        },
    },
    "Change": {
        "type": "object",
        "properties": {
            "project": {"type": "string"},
            "version_before": {"type": "integer"},
            "version_after": {"type": "integer"},
            "changed_at": {"type": "string", "format": "date-time"},
            "actor": {"type": "string"},
            "description": {"type": "string"},
            "items": {"type": "array", "items": _OBJECT},
        },
    },
    "Job": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "kind": {"type": "string", "enum": ["offline_to_online", "stream_to_online", "historical"]},
            "project": {"type": "string"},
            "table": {"type": "string"},
            "status": {"type": "string", "enum": ["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]},
            "created_at": _TIME,
            "started_at": _TIME,
            "finished_at": _TIME,
            "heartbeat_at": _TIME,
            "rows": {"type": "integer"},
            "error": {"type": "string"},
            "runner": {"type": "string"},
            "cancel_requested": {"type": "boolean"},
        },
    },
    "IngestionRequest": {
        "type": "object",
        "required": ["table", "start", "end"],
        "properties": {
            "table": {"type": "string"},
            "start": {"type": "string", "format": "date-time"},
            "end": {"type": "string", "format": "date-time"},
            "batch_rows": {"type": "integer", "minimum": 1},
            "validation_policy": {"type": "string", "enum": ["fail", "skip", "warn"]},
        },
    },
}

_PROJECT = {"name": "project", "in": "path", "required": True, "schema": {"type": "string"}}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_EXPECTED = {"name": "expected_version", "in": "query", "required": False, "schema": {"type": "integer"}}
_LIMIT = {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "default": 100}}

# path -> method -> (summary, role, parameters, request schema, response schema)
_OPERATIONS: dict[str, dict[str, tuple[str, str, list[object], str | None, str]]] = {
    "/v1/projects": {"get": ("List the projects the caller may read", "read", [], None, "Projects")},
    "/v1/projects/{project}/archive": {
        "post": ("Archive a project: read-only and hidden from listings", "admin", [_PROJECT], None, "Project")
    },
    "/v1/projects/{project}/registry": {
        "get": ("Everything in a project, at one version", "read", [_PROJECT], None, "Snapshot")
    },
    "/v1/projects/{project}/entities": {"get": ("List entities", "read", [_PROJECT], None, "Definitions")},
    "/v1/projects/{project}/entities/{name}": {
        "get": ("Get an entity", "read", [_PROJECT, _NAME], None, "DefinitionAnswer"),
        "delete": ("Delete an entity", "write", [_PROJECT, _NAME, _EXPECTED], None, "Version"),
    },
    "/v1/projects/{project}/feature-tables": {"get": ("List feature tables", "read", [_PROJECT], None, "Definitions")},
    "/v1/projects/{project}/feature-tables/{name}": {
        "get": ("Get a feature table", "read", [_PROJECT, _NAME], None, "DefinitionAnswer"),
        "delete": ("Delete a feature table", "write", [_PROJECT, _NAME, _EXPECTED], None, "Version"),
    },
    "/v1/projects/{project}/plan": {
        "post": ("What an apply would do, changing nothing", "read", [_PROJECT], "ApplyRequest", "Plan")
    },
    "/v1/projects/{project}/apply": {
        "post": ("Create or update definitions, all or none", "write", [_PROJECT], "ApplyRequest", "Plan")
    },
    "/v1/projects/{project}/changes": {
        "post": ("Commit a change computed by a remote client", "write", [_PROJECT], "ChangeRequest", "Snapshot")
    },
    "/v1/projects/{project}/history": {
        "get": ("Audited changes of a project, newest first", "read", [_PROJECT, _LIMIT], None, "Changes")
    },
    "/v1/history": {"get": ("Audited changes of every readable project", "read", [_LIMIT], None, "Changes")},
    "/v1/projects/{project}/jobs": {"get": ("List job records", "read", [_PROJECT], None, "Jobs")},
    "/v1/projects/{project}/ingestion-jobs": {
        "post": ("Run an offline-to-online ingestion job inside the service", "write", [_PROJECT], "IngestionRequest",
                 "Job")
    },
    "/v1/jobs": {"post": ("Record a job that a client runs", "write", [], "Job", "Job")},
    "/v1/jobs/{id}": {
        "get": ("Get a job record", "read", [_ID], None, "Job"),
        "patch": ("Update a job record", "write", [_ID], None, "Job"),
    },
    "/v1/jobs/{id}/cancel": {"post": ("Cancel a job", "write", [_ID], None, "Job")},
    "/v1/jobs/fail-stale": {"post": ("Fail RUNNING jobs whose runner stopped beating", "admin", [], None, "Jobs")},
}  # fmt: skip

_ANSWERS: dict[str, object] = {
    "Projects": {
        "type": "object",
        "properties": {"projects": {"type": "array", "items": {"$ref": "#/components/schemas/Project"}}},
    },
    "Definitions": {"type": "object", "properties": {"version": {"type": "integer"}}},
    "DefinitionAnswer": {
        "type": "object",
        "properties": {"version": {"type": "integer"}, "definition": {"$ref": "#/components/schemas/Definition"}},
    },
    "Version": {"type": "object", "properties": {"version": {"type": "integer"}}},
    "Changes": {
        "type": "object",
        "properties": {"changes": {"type": "array", "items": {"$ref": "#/components/schemas/Change"}}},
    },
    "Jobs": {
        "type": "object",
        "properties": {"jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}}},
    },
}

_ERRORS = {
    "400": "Bad request: invalid JSON or definitions, an unknown name",
    "401": "No, or an invalid, bearer token",
    "403": "The token lacks the role needed in the project",
    "404": "No such project, entity, feature table or job",
    "409": "A stale expected_version (ABORTED), a change that would break a reference, an archived project",
    "503": "The registry is unreachable; retry",
}


def openapi_document() -> dict[str, object]:
    """Return the OpenAPI 3.1 document of the core service's API."""
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    paths: dict[str, object] = {}
    for path, methods in _OPERATIONS.items():
        operations: dict[str, object] = {}
        for method, (summary, role, parameters, request, answer) in methods.items():
            operation: dict[str, object] = {
                "summary": summary,
                "description": f"Needs role `{role}` in the project when auth is on.",
                "operationId": f"{method}_{path.strip('/').replace('/', '_').replace('{', '').replace('}', '')}",
                "parameters": parameters,
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{answer}"}}},
                    },
                    **{code: {"description": text, **error} for code, text in _ERRORS.items()},
                },
            }
            if request is not None:
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{request}"}}},
                }
            operations[method] = operation
        paths[path] = operations
    plain = {"200": {"description": "OK"}, "503": {"description": "Not ready"}}
    paths["/v1/health"] = {"get": {"summary": "Liveness", "operationId": "health", "responses": plain}}
    paths["/v1/ready"] = {"get": {"summary": "The registry answers", "operationId": "ready", "responses": plain}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Provender core service",
            "version": "1",
            "description": "The registry (projects, entities, feature tables, history) and job records over HTTP/JSON.",
        },
        "paths": paths,
        "components": {
            "schemas": {**SCHEMAS, **_ANSWERS},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
    }
