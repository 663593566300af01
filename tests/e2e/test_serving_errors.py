"""Errors keep their class and attributes through ``provender serve``, over HTTP and over gRPC.

One real server process (token auth, one served project, SQLite stores) answers requests that
fail in each way the service can fail; ``Client(serving_url=...)`` must raise the same class with
the same attributes and message over both protocols, as the constructor built them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest
import yaml

import provender as pv
from provender import errors as pe
from provender.config import load_settings
from tests.e2e.test_serving import ProjectFolder, Server, start_server
from tests.support.online import DRIVER, DRIVER_STATS, batch
from tests.support.registries import registry_url
from tests.support.services import read_log

TOKENS = {"reader": ["default"], "elsewhere": ["other"], "everything": ["*"]}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Server]]:
    root = tmp_path_factory.mktemp("errors")
    config = {
        "registry": registry_url(root),
        "online": {"store": "sqlite", "path": "online.db"},
        "serving": {
            "projects": ["default"],
            "max_entity_rows": 5,
            "auth": {"mode": "token", "tokens": TOKENS},
        },
    }
    (root / "provender.yaml").write_text(yaml.safe_dump(config))
    with pv.Client(root / "provender.yaml") as client:
        client.apply([DRIVER, DRIVER_STATS])
        client._online_store.write(DRIVER_STATS, batch(DRIVER_STATS, [{"driver_id": 1, "trips": 2}]))
    server = start_server(ProjectFolder(root))
    try:
        yield root, server
    finally:
        assert server.stop() == 0, read_log(server.log)


Read = Callable[[list[str], Sequence[Mapping[str, object]]], object]


def reader(root: Path, url: str, *, token: str | None, project: str = "default") -> Iterator[Read]:
    overrides = {"serving_url": url, "serving_token": token, "project": project}
    client = pv.Client(settings=load_settings(root / "provender.yaml", environ={}, overrides=overrides))
    try:
        yield client.get_online_features
    finally:
        client.close()


def raised(
    root: Path, server: Server, refs: list[str], rows: Sequence[Mapping[str, object]], **how: object
) -> list[pv.ProvenderError]:
    """The error each protocol raises for the same request: [http, grpc]."""
    found = []
    for url in (server.http_url, server.grpc_url):
        for read in reader(root, url, **how):  # type: ignore[arg-type]
            with pytest.raises(pv.ProvenderError) as info:
                read(refs, rows)
            found.append(info.value)
    return found


def attributes(error: object) -> dict[str, object]:
    return {name: value for name, value in vars(error).items() if not name.startswith("_")}


def same_everywhere(errors: Sequence[object], expected: BaseException) -> None:
    """Each error is ``expected``'s class, with its message and attributes."""
    for error in errors:
        assert type(error) is type(expected)
        assert str(error) == str(expected)
        assert attributes(error) == attributes(expected)


GOOD = ["driver_stats:trips"]
ROW = [{"driver_id": 1}]


def test_a_valid_read_works_over_both_protocols(served: tuple[Path, Server]) -> None:
    root, server = served
    for url in (server.http_url, server.grpc_url):
        for read in reader(root, url, token="reader"):
            assert read(GOOD, ROW).to_dict() == {"driver_id": [1], "driver_stats__trips": [2]}  # type: ignore[attr-defined]


def test_feature_ref_error(served: tuple[Path, Server]) -> None:
    root, server = served
    errors = raised(root, server, ["driver_stats:trip"], ROW, token="reader")
    same_everywhere(
        errors,
        pv.FeatureRefError(
            "driver_stats:trip", "feature table 'driver_stats' has no feature 'trip'. Did you mean 'trips'?"
        ),
    )


def test_feature_table_not_found_error(served: tuple[Path, Server]) -> None:
    root, server = served
    errors = raised(root, server, ["driver_stat:trips"], ROW, token="reader")
    same_everywhere(errors, pv.FeatureTableNotFoundError("driver_stat", project="default", known=["driver_stats"]))


def test_data_error(served: tuple[Path, Server]) -> None:
    root, server = served
    errors = raised(root, server, GOOD, [{"driver_id": i} for i in range(6)], token="reader")
    for error in errors:
        assert type(error) is pe.RequestTooLargeError and "limit of 5 (serving.max_entity_rows)" in str(error)
    assert str(errors[0]) == str(errors[1])


def test_request_too_large_error(served: tuple[Path, Server]) -> None:
    root, server = served
    for read in reader(root, server.http_url, token="reader"):
        with pytest.raises(pe.RequestTooLargeError, match="larger than") as info:
            read(GOOD, [{"driver_id": 1, "note": "x" * (9 * 1024 * 1024)}])
        assert attributes(info.value) == {}


def test_authentication_error(served: tuple[Path, Server]) -> None:
    root, server = served
    for token in (None, "forged"):
        errors = raised(root, server, GOOD, ROW, token=token)
        for error in errors:
            assert type(error) is pe.AuthenticationError
        assert str(errors[0]) == str(errors[1])


def test_permission_denied_error(served: tuple[Path, Server]) -> None:
    root, server = served
    errors = raised(root, server, GOOD, ROW, token="elsewhere")
    expected = errors[0]
    assert isinstance(expected, pe.PermissionDeniedError) and expected.project == "default"
    same_everywhere(errors, pe.PermissionDeniedError(expected.project, needed=expected.needed, held=expected.held))


def test_project_not_served_error(served: tuple[Path, Server]) -> None:
    root, server = served
    errors = raised(root, server, GOOD, ROW, token="everything", project="other")
    same_everywhere(errors, pe.ProjectNotServedError("other", served=["default"]))
    assert errors[0].served == ["default"]  # type: ignore[attr-defined]
