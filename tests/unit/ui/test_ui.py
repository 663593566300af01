"""The UI without a browser: ranking, highlighting, the snippet, routes and auth, over a real SQLite registry."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from types import MappingProxyType

import pytest

import provender as pv
from provender.auth import Grant, Role
from provender.errors import AuthenticationError
from provender.registry.sqlite import SQLiteRegistry
from provender.registry.store import RegistryChange
from provender.ui import pages
from provender.ui.app import UiApp, UiRequest
from provender.ui.html import highlight

DRIVER = pv.Entity(name="driver_id", value_type=pv.ValueType.INT64, description="A driver")
TRIPS = pv.FeatureTable(
    name="trips",
    entities=["driver_id"],
    features=[
        pv.Feature("trips_today", pv.ValueType.INT64, description="Completed trips <today>"),
        pv.Feature("rate", pv.ValueType.DOUBLE, description="Acceptance rate", expect=[pv.expect.between(0, 1)]),
    ],
    batch_source=pv.FileSource(path="/data/trips", event_timestamp_column="ts"),
    max_age=timedelta(hours=6),
    labels={"team": "pricing"},
)
READER = Grant("viewer", MappingProxyType({"fleet": Role.READ}))


@pytest.fixture
def app(tmp_path: Path) -> UiApp:
    store = SQLiteRegistry.from_url(f"sqlite:///{tmp_path / 'r.db'}", base_dir=tmp_path)
    store.update("fleet", lambda _s: RegistryChange(put=(DRIVER, TRIPS)), actor="alice")
    store.update("other", lambda _s: RegistryChange(put=(DRIVER,)), actor="bob")

    def grant_of(authorization: str | None) -> Grant:
        if authorization != "Bearer tok":
            raise AuthenticationError("Invalid bearer token.")
        return READER

    return UiApp(store, grant_of, auth_enabled=True)


def get(app: UiApp, path: str, query: dict[str, str] | None = None, token: str | None = "tok") -> tuple[int, str]:
    cookie = f"provender_token={token}" if token else None
    status, body, _ = app.handle(UiRequest("GET", path, query or {}, None, cookie, {}))
    return status, body.decode()


def test_search_ranks_names_first_and_requires_every_word(app: UiApp) -> None:
    hits = app.data.search(READER, "trips")
    assert [(h.entry.kind, h.entry.name) for h in hits[:2]] == [("table", "trips"), ("feature", "trips_today")]
    assert [h.entry.name for h in app.data.search(READER, "acceptance rate")] == ["rate"]
    assert app.data.search(READER, "acceptance zebra") == []
    assert {h.entry.project for h in app.data.search(READER, "driver")} == {"fleet"}  # "other" is not readable


def test_highlight_escapes_and_marks() -> None:
    assert highlight("Completed <trips>", ["trip"]) == "Completed &lt;<mark>trip</mark>s&gt;"


def test_the_snippet_recreates_the_table() -> None:
    scope: dict[str, object] = {}
    exec(pages.snippet(TRIPS, [DRIVER]), scope)  # the snippet must recreate the definitions
    assert scope["trips"] == TRIPS and scope["driver_id"] == DRIVER


def test_pages_and_errors(app: UiApp) -> None:
    status, body = get(app, "/")
    assert status == 200 and "fleet" in body and "other" not in body
    status, body = get(app, "/projects/fleet/tables/trips")
    assert status == 200 and "Completed trips &lt;today&gt;" in body and "between" in body
    assert "data-write-action" not in body
    status, body = get(app, "/projects/fleet/tables/nope")
    assert status == 404 and 'role="alert"' in body and "nope" in body
    assert get(app, "/projects/other")[0] == 403
    status, body = get(app, "/projects/fleet/tables/trips/statistics")
    assert status == 200 and "No statistics recorded" in body
    status, body = get(app, "/ui/api/search", {"q": "acceptance"})
    assert status == 200 and '"name":"rate"' in body


def test_without_a_token_the_prompt_and_a_login_sets_the_cookie(app: UiApp) -> None:
    status, body = get(app, "/projects/fleet", token=None)
    assert status == 401 and 'name="token"' in body and 'value="/projects/fleet"' in body
    assert get(app, "/ui/api/search", {"q": "x"}, token=None)[0] == 401
    status, body, headers = app.handle(UiRequest("POST", "/login", {}, None, None, {"token": "bad", "next": "/"}))
    assert status == 401 and "Invalid bearer token" in body.decode()
    form = {"token": "tok", "next": "//evil.example"}
    status, _, headers = app.handle(UiRequest("POST", "/login", {}, None, None, form))
    assert status == 303 and (b"location", b"/") in headers
    assert any(k == b"set-cookie" and b"HttpOnly" in v for k, v in headers)
