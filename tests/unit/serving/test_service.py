"""The service's store breaker and registry watcher."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from provender.errors import BackendError, ProjectNotServedError
from provender.runtime import Runtime
from provender.serving.service import FeatureQuery, FeatureService, StoreBreaker, StoreUnavailableError
from tests.unit.serving.conftest import project_settings, seed


def test_breaker_fails_fast_until_a_ping_succeeds() -> None:
    up = threading.Event()

    def ping() -> None:
        if not up.is_set():
            raise BackendError("down", retryable=True)

    breaker = StoreBreaker(ping, probe_seconds=0.01)
    breaker.check()
    breaker.trip(BackendError("connection refused", retryable=True))
    with pytest.raises(StoreUnavailableError, match="connection refused") as excinfo:
        breaker.check()
    assert excinfo.value.retryable
    up.set()
    deadline = time.monotonic() + 5
    while breaker.is_open and time.monotonic() < deadline:
        time.sleep(0.01)
    breaker.check()
    breaker.close()


def test_projects_outside_serving_projects_are_not_served(tmp_path: Path) -> None:
    settings = project_settings(tmp_path, {"projects": ["default"]})
    seed(settings)
    service = FeatureService(Runtime(settings))
    service.start()
    try:
        query = FeatureQuery(project="fraud", features=("driver_stats",), entities={"driver_id": [1]})
        with pytest.raises(ProjectNotServedError, match="served projects: default"):
            service.read(query)
        result = service.read(
            FeatureQuery(project="default", features=("driver_stats:trips",), entities={"driver_id": [1001]})
        )
        assert result.columns == {"driver_id": [1001], "driver_stats__trips": [7]}
        assert result.statuses is None
    finally:
        service.close()
