"""``provender core`` end to end: a real core process, clients and the CLI going through it.

Local and remote registries must behave the same: the same answers and the same errors with the
same fields. A stale apply is 409; a restart mid-apply leaves the old or the new version, never
a mix; a table applied through the core service is served by a serving process.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
import yaml

import provender as pv
from provender.errors import (
    EntityNotFoundError,
    FeatureTableNotFoundError,
    ProvenderError,
    RegistryConflictError,
)
from provender.registry import codec
from tests.support.core import CoreServer, StartCore
from tests.unit.registry.definitions import customer, customer_profile, driver, driver_statistics

pytestmark = pytest.mark.service


@pytest.fixture
def core(start_core: StartCore, tmp_path: Path) -> CoreServer:
    return start_core(tmp_path / "core", registry="sqlite:///registry.db")


def client_of(url: str, tmp_path: Path, **settings: object) -> pv.Client:
    return pv.Client(settings=pv.Settings(registry=url, base_dir=tmp_path, **settings))  # type: ignore[arg-type]


def test_health_ready_metrics_openapi(core: CoreServer) -> None:
    assert core.request("GET", "/v1/health") == (200, {"status": "ok", "version": pv.__version__})
    assert core.request("GET", "/v1/ready") == (200, {"status": "ready"})
    status, document = core.request("GET", "/v1/openapi.json")
    assert status == 200 and document["openapi"] == "3.1.0"
    paths = document["paths"]
    assert isinstance(paths, dict)
    assert {"/v1/projects/{project}/apply", "/v1/jobs/{id}", "/v1/projects/{project}/history"} <= set(paths)
    assert core.request("GET", "/v1/nope")[0] == 404
    status, answer = core.request("PUT", "/v1/projects")
    assert status == 405 and answer["error"]["type"] == "MethodNotAllowed"  # type: ignore[index]
    metrics = core.text("/metrics")
    assert 'provender_core_requests_total{method="GET",route="/v1/ready",status="200"}' in metrics


def test_openapi_document_is_valid_openapi_3(core: CoreServer) -> None:
    from openapi_spec_validator import validate

    validate(core.request("GET", "/v1/openapi.json")[1])


def test_apply_over_http_and_stale_apply_is_409(core: CoreServer) -> None:
    definitions = [codec.to_dict(driver()), codec.to_dict(driver_statistics())]
    status, plan = core.request("POST", "/v1/projects/fraud/plan", {"definitions": definitions})
    assert status == 200 and plan["version"] == 0
    assert [item["action"] for item in plan["items"]] == ["added", "added"]  # type: ignore[attr-defined]
    body = {"definitions": definitions, "expected_version": 0}
    status, applied = core.request("POST", "/v1/projects/fraud/apply", body)
    assert (status, applied["version"]) == (200, 1)
    # someone else changes it; an apply planned against version 1 is refused, naming both versions
    core.request("POST", "/v1/projects/fraud/apply", {"definitions": [codec.to_dict(customer())]})
    stale = {"definitions": [codec.to_dict(driver(description="mine"))], "expected_version": 1}
    status, answer = core.request("POST", "/v1/projects/fraud/apply", stale)
    assert status == 409
    error = answer["error"]
    assert isinstance(error, dict)
    assert (error["code"], error["type"]) == ("ABORTED", "RegistryVersionConflictError")
    assert error["fields"] == {
        "conflicts": [error["fields"]["conflicts"][0]],
        "project": "fraud",
        "expected_version": 1,
        "actual_version": 2,
    }
    assert "plan and apply again" in str(error["message"])
    status, snapshot = core.request("GET", "/v1/projects/fraud/registry")
    assert snapshot["version"] == 2
    assert [codec.from_dict(d) for d in snapshot["entities"]] == [customer(), driver()]  # type: ignore[attr-defined]
    # a reference-breaking delete is 409 too, and changes nothing
    status, answer = core.request("DELETE", "/v1/projects/fraud/entities/driver_id")
    assert status == 409 and answer["error"]["type"] == "RegistryConflictError"  # type: ignore[index]
    status, answer = core.request("GET", "/v1/projects/fraud/feature-tables/nope")
    assert status == 404 and answer["error"]["fields"] == {"name": "nope", "project": "fraud"}  # type: ignore[index]
    status, answer = core.request("POST", "/v1/projects/fraud/apply", {"definitions": [{"kind": "entity"}]})
    assert status == 400 and answer["error"]["type"] == "DefinitionError"  # type: ignore[index]
    status, history = core.request("GET", "/v1/projects/fraud/history?limit=10")
    assert [c["version_after"] for c in history["changes"]] == [2, 1]  # type: ignore[attr-defined]


def test_remote_client_behaves_like_a_local_one(core: CoreServer, tmp_path: Path) -> None:
    local_dir = tmp_path / "local"
    local_dir.mkdir()
    clients = {
        "local": client_of(f"sqlite:///{local_dir}/registry.db", local_dir),
        "remote": pv.Client(core_url=core.url, settings=None, config=_empty_config(tmp_path)),
    }
    outcomes: dict[str, list[object]] = {}
    for name, client in clients.items():
        with closing(client):
            seen: list[object] = []
            seen.append(client.apply([driver(), driver_statistics()]).items)
            seen.append(client.apply([driver(), driver_statistics()]).items)
            seen.append([e.name for e in client.list_entities()])
            seen.append(client.get_feature_table("driver_statistics"))
            seen.append(client.list_projects())
            seen.append(client.registry_version())
            seen.append(client.plan([customer(), customer_profile()]).items)
            for call in (
                lambda c: c.get_feature_table("driver_statistcs"),
                lambda c: c.get_entity("nobody"),
                lambda c: c.delete_entity("driver_id"),
                lambda c: c.apply([driver(value_type=pv.ValueType.STRING)]),
                lambda c: c.delete_feature_table("missing"),
            ):
                seen.append(_failure(call, client))
            client.delete_feature_table("driver_statistics")
            seen.append([t.name for t in client.list_feature_tables()])
            seen.append(client.registry_version())
            seen.append([(r.version_after, r.actor, r.description) for r in client._registry.history(limit=10)])
            outcomes[name] = seen
    assert outcomes["remote"] == outcomes["local"]
    # the errors kept their classes and fields
    not_found = outcomes["remote"][7]
    assert not_found == ("FeatureTableNotFoundError", _not_found_text("driver_statistcs"), {"name": "driver_statistcs"})


def _empty_config(tmp_path: Path) -> Path:
    path = tmp_path / "remote" / "provender.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("project: default\n")
    return path


def _not_found_text(name: str) -> str:
    return f"No feature table {name!r} in project 'default'. Did you mean 'driver_statistics'?"


def _failure(call: Callable[[pv.Client], object], client: pv.Client) -> tuple[str, str, dict[str, object]]:
    try:
        call(client)
    except ProvenderError as exc:
        fields = {k: v for k, v in vars(exc).items() if k in ("name", "field", "conflicts")}
        return type(exc).__name__, str(exc), fields
    raise AssertionError("expected an error")


def test_remote_errors_keep_their_fields(core: CoreServer, tmp_path: Path) -> None:
    with closing(client_of(core.url, tmp_path)) as client:
        client.apply([driver(), driver_statistics()])
        with pytest.raises(FeatureTableNotFoundError) as not_found:
            client.get_feature_table("x")
        assert (not_found.value.name, not_found.value.project) == ("x", "default")
        with pytest.raises(EntityNotFoundError):
            client.get_entity("x")
        with pytest.raises(RegistryConflictError) as conflict:
            client.delete_entity("driver_id")
        assert conflict.value.project == "default" and "driver_statistics" in conflict.value.conflicts[0]


def test_cli_commands_go_through_the_core_service(core: CoreServer, tmp_path: Path) -> None:
    project = tmp_path / "cli"
    project.mkdir()
    (project / "provender.yaml").write_text(yaml.safe_dump({"registry": core.url}))
    (project / "features.py").write_text(
        "import provender as pv\n"
        "driver = pv.Entity(name='driver_id', value_type=pv.ValueType.INT64)\n"
        "stats = pv.FeatureTable(name='trips', entities=['driver_id'],\n"
        "    features=[pv.Feature('count', pv.ValueType.INT64)],\n"
        "    batch_source=pv.FileSource(path='trips.parquet', event_timestamp_column='ts'))\n"
    )

    def run(*args: str) -> str:
        argv = [sys.executable, "-c", "from provender.cli.main import main; main()", *args]
        done = subprocess.run(argv, cwd=project, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("apply", ".")
    assert "trips" in run("tables", "list")
    # a second client (here: in-process) sees what the CLI applied
    with closing(client_of(core.url, tmp_path)) as client:
        assert [t.name for t in client.list_feature_tables()] == ["trips"]


def test_a_core_killed_mid_apply_leaves_the_old_or_the_new_version(core: CoreServer, tmp_path: Path) -> None:
    with closing(client_of(core.url, tmp_path)) as client:
        client.apply([driver()])
    outcomes: list[tuple[object, int]] = []
    for attempt, delay in enumerate((0.0, 0.05, 0.15, 0.4)):
        with closing(client_of(core.url, tmp_path)) as client:
            version = client.registry_version()
        tables = [driver_statistics(name=f"table_{attempt}_{n}") for n in range(300)]
        body = {"definitions": [codec.to_dict(t) for t in tables], "expected_version": version}
        answers: list[object] = []

        def apply_big(body: dict[str, object] = body, answers: list[object] = answers) -> None:
            try:
                answers.append(core.request("POST", "/v1/projects/default/apply", body)[0])
            except OSError as exc:  # the process died under the request
                answers.append(type(exc).__name__)

        thread = threading.Thread(target=apply_big)
        thread.start()
        time.sleep(delay)
        core.kill()
        thread.join()
        core.start()
        with closing(client_of(core.url, tmp_path)) as client:
            after = client.registry_version()
            names = {t.name for t in client.list_feature_tables()}
        added = {t.name for t in tables} & names
        assert (after, len(added)) in ((version, 0), (version + 1, len(tables))), (delay, after, len(added))
        outcomes.append((answers[0], after - version))
    assert any(isinstance(answer, str) for answer, _ in outcomes), outcomes  # at least one kill hit an apply


def test_a_raw_change_is_checked_again_by_the_service(core: CoreServer) -> None:
    definitions = [codec.to_dict(driver()), codec.to_dict(driver_statistics())]
    assert core.request("POST", "/v1/projects/default/apply", {"definitions": definitions})[0] == 200
    breaking = {"expected_version": 1, "change": {"delete_entities": ["driver_id"]}}
    status, answer = core.request("POST", "/v1/projects/default/changes", breaking)
    assert status == 409 and answer["error"]["type"] == "RegistryConflictError"  # type: ignore[index]
    dangling = driver_statistics(name="orphan", entities=["nobody"])
    status, answer = core.request(
        "POST", "/v1/projects/default/changes", {"expected_version": 1, "change": {"put": [codec.to_dict(dangling)]}}
    )
    assert status == 409 and "unregistered entities: nobody" in answer["error"]["message"]  # type: ignore[index]
    status, answer = core.request("POST", "/v1/projects/default/changes", {"change": {}})
    assert status == 400 and "expected_version" in answer["error"]["message"]  # type: ignore[index]
    prune = {
        "expected_version": 1,
        "change": {"delete_feature_tables": ["driver_statistics"], "delete_entities": ["driver_id"]},
    }
    status, snapshot = core.request("POST", "/v1/projects/default/changes", prune)
    assert status == 200 and (snapshot["version"], snapshot["entities"], snapshot["feature_tables"]) == (2, [], [])


def test_an_unchanged_snapshot_is_not_sent_again(core: CoreServer, tmp_path: Path) -> None:
    core.request("POST", "/v1/projects/default/apply", {"definitions": [codec.to_dict(driver())]})
    assert core.request("GET", "/v1/projects/default/registry", headers={"If-None-Match": '"1"'}) == (304, {})
    status, snapshot = core.request("GET", "/v1/projects/default/registry", headers={"If-None-Match": '"0"'})
    assert status == 200 and snapshot["version"] == 1
    with closing(client_of(core.url, tmp_path)) as client:
        first = client._registry.read("default")
        assert client._registry.read("default") is first  # the cached, decoded snapshot (the service said 304)
        client.apply([customer()])
        assert client.registry_version() == 2
        core.request("POST", "/v1/projects/default/apply", {"definitions": [codec.to_dict(customer(description="x"))]})
        assert client.get_entity("customer_id").description == "x"  # a change elsewhere is seen at once
