"""Client(serving_url=...): URL schemes, unreachable services, errors rebuilt as their own types."""

from __future__ import annotations

import pytest

import provender as pv
from provender.client import remote


def test_only_http_and_grpc_urls_are_accepted() -> None:
    with pytest.raises(pv.ConfigError, match="serving_url"):
        remote.connect("ftp://serving:21", project="default")
    http = remote.connect("http://127.0.0.1:1", project="default")
    grpc = remote.connect("grpc://127.0.0.1:1", project="default")
    assert isinstance(http, remote.HttpReader) and isinstance(grpc, remote.GrpcReader)
    http.close()
    grpc.close()


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_an_unreachable_service_is_a_retryable_backend_error(scheme: str) -> None:
    reader = remote.connect(f"{scheme}://127.0.0.1:1", project="default")  # nothing listens on port 1
    try:
        with pytest.raises(pv.BackendError) as excinfo:
            reader.read(["t:f"], [{"driver_id": 1}])
        assert excinfo.value.retryable
    finally:
        reader.close()


def test_entity_rows_must_be_a_list_of_mappings() -> None:
    reader = remote.connect("http://127.0.0.1:1", project="default")
    try:
        with pytest.raises(pv.DataError, match="list of mappings"):
            reader.read(["t:f"], {"driver_id": 1})  # type: ignore[arg-type]
        with pytest.raises(pv.FeatureRefError):
            reader.read("t:f", [{"driver_id": 1}])
    finally:
        reader.close()
