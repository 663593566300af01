"""The hand-written request parser agrees with the pydantic model the OpenAPI document shows."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from provender.config import ServingSection
from provender.errors import DataError, RequestTooLargeError
from provender.serving.limits import RequestLimits
from provender.serving.schemas import OnlineFeaturesRequest, parse_online_request

LIMITS = RequestLimits.of(ServingSection(max_entity_rows=100))
TWO_ROWS = RequestLimits.of(ServingSection(max_entity_rows=2, max_feature_refs=3, max_entity_columns=2))
GOOD = [
    {"features": ["t:f"], "entities": {"driver_id": [1, 2]}},
    {"features": ["t"], "entities": {"a": ["x"], "b": [1]}, "project": "p", "include_statuses": True},
    {"features": ["t:f"], "entities": {}, "include_types": False},
    {"features": [], "entities": {"a": [1]}},  # parses; the request model refuses it (FeatureRefError)
]
BAD = [
    [],
    {"entities": {"a": [1]}},
    {"features": ["t"], "entities": [1]},
    {"features": ["t"], "entities": {"a": 1}},
    {"features": [1], "entities": {"a": [1]}},
    {"features": ["t"], "entities": {"a": [1]}, "include_statuses": "yes"},
    {"features": ["t"], "entities": {"a": [1]}, "project": 3},
    {"features": ["t"], "entities": {"a": [1]}, "extra": 1},
]


@pytest.mark.parametrize("body", GOOD)
def test_valid_bodies_parse_like_the_model(body: dict[str, object]) -> None:
    parsed = parse_online_request(orjson.dumps(body), limits=LIMITS)
    model = OnlineFeaturesRequest.model_validate(body)
    assert list(parsed.features) == model.features
    assert parsed.entities == model.entities
    assert (parsed.project, parsed.include_statuses, parsed.include_types) == (
        model.project,
        model.include_statuses,
        model.include_types,
    )


@pytest.mark.parametrize("body", BAD)
def test_invalid_bodies_are_refused_by_both(body: object) -> None:
    with pytest.raises(DataError):
        parse_online_request(orjson.dumps(body), limits=LIMITS)
    with pytest.raises(ValidationError):
        OnlineFeaturesRequest.model_validate(body)


def test_limits_lengths_and_json_are_checked() -> None:
    with pytest.raises(DataError, match="limit of 2"):
        parse_online_request(b'{"features": ["t"], "entities": {"a": [1, 2, 3]}}', limits=TWO_ROWS)
    with pytest.raises(DataError, match="differ in length"):
        parse_online_request(b'{"features": ["t"], "entities": {"a": [1], "b": []}}', limits=TWO_ROWS)
    with pytest.raises(DataError, match="not valid JSON"):
        parse_online_request(b'{"features"', limits=TWO_ROWS)


@pytest.mark.parametrize(
    ("body", "setting"),
    [
        ({"features": ["t"] * 4, "entities": {"a": [1]}}, "max_feature_refs"),
        ({"features": [1, 2, 3, 4], "entities": {"a": [1]}}, "max_feature_refs"),  # counted before typed
        ({"features": ["t"], "entities": {"a": [1], "b": [1], "c": [1]}}, "max_entity_columns"),
        ({"features": ["t"], "entities": {"a": [1], "b": [[1]] * 3}}, "max_entity_rows"),  # any column
    ],
)
def test_counts_are_checked_before_the_elements(body: dict[str, object], setting: str) -> None:
    with pytest.raises(RequestTooLargeError, match=rf"serving\.{setting}"):
        parse_online_request(orjson.dumps(body), limits=TWO_ROWS)
