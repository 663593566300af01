"""The registry's change rules (diff.py), on a snapshot and end to end through the Client."""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

import pytest

from provender import (
    Client,
    Entity,
    EntityNotFoundError,
    Feature,
    FeatureTable,
    FeatureTableNotFoundError,
    NotFoundError,
    RegistryConflictError,
    ValueType,
)
from provender.registry.diff import Action, plan_apply, plan_delete_entity, plan_delete_feature_table
from provender.registry.store import RegistrySnapshot
from tests.unit.registry.definitions import customer, customer_profile, driver, driver_statistics

MakeClient = Callable[..., Client]


def snapshot_of(*definitions: Entity | FeatureTable) -> RegistrySnapshot:
    return RegistrySnapshot(
        project="default",
        version=1,
        entities=MappingProxyType({d.name: d for d in definitions if isinstance(d, Entity)}),
        feature_tables=MappingProxyType({d.name: d for d in definitions if isinstance(d, FeatureTable)}),
    )


def registry_state(client: Client) -> tuple[object, ...]:
    return (client.registry_version(), client.list_entities(), client.list_feature_tables())


# -- planning on a snapshot (pure) --------------------------------------------------------------


def test_plan_on_an_empty_snapshot_adds_everything() -> None:
    plan = plan_apply(RegistrySnapshot(project="default"), [driver_statistics(), driver()])
    assert [(i.kind, i.name, i.action) for i in plan.items] == [
        ("feature table", "driver_statistics", Action.ADDED),
        ("entity", "driver_id", Action.ADDED),
    ]
    change = plan.to_change()
    assert change.put == (driver_statistics(), driver())
    assert change.description == "apply feature table driver_statistics, entity driver_id"


def test_plan_puts_only_added_and_changed_definitions() -> None:
    snapshot = snapshot_of(driver(), driver_statistics())
    plan = plan_apply(snapshot, [driver(), driver_statistics(labels={"owner": "x"}), customer()])
    assert [i.action for i in plan.items] == [Action.UNCHANGED, Action.CHANGED, Action.ADDED]
    assert plan.items[1].detail == "labels"
    assert plan.to_change().put == (driver_statistics(labels={"owner": "x"}), customer())
    assert (plan.count(Action.ADDED), plan.count(Action.CHANGED), plan.count(Action.UNCHANGED)) == (1, 1, 1)
    assert not plan.is_refused


def test_unchanged_plan_is_an_empty_change() -> None:
    plan = plan_apply(snapshot_of(driver(), driver_statistics()), [driver(), driver_statistics()])
    assert plan.to_change().is_empty
    assert plan.to_change().description == ""


def test_refused_plan_raises_on_to_change_naming_every_conflict() -> None:
    plan = plan_apply(
        RegistrySnapshot(project="fraud"),
        [
            driver_statistics(entities=["vehicle_id"]),
            customer_profile(entities=["customer_id", "merchant_id"]),
        ],
    )
    assert plan.is_refused
    assert plan.count(Action.REFUSED) == 2
    with pytest.raises(RegistryConflictError) as excinfo:
        plan.to_change()
    assert excinfo.value.project == "fraud"
    assert len(excinfo.value.conflicts) == 2
    message = str(excinfo.value)
    for name in (
        "driver_statistics",
        "vehicle_id",
        "customer_profile",
        "customer_id, merchant_id",
        "'fraud'",
    ):
        assert name in message


def test_entities_may_come_before_or_after_their_tables_in_one_apply() -> None:
    plan = plan_apply(
        RegistrySnapshot(project="default"), [customer_profile(), driver_statistics(), customer(), driver()]
    )
    assert not plan.is_refused


def test_apply_refuses_non_definitions() -> None:
    with pytest.raises(TypeError, match="takes Entity, FeatureTable and OnDemandFeatures objects, got Feature"):
        plan_apply(RegistrySnapshot(project="default"), [Feature("f", ValueType.INT32)])  # type: ignore[list-item]


