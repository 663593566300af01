"""``auth.open_endpoints``: operational endpoints open by default, protected when it is false."""

from __future__ import annotations

from pathlib import Path

import pytest

from provender.runtime import Runtime
from provender.serving.http import create_app
from provender.serving.service import FeatureService
from tests.unit.serving.conftest import call, project_settings, seed

PROTECTABLE = ["/metrics", "/v1/ready", "/v1/openapi.json"]


@pytest.mark.parametrize("open_endpoints", [True, False])
def test_operational_endpoints(tmp_path: Path, open_endpoints: bool) -> None:
    auth = {"mode": "token", "tokens": {"t0k3n": ["other"]}, "open_endpoints": open_endpoints}
    settings = project_settings(tmp_path, {"auth": auth})
    seed(settings)
    service = FeatureService(Runtime(settings))
    service.start()
    try:
        app = create_app(service)
        assert call(app, "GET", "/v1/health").status == 200  # liveness: always open
        for path in PROTECTABLE:
            for headers in ({}, {"authorization": "Bearer forged"}):
                answer = call(app, "GET", path, headers=headers)
                assert answer.status == (200 if open_endpoints else 401), (path, answer.body)
                if not open_endpoints:
                    assert b"forged" not in answer.body
            # Any valid token opens them (it need not grant the default project).
            assert call(app, "GET", path, headers={"authorization": "Bearer t0k3n"}).status == 200
    finally:
        service.close()
