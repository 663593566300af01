"""The HTTP API, called in-process as uvicorn calls it (the e2e tests run the real server)."""

from __future__ import annotations

import base64
import time

import orjson

import provender as pv
from provender.serving.http import ServingApp
from provender.serving.service import FeatureService
from tests.support.online import SOURCE
from tests.unit.serving.conftest import call, post

Served = tuple[FeatureService, ServingApp]


def test_online_features_answers_columns_in_ref_order(served: Served) -> None:
    _, app = served
    answer = post(
        app, {"features": ["driver_stats:trips", "driver_stats:conv_rate"], "entities": {"driver_id": [1001, 9]}}
    )
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/json"
    assert list(answer.json()) == ["columns"]
    assert answer.json()["columns"] == {
        "driver_id": [1001, 9],
        "driver_stats__trips": [7, None],
        "driver_stats__conv_rate": [0.5, None],
    }


def test_statuses_and_types_only_when_asked(served: Served) -> None:
    _, app = served
    body = post(
        app,
        {
            "features": ["driver_stats"],
            "entities": {"driver_id": [1001, 1002, 9]},
            "include_statuses": True,
            "include_types": True,
        },
    ).json()
    assert body["statuses"] == {
        "driver_stats__conv_rate": ["PRESENT", "PRESENT", "NOT_FOUND"],
        "driver_stats__acc_rate": ["PRESENT", "PRESENT", "NOT_FOUND"],
        "driver_stats__trips": ["PRESENT", "NULL_VALUE", "NOT_FOUND"],
    }
    assert body["types"] == {
        "driver_id": "INT64",
        "driver_stats__conv_rate": "FLOAT",
        "driver_stats__acc_rate": "DOUBLE",
        "driver_stats__trips": "INT64",
    }
    assert body["columns"]["driver_stats__acc_rate"] == ["NaN", 1.0, None]  # type: ignore[index]


def test_bytes_entities_travel_as_base64(served: Served) -> None:
    _, app = served
    key = base64.b64encode(b"\x00\xff").decode()
    body = post(app, {"features": ["tagged:score"], "entities": {"tag": [key]}}).json()
    assert body["columns"] == {"tag": [key], "tagged__score": [2.5]}
    bad = post(app, {"features": ["tagged:score"], "entities": {"tag": ["not base64!"]}})
    assert bad.status == 400
    assert "base64" in bad.json()["error"]["message"]  # type: ignore[index]


def error_of(app: ServingApp, payload: object, *, raw: bytes | None = None) -> tuple[int, dict[str, str]]:
    answer = call(app, "POST", "/v1/online-features", raw) if raw is not None else post(app, payload)
    detail = answer.json()["error"]
    assert isinstance(detail, dict)
    return answer.status, detail


def test_bad_requests_are_400_naming_the_problem(served: Served) -> None:
    _, app = served
    status, error = error_of(app, None, raw=b"{not json")
    assert (status, error["code"], error["type"]) == (400, "INVALID_ARGUMENT", "DataError")
    assert "not valid JSON" in error["message"]

    status, error = error_of(app, {"features": ["driver_stat:trips"], "entities": {"driver_id": [1]}})
    assert (status, error["type"]) == (400, "FeatureTableNotFoundError")
    assert "Did you mean 'driver_stats'" in error["message"]

    status, error = error_of(app, {"features": ["driver_stats:trip"], "entities": {"driver_id": [1]}})
    assert (status, error["type"]) == (400, "FeatureRefError")

    status, error = error_of(app, {"features": ["driver_stats"], "entities": {"driver_id": ["1001"]}})
    assert (status, error["type"]) == (400, "DataError")
    assert "'driver_id'" in error["message"] and "INT64" in error["message"]

    status, error = error_of(app, {"features": ["driver_stats"], "entities": {"driver_id": list(range(11))}})
    assert status == 413 and "limit of 10 (serving.max_entity_rows)" in error["message"]

    status, error = error_of(app, {"features": ["driver_stats"], "entities": {"driver_id": [1], "x": [1, 2]}})
    assert status == 400 and "differ in length" in error["message"]

    status, error = error_of(app, {"features": "driver_stats", "entities": {"driver_id": [1]}})
    assert status == 400 and "'features'" in error["message"]

    status, error = error_of(app, {"features": ["driver_stats"], "entities": {"driver_id": [1]}, "projekt": "x"})
    assert status == 400 and "projekt" in error["message"]


def test_unknown_project_is_404(served: Served) -> None:
    _, app = served
    status, error = error_of(app, {"features": ["driver_stats"], "entities": {"driver_id": [1]}, "project": "nope"})
    assert (status, error["code"], error["type"]) == (404, "NOT_FOUND", "ProjectNotServedError")


def test_routes_health_ready_openapi_and_unknown(served: Served) -> None:
    _, app = served
    assert call(app, "GET", "/v1/health").json() == {"status": "ok", "version": pv.__version__}
    assert call(app, "GET", "/v1/ready").json() == {"status": "ready"}
    document = call(app, "GET", "/v1/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    assert "/v1/online-features" in document["paths"]  # type: ignore[operator]
    assert "OnlineFeaturesRequest" in document["components"]["schemas"]  # type: ignore[index]
    assert call(app, "GET", "/nope").status == 404
    wrong = call(app, "GET", "/v1/online-features")
    assert wrong.status == 405 and wrong.headers["allow"] == "POST"


def test_metrics_count_requests_lookups_and_errors(served: Served) -> None:
    _, app = served
    post(app, {"features": ["driver_stats"], "entities": {"driver_id": [1001, 9, 9]}})
    post(app, {"features": ["nope"], "entities": {"driver_id": [1]}})
    text = call(app, "GET", "/metrics").body.decode()
    assert 'provender_serving_requests_total{endpoint="/v1/online-features",protocol="http",status="200"} 1.0' in text
    assert 'provender_serving_requests_total{endpoint="/v1/online-features",protocol="http",status="400"} 1.0' in text
    assert 'provender_serving_lookups_total{project="default",status="NOT_FOUND",table="driver_stats"} 2.0' in text
    assert 'provender_serving_lookups_total{project="default",status="PRESENT",table="driver_stats"} 1.0' in text
    assert 'provender_serving_request_duration_seconds_bucket{endpoint="/v1/online-features"' in text
    assert 'provender_serving_in_flight_requests{protocol="http"} 0.0' in text


def test_a_newly_applied_table_is_served_without_restart(served: Served) -> None:
    service, app = served
    late = pv.FeatureTable(
        name="late", entities=["driver_id"], features=[pv.Feature("x", pv.ValueType.INT64)], batch_source=SOURCE
    )
    with pv.Client(settings=service.settings) as client:
        client.apply(late)
    deadline = time.monotonic() + 5
    while True:
        answer = post(app, {"features": ["late:x"], "entities": {"driver_id": [1]}})
        if answer.status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert answer.status == 200, answer.body
    assert orjson.loads(answer.body)["columns"]["late__x"] == [None]