# -- the rules, end to end ----------------------------------------------------------------------


def test_entity_value_type_change_is_refused_while_used(client: Client) -> None:
    client.apply([driver(), driver_statistics(), customer()])
    before = registry_state(client)
    with pytest.raises(RegistryConflictError) as excinfo:
        client.apply([driver(value_type=ValueType.STRING)])
    message = str(excinfo.value)
    assert "driver_id" in message
    assert "driver_statistics" in message
    assert "INT64 -> STRING" in message
    assert registry_state(client) == before


def test_entity_value_type_change_is_allowed_when_unused(client: Client) -> None:
    client.apply([driver(), customer(), customer_profile()])
    plan = client.apply([driver(value_type=ValueType.STRING)])
    assert plan.items[0].action is Action.CHANGED
    assert plan.items[0].detail == "value_type"
    assert client.get_entity("driver_id").value_type is ValueType.STRING


def test_entity_value_type_change_works_after_deleting_the_table(client: Client) -> None:
    client.apply([driver(), driver_statistics()])
    client.delete_feature_table("driver_statistics")
    client.apply([driver(value_type=ValueType.STRING)])
    assert client.get_entity("driver_id").value_type is ValueType.STRING


def test_entity_description_change_is_allowed_while_used(client: Client) -> None:
    client.apply([driver(), driver_statistics()])
    client.apply([driver(description="changed")])
    assert client.get_entity("driver_id").description == "changed"


def changed_feature_type() -> FeatureTable:
    return driver_statistics(
        features=[
            Feature("avg_daily_trips", ValueType.INT64),
            Feature("conv_rate", ValueType.FLOAT),
            Feature("acc_rate", ValueType.FLOAT),
        ]
    )


def test_feature_type_change_is_refused_until_the_table_is_deleted(client: Client) -> None:
    client.apply([driver(), driver_statistics()])
    before = registry_state(client)
    with pytest.raises(RegistryConflictError) as excinfo:
        client.apply([changed_feature_type()])
    message = str(excinfo.value)
    assert "driver_statistics" in message
    assert "'avg_daily_trips' value_type INT32 -> INT64" in message
    assert "delete the feature table first" in message
    assert registry_state(client) == before
    client.delete_feature_table("driver_statistics")
    plan = client.apply([changed_feature_type()])
    assert plan.items[0].action is Action.ADDED
    assert client.get_feature_table("driver_statistics") == changed_feature_type()


def test_removing_and_adding_features_is_allowed(client: Client) -> None:
    client.apply([driver(), driver_statistics()])
    reduced = driver_statistics(features=[Feature("conv_rate", ValueType.FLOAT), Feature("trips", ValueType.INT64)])
    assert client.apply([reduced]).items[0].action is Action.CHANGED
    assert client.get_feature_table("driver_statistics").feature_names == ("conv_rate", "trips")


@pytest.mark.parametrize(
    "entities", [["driver_id", "customer_id"], ["customer_id"], ["customer_id", "driver_id"]], ids=str
)
def test_changing_a_tables_entities_is_refused(client: Client, entities: list[str]) -> None:
    client.apply([driver(), customer(), driver_statistics()])
    before = registry_state(client)
    with pytest.raises(RegistryConflictError) as excinfo:
        client.apply([driver_statistics(entities=entities)])
    assert "driver_statistics" in str(excinfo.value)
    assert f"entities ['driver_id'] -> {entities}" in str(excinfo.value)
    assert registry_state(client) == before


def test_delete_entity_is_refused_while_used(client: Client) -> None:
    client.apply([driver(), driver_statistics(), driver_statistics(name="driver_hourly")])
    before = registry_state(client)
    with pytest.raises(RegistryConflictError) as excinfo:
        client.delete_entity("driver_id")
    assert "driver_hourly, driver_statistics" in str(excinfo.value)
    assert registry_state(client) == before
    client.delete_feature_table("driver_statistics")
    with pytest.raises(RegistryConflictError, match="driver_hourly"):
        client.delete_entity("driver_id")
    client.delete_feature_table("driver_hourly")
    client.delete_entity("driver_id")
    assert client.list_entities() == []
    assert client.list_feature_tables() == []
    assert client.registry_version() == 4


