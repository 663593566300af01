"""On-demand features give the same values on the four paths (DESIGN.md, "Transformations").

One project (a SQLite registry and online store shared with a real ``provender serve`` process)
has a feature table and on-demand features over it and a request field: in pandas mode, in
python mode, and functions that fail in each documented way. The same refs and request data go
through ``get_historical_features`` (request data from the entity source's columns), in-process
``get_online_features``, and ``get_online_features`` over HTTP and over gRPC (request data in the
entity rows). Values must be identical; errors must be the same class with the same message.
The server imports the functions from ``tests.support.on_demand_functions`` (on its PYTHONPATH,
as an installed module would be).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml

import provender as pv
from tests.e2e.test_serving import ProjectFolder, Server, start_server
from tests.support import on_demand_functions as functions
from tests.support.builders import write_table
from tests.support.services import read_log

REPO = Path(__file__).resolve().parents[2]
DRIVER = pv.Entity(name="driver_id", value_type=pv.ValueType.INT64)
STATS = pv.FeatureTable(
    name="stats",
    entities=["driver_id"],
    features=[pv.Feature("conv_rate", pv.ValueType.FLOAT), pv.Feature("trips", pv.ValueType.INT64)],
    batch_source=pv.FileSource(path="unused", event_timestamp_column="event_timestamp"),
)
FEATURES = [
    pv.Feature("per_trip", pv.ValueType.DOUBLE),
    pv.Feature("big", pv.ValueType.BOOL),
    pv.Feature("scaled", pv.ValueType.FLOAT),
]
INPUTS = ["stats:trips", "stats:conv_rate"]
REQUEST = {"amount": pv.ValueType.DOUBLE}


def on_demand(
    name: str, function: object, *, mode: str = "pandas", features: list[pv.Feature] | None = None
) -> pv.OnDemandFeatures:
    return pv.OnDemandFeatures(
        name=name,
        inputs=INPUTS,
        request_schema=REQUEST,
        features=features or FEATURES,
        function=function,  # type: ignore[arg-type]
        mode=mode,
    )


PER_TRIP = [pv.Feature("per_trip", pv.ValueType.DOUBLE)]
DEFINITIONS = [
    on_demand("ratios", "tests.support.on_demand_functions:ratios"),
    on_demand("ratios_py", functions.ratios_python, mode="python"),
    on_demand("failing", functions.failing, features=PER_TRIP),
    on_demand("wrong_columns", functions.wrong_columns, features=PER_TRIP),
    on_demand("wrong_type", functions.wrong_type, features=PER_TRIP),
    on_demand("wrong_length", functions.wrong_length, mode="python", features=PER_TRIP),
]
NOW = datetime.now(UTC).replace(microsecond=0)
DRIVERS = [1, 2, 3, 1]  # 3 has no row: its inputs are null
AMOUNTS = [12.0, 5.0, 7.5, -2.0]

REF_LISTS = {
    "bare": ["ratios"],
    "python-mode": ["ratios_py"],
    "mixed-with-inputs": ["stats:trips", "ratios:per_trip", "ratios_py:scaled", "ratios:big"],
    "input-requested-after": ["ratios:scaled", "stats"],
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("on_demand")
    config = {"registry": "sqlite:///registry.db", "online": {"store": "sqlite", "path": "online.db"}}
    (root / "provender.yaml").write_text(yaml.safe_dump(config))
    rows = [
        {"driver_id": 1, "conv_rate": 0.3, "trips": 4, "event_timestamp": NOW - timedelta(hours=1)},
        {"driver_id": 2, "conv_rate": 0.7, "trips": 0, "event_timestamp": NOW - timedelta(hours=1)},
    ]
    stats = write_table(STATS, rows, entities={"driver_id": DRIVER}, root=root / "data")
    with pv.Client(root / "provender.yaml") as client:
        client.apply([DRIVER, stats, *DEFINITIONS])
        client.start_offline_to_online_ingestion("stats", start=NOW - timedelta(days=1), end=NOW).wait()
    return root


@pytest.fixture(scope="module")
def server(project: Path) -> Iterator[Server]:
    server = start_server(ProjectFolder(project), env={"PYTHONPATH": str(REPO)})
    try:
        yield server
    finally:
        assert server.stop() == 0, read_log(server.log)


Read = Callable[[list[str]], dict[str, list[object]]]


@pytest.fixture(scope="module")
def paths(project: Path, server: Server) -> Iterator[dict[str, Read]]:
    config = project / "provender.yaml"
    local = pv.Client(config)
    http = pv.Client(config, serving_url=server.http_url)
    grpc = pv.Client(config, serving_url=server.grpc_url)
    entity_df = pd.DataFrame({"driver_id": DRIVERS, "event_timestamp": [NOW] * len(DRIVERS), "amount": AMOUNTS})
    rows = [{"driver_id": d, "amount": a} for d, a in zip(DRIVERS, AMOUNTS, strict=True)]

    def historical(refs: list[str]) -> dict[str, list[object]]:
        table = local.get_historical_features(refs, entity_df).to_arrow()
        return {name: table.column(name).to_pylist() for name in table.column_names[3:]}

    def online(client: pv.Client) -> Read:
        def read(refs: list[str]) -> dict[str, list[object]]:
            response = client.get_online_features(refs, rows)
            return {name: values for name, values in response.to_dict().items() if name in response.feature_columns}

        return read

    yield {"historical": historical, "online": online(local), "http": online(http), "grpc": online(grpc)}
    for client in (local, http, grpc):
        client.close()


def outcome(read: Callable[[], dict[str, list[object]]]) -> tuple[object, ...]:
    try:
        return ("values", read())
    except pv.ProvenderError as error:
        fields = {name: value for name, value in vars(error).items() if not name.startswith("_")}
        return ("error", type(error).__name__, str(error), sorted(fields.items()))


@pytest.mark.parametrize("refs", list(REF_LISTS.values()), ids=list(REF_LISTS))
def test_the_four_paths_give_identical_values(paths: dict[str, Read], refs: list[str]) -> None:
    outcomes = {name: outcome(functools.partial(read, list(refs))) for name, read in paths.items()}
    expected = outcomes["historical"]
    assert expected[0] == "values", expected
    for name, got in outcomes.items():
        assert got == expected, f"{name} differs from historical for {refs}:\n{got}\n{expected}"


def test_the_values_are_the_functions(paths: dict[str, Read]) -> None:
    values = paths["historical"](["ratios", "ratios_py:per_trip", "stats:trips"])
    assert list(values) == ["ratios__per_trip", "ratios__big", "ratios__scaled", "ratios_py__per_trip", "stats__trips"]
    assert values["ratios__per_trip"] == [3.0, math.inf, None, -0.5]  # pandas: x / 0 is inf, NaN is null
    assert values["ratios_py__per_trip"] == [3.0, None, None, -0.5]
    assert values["ratios__big"] == [True, False, False, False]
    assert values["ratios__scaled"] == [pytest.approx(0.6), pytest.approx(1.4), None, pytest.approx(0.6)]
    assert values["stats__trips"] == [4, 0, None, 4]


@pytest.mark.parametrize("via", ["in-process", "http", "grpc"])
def test_whole_amounts_sent_as_ints_are_doubles_like_offline(
    project: Path, server: Server, paths: dict[str, Read], via: str
) -> None:
    url = {"in-process": None, "http": server.http_url, "grpc": server.grpc_url}[via]
    rows = [{"driver_id": 1, "amount": 12}, {"driver_id": 2, "amount": 5}]  # as JSON clients send them
    with pv.Client(project / "provender.yaml", serving_url=url) as client:
        for refs in (["ratios"], ["ratios_py"]):
            got = client.get_online_features(refs, rows).to_dict()
            expected = paths["historical"](refs)
            assert {name: got[name] for name in expected} == {name: values[:2] for name, values in expected.items()}


def test_inputs_not_requested_are_not_returned(paths: dict[str, Read]) -> None:
    for read in paths.values():
        assert list(read(["ratios:big"])) == ["ratios__big"]


@pytest.mark.parametrize(
    ("ref", "problem"),
    [
        ("failing", "raised ValueError: no way (4 rows)"),
        ("wrong_columns", "returned columns ['surprise']; missing ['per_trip'] (declared ['per_trip'])"),
        ("wrong_type", "feature 'per_trip' (DOUBLE): cannot convert its values"),
        ("wrong_length", "feature 'per_trip': returned 5 values for 4 rows"),
    ],
)
def test_a_bad_function_is_the_same_error_on_every_path(paths: dict[str, Read], ref: str, problem: str) -> None:
    outcomes = {name: outcome(functools.partial(read, [ref])) for name, read in paths.items()}
    expected = outcomes["historical"]
    assert expected[:2] == ("error", "OnDemandFunctionError"), expected
    assert f"OnDemandFeatures {ref!r}, function 'tests.support.on_demand_functions:" in str(expected[2])
    assert problem in str(expected[2])
    for name, got in outcomes.items():
        assert got == expected, f"{name} differs from historical:\n{got}\n{expected}"


def test_a_missing_request_field_is_named_on_every_path(project: Path, paths: dict[str, Read], server: Server) -> None:
    with (
        pv.Client(project / "provender.yaml") as local,
        pv.Client(project / "provender.yaml", serving_url=server.grpc_url) as remote,
    ):
        entity_df = pd.DataFrame({"driver_id": [1], "event_timestamp": [NOW]})
        with pytest.raises(pv.DataError, match="no column 'amount', a request field of on-demand features ratios"):
            local.get_historical_features(["ratios"], entity_df)
        with pytest.raises(pv.DataError, match="Column 'amount' of the entity source has type string"):
            local.get_historical_features(["ratios"], entity_df.assign(amount=["x"]))
        for client in (local, remote):
            with pytest.raises(pv.DataError, match="no field 'amount', a request field \\(DOUBLE\\) of on-demand"):
                client.get_online_features(["ratios"], [{"driver_id": 1}])
            with pytest.raises(
                pv.DataError, match="Request field 'amount' of on-demand features 'ratios' is not DOUBLE"
            ):
                client.get_online_features(["ratios"], [{"driver_id": 1, "amount": "lots"}])
