"""Per-project roles on the core service: every endpoint against every kind of token.

Tokens: none (401), a bad one (401), one for another project (403 everywhere in project ``a``),
and ``read`` < ``write`` < ``admin`` in project ``a``: each endpoint needs one role, and a token
passes exactly when its role in the project is at least that. "Passes" means the service went on
to do the work (200, or 404/409 from the work itself), never 401 or 403.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import provender as pv
from provender.client.jobs import new_record
from provender.errors import AuthenticationError, PermissionDeniedError
from provender.registry import codec, wire
from provender.registry.jobs import JobKind
from tests.support.core import CoreServer, launch_core
from tests.unit.registry.definitions import driver, driver_statistics

pytestmark = pytest.mark.service

TOKENS = {
    "tok-read": {"subject": "reader", "grants": ["a:read"]},
    "tok-write": {"subject": "alice", "grants": ["a:write", "b:read"]},
    "tok-admin": {"subject": "boss", "grants": ["a:admin"]},
    "tok-b": {"subject": "bob", "grants": ["b:write"]},
    "tok-root": {"subject": "root", "grants": ["*:admin"]},
}
ROLE_OF = {"tok-read": 1, "tok-write": 2, "tok-admin": 3, "tok-b": 0, "tok-root": 3}
NEEDS = {"read": 1, "write": 2, "admin": 3}


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoreServer]:
    root = tmp_path_factory.mktemp("core-auth")
    auth = {"mode": "token", "tokens": TOKENS}
    server = launch_core(root, registry="sqlite:///registry.db", settings={"core": {"auth": auth}})
    definitions = [codec.to_dict(driver()), codec.to_dict(driver_statistics())]
    for project in ("a", "b"):
        status, _ = server.request(
            "POST", f"/v1/projects/{project}/apply", {"definitions": definitions}, token="tok-root"
        )
        assert status == 200
    yield server
    server.stop()


def job_body() -> dict[str, object]:
    return wire.job_to_dict(
        new_record(kind=JobKind.OFFLINE_TO_ONLINE, project="a", table="driver_statistics", runner="t")
    )


def a_job(core: CoreServer) -> str:
    body = job_body()
    assert core.request("POST", "/v1/jobs", body, token="tok-root")[0] == 200
    return str(body["id"])


Request = Callable[[CoreServer], tuple[str, str, object | None]]
NOW = datetime.now(UTC)
START, END = (NOW - timedelta(days=1)).isoformat(), NOW.isoformat()
DEFINITIONS = [codec.to_dict(driver()), codec.to_dict(driver_statistics())]

# (name, role needed in project a, request builder); archive last: it makes project a read-only.
ENDPOINTS: list[tuple[str, str, Request]] = [
    ("registry", "read", lambda c: ("GET", "/v1/projects/a/registry", None)),
    ("entities", "read", lambda c: ("GET", "/v1/projects/a/entities", None)),
    ("entity", "read", lambda c: ("GET", "/v1/projects/a/entities/driver_id", None)),
    ("tables", "read", lambda c: ("GET", "/v1/projects/a/feature-tables", None)),
    ("table", "read", lambda c: ("GET", "/v1/projects/a/feature-tables/driver_statistics", None)),
    ("plan", "read", lambda c: ("POST", "/v1/projects/a/plan", {"definitions": DEFINITIONS})),
    ("history", "read", lambda c: ("GET", "/v1/projects/a/history", None)),
    ("jobs", "read", lambda c: ("GET", "/v1/projects/a/jobs", None)),
    ("job", "read", lambda c: ("GET", f"/v1/jobs/{a_job(c)}", None)),
    ("apply", "write", lambda c: ("POST", "/v1/projects/a/apply", {"definitions": DEFINITIONS})),
    ("changes", "write", lambda c: ("POST", "/v1/projects/a/changes", {"expected_version": 1, "change": {}})),
    ("delete entity", "write", lambda c: ("DELETE", "/v1/projects/a/entities/nobody", None)),
    ("delete table", "write", lambda c: ("DELETE", "/v1/projects/a/feature-tables/nothing", None)),
    ("record job", "write", lambda c: ("POST", "/v1/jobs", job_body())),
    ("update job", "write", lambda c: ("PATCH", f"/v1/jobs/{a_job(c)}", {"changes": {"rows": 1}})),
    ("cancel job", "write", lambda c: ("POST", f"/v1/jobs/{a_job(c)}/cancel", None)),
    (
        "start ingestion",
        "write",
        lambda c: ("POST", "/v1/projects/a/ingestion-jobs", {"table": "nothing", "start": START, "end": END}),
    ),
    ("archive", "admin", lambda c: ("POST", "/v1/projects/a/archive", None)),
]


@pytest.mark.parametrize(("name", "role", "build"), ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
def test_every_endpoint_checks_the_role_in_its_project(core: CoreServer, name: str, role: str, build: Request) -> None:
    tokens = [None, "not-a-token", "tok-b", "tok-read", "tok-write", "tok-admin"]
    for token in tokens:
        method, path, body = build(core)
        status, answer = core.request(method, path, body, token=token)
        error = answer.get("error", {}) if status >= 400 else {}
        assert isinstance(error, dict)
        if token in (None, "not-a-token"):
            assert (status, error.get("type")) == (401, "AuthenticationError"), (name, token, answer)
        elif ROLE_OF[token] < NEEDS[role]:
            assert (status, error.get("type")) == (403, "PermissionDeniedError"), (name, token, answer)
            assert error.get("fields", {}).get("project") == "a"
        else:
            assert status not in (401, 403), (name, token, answer)
            assert status in (200, 404, 409), (name, token, answer)
            if name == "archive":
                return  # archived now: the remaining tokens would meet an archived project


def test_lists_show_only_granted_projects(core: CoreServer) -> None:
    def names(token: str) -> list[str]:
        status, answer = core.request("GET", "/v1/projects?include_archived=true", token=token)
        assert status == 200
        return [p["name"] for p in answer["projects"]]  # type: ignore[attr-defined]

    assert names("tok-b") == ["b"]
    assert names("tok-write") == ["a", "b"]
    assert names("tok-root") == ["a", "b", "default"]
    status, answer = core.request("GET", "/v1/history?limit=100", token="tok-b")
    assert status == 200
    assert {c["project"] for c in answer["changes"]} == {"b"}  # type: ignore[attr-defined]
    assert core.request("POST", "/v1/jobs/fail-stale", {"older_than_seconds": 60}, token="tok-admin")[0] == 403
    assert core.request("POST", "/v1/jobs/fail-stale", {"older_than_seconds": 60}, token="tok-root")[0] == 200


def test_the_client_sends_core_token_and_the_subject_is_the_actor(
    core: CoreServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "provender.yaml"
    config.write_text(f"registry: {core.url}\nproject: b\n")
    with closing(pv.Client(config)) as client, pytest.raises(AuthenticationError):
        client.list_entities()
    monkeypatch.setenv("PROVENDER_CORE_TOKEN", "tok-b")
    with closing(pv.Client(config)) as client:
        client.apply([driver(description="by bob")])
        assert client.registry_history(limit=1)[0].actor == "bob"
    with closing(pv.Client(config, project="a")) as other, pytest.raises(PermissionDeniedError) as denied:
        other.list_entities()
    assert denied.value.project == "a"
    read_only = pv.Client(settings=pv.Settings(registry=core.url, project="b", core_token="tok-write"))  # type: ignore[arg-type]
    with closing(read_only), pytest.raises(PermissionDeniedError) as denied:
        read_only.apply([driver(description="alice cannot")])
    assert (denied.value.project, denied.value.needed, denied.value.held) == ("b", "write", "read")
