"""One list of feature refs means the same thing on every path (DESIGN.md, "Feature refs").

The same ref lists go through ``get_historical_features``, in-process ``get_online_features``,
and ``get_online_features`` through a real ``provender serve`` process over HTTP and over gRPC.
Every path must give the same result columns, or raise the same error class with the same
message and the same attributes (``ref``, ``name``, ``project`` ...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml

import provender as pv
from tests.e2e.test_serving import ProjectFolder, Server, start_server
from tests.support.builders import write_table
from tests.support.registries import registry_url
from tests.support.services import read_log

DRIVER = pv.Entity(name="driver_id", value_type=pv.ValueType.INT64)
_SOURCE = pv.FileSource(path="unused", event_timestamp_column="event_timestamp")
STATS = pv.FeatureTable(
    name="stats",
    entities=["driver_id"],
    features=[pv.Feature("conv_rate", pv.ValueType.FLOAT), pv.Feature("trips", pv.ValueType.INT64)],
    batch_source=_SOURCE,
)
OTHER = pv.FeatureTable(
    name="other", entities=["driver_id"], features=[pv.Feature("score", pv.ValueType.DOUBLE)], batch_source=_SOURCE
)
NOW = datetime.now(UTC).replace(microsecond=0)

REF_LISTS = {
    "explicit": ["stats:trips", "other:score", "stats:conv_rate"],
    "bare": ["stats", "other"],
    "bare-and-other-table": ["other:score", "stats"],
    "duplicate": ["stats:trips", "stats:trips"],
    "explicit-then-bare": ["stats:conv_rate", "stats"],
    "bare-then-explicit": ["stats", "other", "stats:trips"],
    "bare-twice": ["other", "other"],
    "unknown-table": ["stats:trips", "stat:trips"],
    "unknown-feature": ["stats:trip"],
    "malformed": ["stats:trips:x"],
    "malformed-empty-ref": [""],
    "empty-list": [],
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with two tables, rows offline (Parquet) and online (SQLite, shared with the server)."""
    root = tmp_path_factory.mktemp("parity")
    config = {"registry": registry_url(root), "online": {"store": "sqlite", "path": "online.db"}}
    (root / "provender.yaml").write_text(yaml.safe_dump(config))
    entities = {"driver_id": DRIVER}
    rows = [{"driver_id": 1, "conv_rate": 0.5, "trips": 3, "score": 1.5, "event_timestamp": NOW - timedelta(hours=1)}]
    stats = write_table(STATS, rows, entities=entities, root=root / "data")
    other = write_table(OTHER, rows, entities=entities, root=root / "data")
    with pv.Client(root / "provender.yaml") as client:
        client.apply([DRIVER, stats, other])
        for table in ("stats", "other"):
            client.start_offline_to_online_ingestion(table, start=NOW - timedelta(days=1), end=NOW).wait()
    return root


@pytest.fixture(scope="module")
def server(project: Path) -> Iterator[Server]:
    server = start_server(ProjectFolder(project))
    try:
        yield server
    finally:
        assert server.stop() == 0, read_log(server.log)


Outcome = tuple[object, ...]


def outcome(read: Callable[[], list[str]]) -> Outcome:
    """The feature columns a path returns, or the error it raises: class, message and attributes."""
    try:
        return ("columns", *read())
    except pv.ProvenderError as error:
        fields = {name: value for name, value in vars(error).items() if not name.startswith("_")}
        return ("error", type(error).__name__, str(error), sorted(fields.items()))


@pytest.fixture(scope="module")
def paths(project: Path, server: Server) -> Iterator[dict[str, Callable[[list[str]], list[str]]]]:
    config = project / "provender.yaml"
    local = pv.Client(config)
    http = pv.Client(config, serving_url=server.http_url)
    grpc = pv.Client(config, serving_url=server.grpc_url)
    entity_df = pd.DataFrame({"driver_id": [1, 2], "event_timestamp": [NOW, NOW]})
    rows = [{"driver_id": 1}, {"driver_id": 2}]

    def historical(refs: list[str]) -> list[str]:
        table = local.get_historical_features(refs, entity_df).to_arrow()
        assert table.num_rows == 2
        names: list[str] = table.column_names
        return names[2:]

    def online(client: pv.Client) -> Callable[[list[str]], list[str]]:
        def read(refs: list[str]) -> list[str]:
            response = client.get_online_features(refs, rows)
            assert list(response.to_dict())[:1] == ["driver_id"]
            assert list(response.feature_columns) == list(response.to_dict())[1:]
            return list(response.feature_columns)

        return read

    yield {"historical": historical, "online": online(local), "http": online(http), "grpc": online(grpc)}
    for client in (local, http, grpc):
        client.close()


@pytest.mark.parametrize("refs", list(REF_LISTS.values()), ids=list(REF_LISTS))
def test_every_path_gives_the_same_columns_or_the_same_error(
    paths: dict[str, Callable[[list[str]], list[str]]], refs: list[str]
) -> None:
    outcomes = {name: outcome(lambda read=read: read(list(refs))) for name, read in paths.items()}  # type: ignore[misc]
    expected = outcomes["historical"]
    for name, got in outcomes.items():
        assert got == expected, f"{name} differs from historical for {refs}:\n{got}\n{expected}"


def test_the_shared_outcomes_are_the_documented_ones(paths: dict[str, Callable[[list[str]], list[str]]]) -> None:
    historical = paths["historical"]
    assert outcome(lambda: historical(REF_LISTS["explicit"])) == (
        "columns",
        "stats__trips",
        "other__score",
        "stats__conv_rate",
    )
    assert outcome(lambda: historical(REF_LISTS["bare-and-other-table"]))[1:] == (
        "other__score",
        "stats__conv_rate",
        "stats__trips",
    )
    for key in ("duplicate", "explicit-then-bare", "bare-then-explicit", "bare-twice"):
        with pytest.raises(pv.FeatureRefError, match="requested twice") as info:
            historical(REF_LISTS[key])
        assert info.value.ref in ("stats:trips", "stats:conv_rate", "other:score")
    with pytest.raises(pv.FeatureTableNotFoundError) as not_found:
        historical(REF_LISTS["unknown-table"])
    assert (not_found.value.name, not_found.value.project) == ("stat", "default")