@pytest.mark.parametrize(
    ("delete", "error", "kind"),
    [
        (Client.delete_feature_table, FeatureTableNotFoundError, "feature table"),
        (Client.delete_entity, EntityNotFoundError, "entity"),
    ],
)
def test_deleting_unknown_names_is_a_lookup_error(
    client: Client, delete: Callable[[Client, str], None], error: type[NotFoundError], kind: str
) -> None:
    client.apply([driver(), driver_statistics()])
    before = registry_state(client)
    with pytest.raises(error) as excinfo:
        delete(client, "nope")
    assert isinstance(excinfo.value, LookupError)
    assert excinfo.value.name == "nope"
    assert excinfo.value.project == "default"
    assert f"No {kind} 'nope' in project 'default'." in str(excinfo.value)
    assert "provender apply" in str(excinfo.value)
    assert registry_state(client) == before


@pytest.mark.parametrize(
    ("delete", "error", "typo", "suggestion"),
    [
        (Client.delete_feature_table, FeatureTableNotFoundError, "driver_statistic", "driver_statistics"),
        (Client.delete_entity, EntityNotFoundError, "drivr_id", "driver_id"),
        (Client.get_feature_table, FeatureTableNotFoundError, "driver_stats", "driver_statistics"),
        (Client.get_entity, EntityNotFoundError, "driver", "driver_id"),
    ],
)
def test_unknown_names_get_a_did_you_mean_hint(
    client: Client,
    delete: Callable[[Client, str], object],
    error: type[NotFoundError],
    typo: str,
    suggestion: str,
) -> None:
    client.apply([driver(), customer(), driver_statistics(), customer_profile()])
    with pytest.raises(error) as excinfo:
        delete(client, typo)
    assert f"Did you mean {suggestion!r}?" in str(excinfo.value)


def test_delete_plans_on_a_snapshot() -> None:
    snapshot = snapshot_of(driver(), customer(), driver_statistics())
    assert plan_delete_feature_table(snapshot, "driver_statistics").delete_feature_tables == ("driver_statistics",)
    assert plan_delete_entity(snapshot, "customer_id").delete_entities == ("customer_id",)
    with pytest.raises(RegistryConflictError):
        plan_delete_entity(snapshot, "driver_id")


def test_same_definition_twice_in_one_apply_is_fine(client: Client) -> None:
    plan = client.apply([driver(), driver_statistics(), driver(), driver_statistics()])
    assert not plan.is_refused
    assert client.list_entities() == [driver()]
    assert client.list_feature_tables() == [driver_statistics()]
    assert client.registry_version() == 1
    again = client.apply([driver(), driver()])
    assert [i.action for i in again.items] == [Action.UNCHANGED, Action.UNCHANGED]
    assert client.registry_version() == 1


@pytest.mark.parametrize(
    "pair",
    [
        (driver(), driver(description="other")),
        (driver_statistics(), driver_statistics(max_age=None)),
    ],
    ids=["entity", "feature table"],
)
def test_two_different_definitions_with_one_name_are_refused(
    client: Client, pair: tuple[Entity | FeatureTable, Entity | FeatureTable]
) -> None:
    with pytest.raises(RegistryConflictError) as excinfo:
        client.apply([driver(), *pair])
    assert "defined twice, differently, in the same apply" in str(excinfo.value)
    assert registry_state(client) == (0, [], [])


def test_an_entity_and_a_table_may_share_a_name(client: Client) -> None:
    table = customer_profile(name="driver_id", entities=["customer_id"])
    client.apply([driver(), customer(), table])
    assert client.get_feature_table("driver_id") == table
    assert client.get_entity("driver_id") == driver()
