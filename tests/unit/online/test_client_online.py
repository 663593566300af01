"""``Client.get_online_features`` end to end over the embedded stores (SQLite and memory)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

import provender as pv
from provender.online.sqlite import SQLiteStore
from tests.support.online import CUSTOMER, DRIVER, SOURCE, batch
from tests.support.registries import registry_url

NOW = datetime.now(UTC)
STATS = pv.FeatureTable(
    name="driver_statistics",
    entities=["driver_id"],
    features=[
        pv.Feature("avg_daily_trips", pv.ValueType.INT32),
        pv.Feature("conv_rate", pv.ValueType.FLOAT),
        pv.Feature("acc_rate", pv.ValueType.FLOAT),
    ],
    batch_source=SOURCE,
    max_age=timedelta(days=1),
)
PAIRS = pv.FeatureTable(
    name="driver_customer",
    entities=["driver_id", "customer_id"],
    features=[pv.Feature("trips_together", pv.ValueType.INT64), pv.Feature("tags", pv.ValueType.STRING_LIST)],
    batch_source=SOURCE,
)


def open_client(root: Path, store: str) -> pv.Client:
    config = {"registry": registry_url(root), "online": {"store": store}}
    (root / "provender.yaml").write_text(yaml.safe_dump(config))
    return pv.Client(config=root / "provender.yaml")


@pytest.fixture(autouse=True)
def no_provender_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PROVENDER_"):
            monkeypatch.delenv(name)


@pytest.fixture(params=["sqlite", "memory"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[pv.Client]:
    with open_client(tmp_path, request.param) as client:
        client.apply([DRIVER, CUSTOMER, STATS, PAIRS])
        store = client._online_store
        store.write(
            STATS,
            batch(
                STATS,
                [
                    {
                        "driver_id": 1001,
                        "avg_daily_trips": 10,
                        "conv_rate": 0.5,
                        "acc_rate": 0.75,
                        "event_timestamp": NOW - timedelta(hours=1),
                    },
                    {
                        "driver_id": 1002,
                        "avg_daily_trips": 20,
                        "conv_rate": None,
                        "acc_rate": 0.25,
                        "event_timestamp": NOW - timedelta(hours=2),
                    },
                    {
                        "driver_id": 1003,
                        "avg_daily_trips": 30,
                        "conv_rate": 0.125,
                        "acc_rate": 0.5,
                        "event_timestamp": NOW - timedelta(days=2),
                    },
                ],
            ),
        )
        store.write(
            PAIRS,
            batch(PAIRS, [{"driver_id": 1001, "customer_id": 7, "trips_together": 3, "tags": ["vip", None]}]),
        )
        yield client


def test_the_design_example(client: pv.Client) -> None:
    response = client.get_online_features(
        feature_refs=["driver_statistics:avg_daily_trips", "driver_statistics:conv_rate"],
        entity_rows=[{"driver_id": 1001}, {"driver_id": 1002}],
    )
    assert response.to_dict() == {
        "driver_id": [1001, 1002],
        "driver_statistics__avg_daily_trips": [10, 20],
        "driver_statistics__conv_rate": [0.5, None],
    }
    assert response.statuses() == {
        "driver_statistics__avg_daily_trips": ["PRESENT", "PRESENT"],
        "driver_statistics__conv_rate": ["PRESENT", "NULL_VALUE"],
    }


def test_statuses_cover_missing_and_expired_rows(client: pv.Client) -> None:
    response = client.get_online_features(["driver_statistics:acc_rate"], [{"driver_id": d} for d in (1001, 1003, 9)])
    assert response.to_dict()["driver_statistics__acc_rate"] == [0.75, None, None]
    assert response.statuses()["driver_statistics__acc_rate"] == ["PRESENT", "OUTSIDE_MAX_AGE", "NOT_FOUND"]


def test_several_tables_and_a_composite_key_in_one_call(client: pv.Client) -> None:
    rows = [{"customer_id": 7, "driver_id": 1001}, {"customer_id": 8, "driver_id": 1002}]
    response = client.get_online_features(["driver_customer", "driver_statistics:avg_daily_trips"], rows)
    assert response.to_dict() == {
        "customer_id": [7, 8],
        "driver_id": [1001, 1002],
        "driver_customer__trips_together": [3, None],
        "driver_customer__tags": [["vip", None], None],
        "driver_statistics__avg_daily_trips": [10, 20],
    }


def test_ten_thousand_entity_rows(client: pv.Client) -> None:
    rows = [{"driver_id": 1001 + i % 5} for i in range(10_000)]
    values = client.get_online_features(["driver_statistics:avg_daily_trips"], rows).to_dict()
    assert values["driver_statistics__avg_daily_trips"] == [[10, 20, None, None, None][i % 5] for i in range(10_000)]


def test_errors_name_the_problem(client: pv.Client) -> None:
    with pytest.raises(pv.DataError, match=r"entity_rows\[1\]\['driver_id'\] is 'abc' \(str\), not a valid INT64"):
        client.get_online_features(["driver_statistics"], [{"driver_id": 1001}, {"driver_id": "abc"}])
    with pytest.raises(pv.FeatureTableNotFoundError, match="Did you mean 'driver_statistics'"):
        client.get_online_features(["driver_statistic:conv_rate"], [{"driver_id": 1001}])
    with pytest.raises(pv.FeatureRefError, match="Did you mean 'conv_rate'"):
        client.get_online_features(["driver_statistics:conv_rat"], [{"driver_id": 1001}])
    with pytest.raises(pv.DataError, match=r"entity_rows\[0\] lacks the entity column 'customer_id'"):
        client.get_online_features(["driver_customer"], [{"driver_id": 1001}])


def test_registry_changes_by_the_same_client_are_seen_at_once(client: pv.Client) -> None:
    rows = [{"driver_id": 1003}]
    assert client.get_online_features(["driver_statistics:acc_rate"], rows).to_dict()[
        "driver_statistics__acc_rate"
    ] == [None]
    longer = pv.FeatureTable(
        name=STATS.name,
        entities=STATS.entities,
        features=STATS.features,
        batch_source=SOURCE,
        max_age=timedelta(days=3),
    )
    client.apply(longer)
    assert client.get_online_features(["driver_statistics:acc_rate"], rows).to_dict()[
        "driver_statistics__acc_rate"
    ] == [0.5]


def test_the_store_is_opened_lazily_from_settings_and_closed(tmp_path: Path) -> None:
    client = open_client(tmp_path, "sqlite")
    assert client._online is None
    store = client._online_store
    assert isinstance(store, SQLiteStore)
    assert store.path == tmp_path / ".provender" / "online.db"
    assert store.project == client.project
    client.close()
    assert client._online is None


def test_a_misspelt_store_option_fails_at_start_up_naming_it(tmp_path: Path) -> None:
    (tmp_path / "provender.yaml").write_text(yaml.safe_dump({"online": {"store": "sqlite", "pth": "x.db"}}))
    with pytest.raises(pv.ConfigError, match=r"online\.pth.*Did you mean 'path'"):
        pv.Client(config=tmp_path / "provender.yaml")


def test_projects_read_their_own_rows(tmp_path: Path) -> None:
    with open_client(tmp_path, "sqlite") as first:
        first.apply([DRIVER, STATS])
        first._online_store.write(STATS, batch(STATS, [{"driver_id": 1, "avg_daily_trips": 1, "event_timestamp": NOW}]))
    with pv.Client(config=tmp_path / "provender.yaml", project="other") as other:
        other.apply([DRIVER, STATS])
        values = other.get_online_features(["driver_statistics:avg_daily_trips"], [{"driver_id": 1}]).to_dict()
    assert values["driver_statistics__avg_daily_trips"] == [None]
