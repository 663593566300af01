"""The registry watcher survives any malformed stored definition, skips and reports it, and serves the rest.

Each case corrupts one stored definition of the served project (real SQLite registry) in a
different way, while a new table is written beside it (as a newer writer, one that can decode
everything, would); the watcher thread must stay alive, skip the bad definition, serve the others
and the new table, count ``registry_refresh_errors_total``, say so in ``/v1/ready``, and clear
the report once the record is fixed.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import provender as pv
from provender.registry import codec
from provender.runtime import Runtime
from provender.serving.http import create_app
from provender.serving.service import FeatureQuery, FeatureService
from tests.support.online import SOURCE
from tests.unit.serving.conftest import call, project_settings, seed

MALFORMED = {
    "not json": "{not json",
    "a number": "42",
    "spec is a list": '{"format_version": 1, "kind": "feature_table", "spec": []}',
    "name is a number": '{"format_version": 1, "kind": "feature_table", "spec": {"name": 5, "entities": ["tag"], '
    '"features": [{"name": "score", "value_type": "DOUBLE"}]}}',
    "features is a string": '{"format_version": 1, "kind": "feature_table", "spec": {"name": "tagged", '
    '"entities": ["tag"], "features": "score"}}',
    "feature is null": '{"format_version": 1, "kind": "feature_table", "spec": {"name": "tagged", '
    '"entities": ["tag"], "features": [null]}}',
    "unknown kind": '{"format_version": 1, "kind": "gadget", "spec": {}}',
}
NEW = pv.FeatureTable(
    name="fresh",
    entities=["driver_id"],
    features=[pv.Feature("level", pv.ValueType.INT64)],
    batch_source=SOURCE,
)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def refresh_errors(service: FeatureService) -> float:
    text = service.metrics.render()[0].decode()
    found = re.search(r"^provender_serving_registry_refresh_errors_total(?:\{[^}]*\})? (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


@pytest.mark.parametrize("spec", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_definition_is_skipped_reported_and_refreshing_continues(tmp_path: Path, spec: str) -> None:
    settings = project_settings(tmp_path, {"registry_refresh_seconds": 0.05}, sqlite_registry=True)
    seed(settings)
    service = FeatureService(Runtime(settings))
    service.start()
    app = create_app(service)
    query = FeatureQuery(project="default", features=("driver_stats:trips",), entities={"driver_id": [1001]})
    try:
        assert service.read(query).columns["driver_stats__trips"] == [7]
        db = sqlite3.connect(tmp_path / "registry.db")
        (original,) = db.execute("SELECT spec FROM definitions WHERE name = 'tagged'").fetchone()
        with db:
            db.execute("UPDATE definitions SET spec = ? WHERE name = 'tagged'", (spec,))
            db.execute(
                "INSERT INTO definitions (project, kind, name, spec) VALUES ('default', 'feature_table', 'fresh', ?)",
                (codec.to_json(NEW),),
            )
            db.execute("UPDATE projects SET version = version + 1 WHERE name = 'default'")
        wait_for(lambda: "fresh" in service.watcher.snapshot("default").feature_tables, "the new table")
        assert refresh_errors(service) >= 1
        assert "tagged" not in service.watcher.snapshot("default").feature_tables  # skipped
        assert service.watcher._thread is not None and service.watcher._thread.is_alive()
        assert service.read(query).columns["driver_stats__trips"] == [7]  # the rest is served
        fresh = FeatureQuery(project="default", features=("fresh",), entities={"driver_id": [1001]})
        assert service.read(fresh).columns["fresh__level"] == [None]  # and the new table too
        time.sleep(0.2)  # several refreshes later, still reported
        ready = call(app, "GET", "/v1/ready")
        assert ready.status == 200
        detail = ready.json()["detail"]
        assert isinstance(detail, str) and "project 'default'" in detail, detail
        assert "feature_table 'tagged'" in detail and "Error" in detail, detail
        # Fixed: the next refresh reads it again, and the report clears.
        with db:
            db.execute("UPDATE definitions SET spec = ? WHERE name = 'tagged'", (original,))
            db.execute("UPDATE projects SET version = version + 1 WHERE name = 'default'")
        db.close()
        wait_for(lambda: "tagged" in service.watcher.snapshot("default").feature_tables, "the fixed table")
        wait_for(lambda: service.watcher.errors == {}, "the report to clear")
        assert call(app, "GET", "/v1/ready").json() == {"status": "ready"}
        with pv.Client(settings=settings) as client:  # a strict reader sees the whole registry again
            assert {t.name for t in client.list_feature_tables()} >= {"tagged", "fresh", "driver_stats"}
    finally:
        service.close()


def test_the_watcher_survives_a_registry_that_fails_in_any_way(tmp_path: Path) -> None:
    settings = project_settings(tmp_path, {"registry_refresh_seconds": 0.05}, sqlite_registry=True)
    seed(settings)
    service = FeatureService(Runtime(settings))
    service.start()
    try:
        service._registry.close()  # every registry call now raises sqlite3.ProgrammingError
        wait_for(lambda: service.watcher.last_error is not None, "the failure to be recorded")
        assert "ProgrammingError" in (service.watcher.last_error or "")
        before = refresh_errors(service)
        wait_for(lambda: refresh_errors(service) > before, "the watcher to try again")
        assert service.watcher._thread is not None and service.watcher._thread.is_alive()
        assert "registry refresh failed for the registry" in (service.registry_problems() or "")
    finally:
        service._registry = Runtime(settings).open_registry()  # so that close() can close it
        service.close()
