"""On-demand features at run time: importing the function safely, and the registry's rules.

The four serving paths are in ``tests/e2e/test_on_demand.py``; here an embedded project (SQLite
registry and online store) checks apply-time validation, the version and source checks, and the
references the registry protects.
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

import provender as pv
from provender.cli.main import cli
from provender.errors import OnDemandFeaturesNotFoundError, OnDemandFunctionError, RegistryConflictError
from provender.on_demand import describe_function, load_function, record_function
from provender.registry.store import RegistryChange
from tests.support import on_demand_functions
from tests.support.builders import DRIVER, make_client, write_table

NOW = datetime.now(UTC).replace(microsecond=0)
STATS = pv.FeatureTable(
    name="stats",
    entities=["driver_id"],
    features=[pv.Feature("conv_rate", pv.ValueType.FLOAT), pv.Feature("trips", pv.ValueType.INT64)],
    batch_source=pv.FileSource(path="unused", event_timestamp_column="event_timestamp"),
)


def ratios(function: object = "tests.support.on_demand_functions:ratios", **changes: object) -> pv.OnDemandFeatures:
    values: dict[str, object] = {
        "name": "ratios",
        "inputs": ["stats:trips", "stats:conv_rate"],
        "request_schema": {"amount": pv.ValueType.DOUBLE},
        "features": [
            pv.Feature("per_trip", pv.ValueType.DOUBLE),
            pv.Feature("big", pv.ValueType.BOOL),
            pv.Feature("scaled", pv.ValueType.FLOAT),
        ],
        "function": function,
    }
    return pv.OnDemandFeatures(**(values | changes))  # type: ignore[arg-type]


@pytest.fixture
def client(tmp_path: Path) -> pv.Client:
    client = make_client(tmp_path)
    rows = [{"driver_id": 1, "conv_rate": 0.5, "trips": 2, "event_timestamp": NOW - timedelta(hours=1)}]
    client.apply([DRIVER, write_table(STATS, rows, entities={"driver_id": DRIVER}, root=tmp_path / "data")])
    return client


# -- importing the function


def test_apply_records_the_functions_source_digest_and_version(client: pv.Client) -> None:
    client.apply([ratios(on_demand_functions.ratios)])
    stored = client.get_on_demand_features("ratios")
    assert (stored.function_version, stored.function_digest) == describe_function(on_demand_functions.ratios)
    assert stored.function_digest is not None and len(stored.function_digest) == 16
    assert client.plan([ratios()]).summary().startswith("0 added, 0 changed, 1 unchanged")


@pytest.mark.parametrize(
    ("function", "problem"),
    [
        ("tests.support.no_such_module:ratios", "cannot import module 'tests.support.no_such_module' "),
        ("tests.support.on_demand_functions:nope", "module 'tests.support.on_demand_functions' has no function 'nope'"),
    ],
)
def test_apply_refuses_a_function_it_cannot_import_and_stores_nothing(
    client: pv.Client, function: str, problem: str
) -> None:
    version = client.registry_version()
    with pytest.raises(OnDemandFunctionError, match=problem) as info:
        client.apply([ratios(function)])
    assert (info.value.name, info.value.function) == ("ratios", function)
    assert client.registry_version() == version
    assert client.list_on_demand_features() == []


def test_a_process_refuses_another_source_or_version_than_applied() -> None:
    applied = record_function(ratios())
    assert load_function(applied) is on_demand_functions.ratios
    with pytest.raises(OnDemandFunctionError, match=r"its source differs from the applied one .*apply the definitions"):
        load_function(dataclasses.replace(applied, function_digest="0" * 16))
    with pytest.raises(OnDemandFunctionError, match=re.escape("was applied from acme==9.9, but this process has")):
        load_function(dataclasses.replace(applied, function_version="acme==9.9"))
    with pytest.raises(OnDemandFunctionError, match=re.escape("cannot import module 'tests.support.gone'")):
        load_function(ratios("tests.support.gone:f"))


def test_online_read_with_a_function_gone_names_it(client: pv.Client) -> None:
    client.apply([ratios()])
    client.start_offline_to_online_ingestion("stats", start=NOW - timedelta(days=1), end=NOW).wait()
    assert client.get_online_features(["ratios"], [{"driver_id": 1, "amount": 3.0}]).to_dict()["ratios__per_trip"] == [
        1.5
    ]
    moved = dataclasses.replace(client.get_on_demand_features("ratios"), function="tests.support.moved_away:ratios")
    # As a registry written by another process would hold it (apply here would refuse it).
    client._registry.update(client.project, lambda _: RegistryChange(put=(moved,)))
    client._registry_changed()
    moved_away = re.escape("OnDemandFeatures 'ratios', function 'tests.support.moved_away")
    with pytest.raises(OnDemandFunctionError, match=moved_away):
        client.get_online_features(["ratios"], [{"driver_id": 1, "amount": 3.0}])


# -- the registry's rules


def test_inputs_must_be_registered_features(client: pv.Client) -> None:
    with pytest.raises(RegistryConflictError, match="input 'stat:trips': there is no feature table 'stat'"):
        client.apply([ratios(inputs=["stat:trips"])])
    with pytest.raises(RegistryConflictError, match="input 'stats:trip': feature table 'stats' has no feature 'trip'"):
        client.apply([ratios(inputs=["stats:trip"])])
    with pytest.raises(RegistryConflictError, match="a feature table is called 'stats' too"):
        client.apply([ratios(name="stats")])
    assert client.list_on_demand_features() == []


def test_tables_that_on_demand_features_read_are_protected(client: pv.Client) -> None:
    client.apply([ratios()])
    client.start_offline_to_online_ingestion("stats", start=NOW - timedelta(days=1), end=NOW).wait()
    with pytest.raises(RegistryConflictError, match="feature table 'stats' is read by on-demand features: ratios"):
        client.delete_feature_table("stats")
    assert client.get_online_features(["stats:trips"], [{"driver_id": 1}]).to_dict()["stats__trips"] == [2]
    fewer = dataclasses.replace(client.get_feature_table("stats"), features=[pv.Feature("trips", pv.ValueType.INT64)])
    with pytest.raises(
        RegistryConflictError, match="drops features that on-demand features read: ratios reads 'stats:conv_rate'"
    ):
        client.apply([fewer])
    with pytest.raises(
        RegistryConflictError, match="feature table 'ratios': on-demand features are called 'ratios' too"
    ):
        client.apply([dataclasses.replace(STATS, name="ratios")])
    plan = client.plan([DRIVER], missing="prune")
    assert [(i.kind, i.name, i.action.value) for i in plan.items if i.kind != "entity"] == [
        ("on-demand features", "ratios", "deleted"),
        ("feature table", "stats", "deleted"),
    ]
    client.delete_on_demand_features("ratios")
    with pytest.raises(OnDemandFeaturesNotFoundError, match="No on-demand features 'ratios'"):
        client.delete_on_demand_features("ratios")
    client.delete_feature_table("stats")
    kinds = [item.kind for record in client.registry_history(3) for item in record.items]
    assert kinds == ["feature_table", "on_demand_features", "on_demand_features"]


def test_the_cli_lists_and_describes_them(client: pv.Client, tmp_path: Path) -> None:
    client.apply([ratios(mode="python", function=on_demand_functions.ratios_python)])
    config = ["--config", str(tmp_path / "provender.yaml")]
    listed = CliRunner().invoke(cli, [*config, "tables", "list"])
    assert listed.exit_code == 0, listed.output
    assert "On-demand features:" in listed.output and "tests.support.on_demand_functions:ratios_python" in listed.output
    shown = CliRunner().invoke(cli, [*config, "tables", "describe", "ratios"])
    assert shown.exit_code == 0, shown.output
    for text in (
        "On-demand features: ratios",
        "(mode python)",
        "stats:trips, stats:conv_rate",
        "amount (DOUBLE)",
        "per_trip",
    ):
        assert text in shown.output
    as_json = CliRunner().invoke(cli, [*config, "tables", "describe", "ratios", "--json"])
    spec = json.loads(as_json.output)
    assert (spec["function"], spec["mode"]) == ("tests.support.on_demand_functions:ratios_python", "python")
    assert spec["function_digest"] == client.get_on_demand_features("ratios").function_digest
    client.start_offline_to_online_ingestion("stats", start=NOW - timedelta(days=1), end=NOW).wait()
    got = CliRunner().invoke(
        cli, [*config, "online", "get", "-f", "ratios:per_trip", "-e", "driver_id=1,amount=3", "--json"]
    )
    assert got.exit_code == 0, got.output
    assert json.loads(got.output)["columns"] == {"driver_id": [1], "amount": [3.0], "ratios__per_trip": [1.5]}
    bad = CliRunner().invoke(cli, [*config, "online", "get", "-f", "ratios", "-e", "driver_id=1,amount=lots"])
    assert bad.exit_code != 0 and "request field 'amount': 'lots' is not a valid DOUBLE value" in bad.output
