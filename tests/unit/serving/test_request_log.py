"""The request log samples, never blocks, and drops (and counts) lines when its buffer is full."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest

from provender.config import RequestLogSection
from provender.runtime import Runtime
from provender.serving.request_log import MAX_LINE_BYTES, RequestLog
from provender.serving.service import FeatureService
from tests.unit.serving.conftest import post, project_settings, seed


def make_log(tmp_path: Path, **values: object) -> RequestLog:
    settings = RequestLogSection.model_validate({"enabled": True, "path": "requests.jsonl", **values})
    return RequestLog(settings, base_dir=tmp_path, sample=random.Random(7).random)


def test_off_by_default_samples_nothing(tmp_path: Path) -> None:
    log = RequestLog(RequestLogSection(), base_dir=tmp_path)
    assert not any(log.is_sampled() for _ in range(100))


def test_sample_rate_is_the_fraction_logged(tmp_path: Path) -> None:
    assert all(make_log(tmp_path, sample_rate=1.0).is_sampled() for _ in range(100))
    assert not any(make_log(tmp_path, sample_rate=0.0).is_sampled() for _ in range(100))
    log = make_log(tmp_path, sample_rate=0.1)
    sampled = sum(log.is_sampled() for _ in range(10_000))
    assert 800 < sampled < 1200


def test_a_full_buffer_drops_and_counts_instead_of_waiting(tmp_path: Path) -> None:
    dropped: list[int] = []
    settings = RequestLogSection(enabled=True, path="requests.jsonl", buffer_lines=10)
    log = RequestLog(settings, base_dir=tmp_path, on_dropped=dropped.append)
    # The writer thread is not started yet: nothing drains the buffer.
    accepted = [log.submit({"n": n}) for n in range(15)]
    assert accepted == [True] * 10 + [False] * 5
    assert log.dropped == 5 and sum(dropped) == 5
    log.start()
    log.close()
    lines = (tmp_path / "requests.jsonl").read_bytes().splitlines()
    assert [orjson.loads(line)["n"] for line in lines] == list(range(10))
    assert log.written == 10


def test_lines_are_json_with_bytes_as_base64(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    log.start()
    log.submit({"key": b"\x00\xff", "value": 1.5})
    log.close()
    assert orjson.loads((tmp_path / "requests.jsonl").read_bytes()) == {"key": "AP8=", "value": 1.5}


def test_the_service_logs_sampled_requests_and_counts_them(tmp_path: Path) -> None:
    settings = project_settings(
        tmp_path,
        {
            "auth": {"mode": "token", "tokens": {"secret-token-1": ["*"]}},
            "request_log": {"enabled": True, "path": str(tmp_path / "log.jsonl"), "sample_rate": 1.0},
        },
    )
    seed(settings)
    service = FeatureService(Runtime(settings))
    service.start()
    try:
        from provender.serving.http import create_app

        app = create_app(service)
        headers = {"Authorization": "Bearer secret-token-1"}
        assert post(app, {"features": ["driver_stats:trips"], "entities": {"driver_id": [1001]}}, headers).status == 200
        assert post(app, {"features": ["nope"], "entities": {"driver_id": [1001]}}, headers).status == 400
    finally:
        service.close()
    text = (tmp_path / "log.jsonl").read_text()
    assert "secret-token-1" not in text
    first, second = (orjson.loads(line) for line in text.splitlines())
    assert first["status"] == "200" and first["request"]["features"] == ["driver_stats:trips"]
    assert first["response"]["columns"] == {"driver_id": [1001], "driver_stats__trips": [7]}
    assert second["status"] == "400" and "nope" in second["error"]
    assert service.request_log.written == 2


@pytest.mark.parametrize(
    "request_part",
    [
        {"features": ["t:f"] * 40_000, "entities": {"driver_id": [1]}},
        {"features": ["t:f"], "entities": {"note": ["x" * 3_000_000]}},
        {"features": ["t:f"], "entities": {f"c{i}": [i] * 900 for i in range(100)}},
    ],
    ids=["many refs", "one huge value", "many columns and rows"],
)
def test_a_huge_request_is_logged_as_one_short_line(tmp_path: Path, request_part: dict[str, object]) -> None:
    log = make_log(tmp_path)
    log.start()
    log.submit({"status": "413", "request": request_part, "error": "too large"})
    log.submit({"status": "200", "request": {"features": ["t:f"], "entities": {"driver_id": [1]}}})
    log.close()
    lines = (tmp_path / "requests.jsonl").read_bytes().splitlines()
    assert len(lines) == 2 and all(len(line) <= MAX_LINE_BYTES for line in lines)
    huge, small = (orjson.loads(line) for line in lines)
    assert huge["status"] == "413" and huge["error"] == "too large" and "chars]" in huge["request"]
    assert small["request"] == {"features": ["t:f"], "entities": {"driver_id": [1]}}  # small ones untouched
