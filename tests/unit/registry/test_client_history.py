"""The client's registry history, expected versions and project archiving (on SQLite)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from provender import Client
from provender.errors import ProjectArchivedError, ProjectNotFoundError, RegistryVersionConflictError
from provender.registry.store import ItemAction
from tests.unit.registry.definitions import customer, customer_profile, driver, driver_statistics

MakeClient = Callable[..., Client]


def test_registry_history_records_every_client_change(client: Client) -> None:
    client.apply([driver(), driver_statistics()])
    client.apply([driver(), driver_statistics(labels={"owner": "x"})])
    client.delete_feature_table("driver_statistics")
    client.delete_entity("driver_id")
    history = client.registry_history()
    assert [(r.version_before, r.version_after, r.actor) for r in history] == [
        (3, 4, "anonymous"),
        (2, 3, "anonymous"),
        (1, 2, "anonymous"),
        (0, 1, "anonymous"),
    ]
    assert history[0].names(ItemAction.DELETED) == ["entity:driver_id"]
    assert history[1].names(ItemAction.DELETED) == ["feature_table:driver_statistics"]
    assert history[2].names(ItemAction.CHANGED) == ["feature_table:driver_statistics"]
    assert history[3].names(ItemAction.ADDED) == ["entity:driver_id", "feature_table:driver_statistics"]
    assert client.registry_history(limit=1) == history[:1]


def test_history_is_per_project_unless_all_projects(make_client: MakeClient) -> None:
    default, fraud = make_client(), make_client("fraud")
    default.apply(driver())
    fraud.apply(customer())
    assert [r.project for r in default.registry_history()] == ["default"]
    assert [r.project for r in fraud.registry_history()] == ["fraud"]
    assert [r.project for r in default.registry_history(all_projects=True)] == ["fraud", "default"]


def test_the_actor_is_recorded(client: Client) -> None:
    client.actor = "alice@example.com"
    client.apply(driver())
    assert client.registry_history()[0].actor == "alice@example.com"


def test_apply_with_a_stale_expected_version_is_refused(make_client: MakeClient) -> None:
    mine, theirs = make_client(), make_client()
    mine.apply(driver())
    planned_at = mine.registry_version()
    theirs.apply(customer())
    with pytest.raises(RegistryVersionConflictError) as excinfo:
        mine.apply([driver(), driver_statistics()], expected_version=planned_at)
    assert (excinfo.value.expected_version, excinfo.value.actual_version) == (1, 2)
    assert mine.list_feature_tables() == []
    mine.apply([driver(), driver_statistics()], expected_version=2)
    assert mine.registry_version() == 3


def test_archive_project(make_client: MakeClient) -> None:
    admin, fraud = make_client(), make_client("fraud")
    fraud.apply([customer(), customer_profile()])
    info = admin.archive_project("fraud")
    assert (info.name, info.version) == ("fraud", 2)
    assert admin.list_projects() == ["default"]
    assert [p.name for p in admin.describe_projects(include_archived=True)] == ["default", "fraud"]
    assert fraud.list_feature_tables() == [customer_profile()]  # still readable
    with pytest.raises(ProjectArchivedError):
        fraud.apply(customer(description="late"))
    with pytest.raises(ProjectArchivedError):
        fraud.delete_entity("customer_id")  # refused before the plan (which would refuse it too)
    with pytest.raises(ProjectNotFoundError):
        admin.archive_project("nothing")
    assert admin.registry_history(all_projects=True)[0].description == "archive project fraud"
