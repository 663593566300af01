"""The UI without a browser: ranking, highlighting, the snippet, routes and auth, over a real SQLite registry."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import pytest

import provender as pv
from provender.auth import ALL_PROJECTS, Grant, Role
from provender.errors import AuthenticationError
from provender.online.memory import MemoryStore
from provender.online.sqlite import SQLiteStore
from provender.online.store import TableFreshness
from provender.registry.jobs import JobKind, JobRecord, JobStatus
from provender.registry.sqlite import SQLiteRegistry
from provender.registry.store import RegistryChange
from provender.ui import code, pages
from provender.ui.app import UiApp, UiRequest
from provender.ui.data import OnlineFreshness
from provender.ui.html import highlight
from provender.ui.statistics import feature_card, histogram_chart, top_values_chart
from tests.support.online import batch

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
RATIOS = pv.OnDemandFeatures(
    name="trip_ratios",
    inputs=["trips:rate"],
    request_schema={"amount": pv.ValueType.DOUBLE},
    features=[pv.Feature("scaled", pv.ValueType.DOUBLE, description="Rate doubled for zebras")],
    function="tests.support.on_demand_functions:ratios",
    labels={"team": "pricing"},
)
READER = Grant("viewer", MappingProxyType({"fleet": Role.READ}))


@pytest.fixture
def app(tmp_path: Path) -> UiApp:
    store = SQLiteRegistry.from_url(f"sqlite:///{tmp_path / 'r.db'}", base_dir=tmp_path)
    store.update("fleet", lambda _s: RegistryChange(put=(DRIVER, TRIPS, RATIOS)), actor="alice")
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
    exec(code.table_snippet(TRIPS, [DRIVER]), scope)  # the snippet must recreate the definitions
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
    status, raw, headers = app.handle(UiRequest("POST", "/login", {}, None, None, {"token": "bad", "next": "/"}))
    assert status == 401 and "Invalid bearer token" in raw.decode()
    form = {"token": "tok", "next": "//evil.example"}
    status, _, headers = app.handle(UiRequest("POST", "/login", {}, None, None, form))
    assert status == 303 and (b"location", b"/") in headers
    assert any(k == b"set-cookie" and b"HttpOnly" in v for k, v in headers)


def test_histogram_axes_label_values_and_counts_and_the_bins_read_as_a_table() -> None:
    html = histogram_chart("rate", [0.0, 0.25, 0.5, 0.75, 1.0], [3, 0, 12, 5])
    x_ticks = re.findall(r'class="tick x-tick"[^>]*>([^<]*)<', html)
    y_ticks = re.findall(r'class="tick y-tick"[^>]*>([^<]*)<', html)
    assert x_ticks == ["0", "0.25", "0.5", "0.75", "1"] and y_ticks == ["0", "6", "12"]
    assert ">rate (value)</text>" in html and ">count</text>" in html
    assert 'aria-label="Histogram of rate: 4 bins of values from 0 to 1 on the x axis, counts from 0 to 12' in html
    assert "<td>0.75 to 1]</td><td>5</td>" in html and "<td>0 to 0.25)</td><td>3</td>" in html
    assert html.count('<rect class="bar"') == 4
    # One bin, all zero counts, many bins, and mismatched lengths (a damaged record) still draw or say nothing.
    assert "1 bins" in histogram_chart("x", [5.0, 5.0], [7]) and 'y-tick" x="50" y="16.0" text-anchor="end">7<' in (
        histogram_chart("x", [5.0, 5.0], [7])
    )
    assert "counts from 0 to 0" in histogram_chart("x", [0.0, 1.0, 2.0], [0, 0])
    assert len(re.findall("x-tick", histogram_chart("x", [float(i) for i in range(101)], [1] * 100))) == 5
    assert histogram_chart("x", [0.0, 1.0], [1, 2]) == "" and histogram_chart("x", [], []) == ""


def test_top_values_are_a_table_with_a_bar_per_count() -> None:
    html = top_values_chart("tag", [("winner", 20), ("<b>", 5)])
    assert "<caption>Most frequent values of tag</caption>" in html and "<code>&lt;b&gt;</code>" in html
    assert '<rect width="100.0"' in html and '<rect width="25.0"' in html


def record(job_id: str, minutes: int, mean: float) -> JobRecord:
    counts = [1, 1] if mean == 0.5 else [2, 0]
    feature = {"name": "rate", "value_type": "DOUBLE", "kind": "number", "count": 2, "null_count": 0, "mean": mean,
               "min": 0.0, "max": 1.0, "histogram": {"edges": [0.0, 0.5, 1.0], "counts": counts}}  # fmt: skip
    stats = {"table": "trips", "start": "2026-01-01T00:00:00+00:00", "end": "2026-01-02T00:00:00+00:00", "rows": 2,
             "features": [feature]}  # fmt: skip
    created = datetime(2026, 1, 2, tzinfo=UTC) + timedelta(minutes=minutes)
    return JobRecord(id=job_id, kind=JobKind.OFFLINE_TO_ONLINE, project="fleet", table="trips",
                     status=JobStatus.SUCCEEDED, created_at=created, statistics=stats)  # fmt: skip


def test_drift_between_a_chosen_baseline_and_a_chosen_current_job(app: UiApp) -> None:
    snapshot = app.data.snapshot("fleet")
    jobs = [record("job-c", 2, 0.5), record("job-b", 1, 0.25), record("job-a", 0, 0.5)]  # newest first
    _, body, _ = pages.statistics(snapshot, "trips", jobs)
    assert "Recorded by job <a" in body and "job-c</a>" in body and 'id="drift"' not in body
    assert '<option value="job-b" selected>' in body.split('id="against"')[1].split("</select>")[0]
    _, body, _ = pages.statistics(snapshot, "trips", jobs, current="job-b", against="job-c")
    assert "Drift of job-b against job-c" in body and "(the baseline is the newer job)" in body
    assert "<dt>mean</dt><dd>0.25</dd>" in body and "drifted" in body
    _, body, _ = pages.statistics(snapshot, "trips", jobs, current="job-c", against="job-a")
    assert "Drift of job-c against job-a" in body and "drifted" not in body  # the same distribution
    _, body, _ = pages.statistics(snapshot, "trips", jobs, current="job-a", against="job-a")
    assert "choose two different jobs" in body and 'id="drift"' not in body
    _, body, _ = pages.statistics(snapshot, "trips", jobs, current="job-zz", against="job-yy")
    assert "No job &#x27;job-zz&#x27;" in body and "No job &#x27;job-yy&#x27;" in body and "job-c</a>" in body
    many = [record(f"job-{n:03d}", -n, 0.5) for n in range(250)]  # newest first
    _, body, _ = pages.statistics(snapshot, "trips", many, current="job-249")
    assert body.count('<option value="job-') == 2 * 200 and "among the 200 newest" in body
    _, body, _ = pages.statistics(snapshot, "trips", jobs[:1])
    assert "no other job with statistics" in body


def test_freshness_flags_an_online_value_older_than_max_age(app: UiApp) -> None:
    snapshot = app.data.snapshot("fleet")
    now = datetime.now(UTC)
    stale = OnlineFreshness(tables={"trips": TableFreshness(now - timedelta(hours=7), now - timedelta(minutes=1))})
    _, body, _ = pages.freshness(snapshot, [], stale, can_write=False, table=None)
    assert "older than max_age (6.0 h)" in body and "7.0 h ago" in body and "1 min ago" in body
    fresh = OnlineFreshness(tables={"trips": TableFreshness(now - timedelta(hours=5), now)})
    assert "older than max_age" not in pages.freshness(snapshot, [], fresh, can_write=False, table=None)[1]
    _, body, _ = pages.freshness(snapshot, [], OnlineFreshness(), can_write=False, table=None)
    assert "none online" in body
    _, body, _ = pages.freshness(snapshot, [], OnlineFreshness(problem="down"), can_write=False, table=None)
    assert "Online values: down." in body and "unknown" in body


def test_pages_send_a_content_security_policy(app: UiApp) -> None:
    _, _, headers = app.handle(UiRequest("GET", "/", {}, None, "provender_token=tok", {}))
    policy = dict(headers)[b"content-security-policy"].decode()
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert app.data.online_freshness("fleet", ["trips"]).problem == "no online store is configured for this UI"


def test_the_snippet_recreates_every_kind_of_definition_field() -> None:
    schema = '{"type": "record", "name": "trip", "fields": [{"name": "driver_id", "type": "long"}]}'
    table = pv.FeatureTable(
        name="everything",
        entities=["driver_id", "city"],
        features=[
            pv.Feature("trips", pv.ValueType.INT64, description="it's \"quoted\"", expect=[pv.expect.not_null()]),
            pv.Feature("rate", pv.ValueType.DOUBLE, expect=[pv.expect.between(0, 1), pv.expect.max_null_fraction(0.1)]),
            pv.Feature("tag", pv.ValueType.STRING, expect=[pv.expect.one_of(["a", "b"]), pv.expect.matches(r"^\w+$")]),
            pv.Feature("stamps", pv.ValueType.UNIX_TIMESTAMP_LIST),
            pv.Feature("trips_1h", pv.ValueType.INT64),
        ],
        batch_source=pv.DeltaSource(path="s3://bucket/trips", event_timestamp_column="ts", version=3,
                                    field_mapping={"raw_rate": "rate"}),
        stream_source=pv.KafkaSource(bootstrap_servers="broker:9092", topic="trips", event_timestamp_column="ts",
                                     message_format=pv.AvroFormat(schema_json=schema), created_timestamp_column="c"),
        max_age=timedelta(hours=1, seconds=0.5),
        labels={"team": "pricing", "tier": "1"},
        expect=[pv.expect.row_count_between(1, 10_000)],
        validation_policy="skip",
        aggregations=[pv.Aggregation(column="trips", function="sum", window=timedelta(hours=1), name="trips_1h")],
    )  # fmt: skip
    city = pv.Entity(name="city", value_type=pv.ValueType.STRING, labels={"geo": "yes"})
    scope: dict[str, object] = {}
    exec(code.table_snippet(table, [DRIVER, city]), scope)
    assert scope["everything"] == table and scope["city"] == city and scope["driver_id"] == DRIVER
    csv = pv.FileSource(path="/d", event_timestamp_column="ts", file_format=pv.CsvFormat(), date_partition_column="d")
    other = pv.FeatureTable(name="csv_table", entities=["driver_id"], features=[pv.Feature("x", pv.ValueType.BYTES)],
                            batch_source=csv, stream_source=pv.KafkaSource(bootstrap_servers="b:1", topic="t",
                            event_timestamp_column="ts", message_format=pv.JsonFormat()))  # fmt: skip
    exec(code.table_snippet(other, [DRIVER]), scope)
    assert scope["csv_table"] == other


def test_the_reading_snippet_uses_example_keys_of_the_entity_types_and_compiles() -> None:
    city = pv.Entity(name="city", value_type=pv.ValueType.STRING)
    wide = pv.FeatureTable(name="wide", entities=["driver_id", "city"], batch_source=TRIPS.batch_source,
                           features=[pv.Feature(f"f{i}", pv.ValueType.INT64) for i in range(6)])  # fmt: skip
    text = code.read_table("fleet", wide, [DRIVER, city])
    compile(text, "<reading>", "exec")  # valid Python as shown
    assert "refs = ['wide']" in text and "[{'driver_id': 1001, 'city': '1001'}]" in text
    assert '"entities": {"driver_id": [1001], "city": ["1001"]}' in text and '"features": ["wide"]' in text
    assert "refs = ['trips:trips_today', 'trips:rate']" in code.read_table("fleet", TRIPS, [DRIVER])


def test_on_demand_features_are_listed_searched_shown_and_their_code_recreates_them(app: UiApp) -> None:
    status, body = get(app, "/")
    assert status == 200 and "on-demand" in body
    status, body = get(app, "/projects/fleet")
    assert status == 200 and 'href="/projects/fleet/on-demand/trip_ratios"' in body and "trips:rate" in body
    [hit] = app.data.search(READER, "zebras")
    assert (hit.entry.kind, hit.entry.name, pages.hit_json(hit)["url"]) == (
        "on-demand feature",
        "scaled",
        "/projects/fleet/on-demand/trip_ratios#feature-scaled",
    )
    assert pages.hit_json(app.data.search(READER, "trip_ratios")[0])["url"] == "/projects/fleet/on-demand/trip_ratios"
    status, body = get(app, "/projects/fleet/on-demand/trip_ratios")
    assert status == 200 and "<code>amount</code> (DOUBLE)" in body and "Rate doubled for zebras" in body
    scope: dict[str, object] = {}
    exec(code.on_demand_snippet(RATIOS), scope)
    assert scope["trip_ratios"] == RATIOS
    reading = code.read_on_demand("fleet", RATIOS, app.data.snapshot("fleet"))
    compile(reading, "<reading>", "exec")
    assert "[{'driver_id': 1001, 'amount': 1.5}]" in reading and "refs = ['trip_ratios:scaled']" in reading
    status, body = get(app, "/projects/fleet/on-demand/nope")
    assert status == 404 and "trip_ratios" in body


def test_a_job_page_shows_its_validation_and_links_its_statistics(app: UiApp) -> None:
    validation = {"table": "trips", "policy": "skip", "rows_checked": 1200, "rows_skipped": 3, "passed": False,
                  "violations": [{"expectation": "between [0, 1]", "feature": "rate", "count": 3,
                                  "examples": [{"driver_id": 7, "rate": 1.5}]}]}  # fmt: skip
    job = dataclasses.replace(record("job-v", 0, 0.5), validation=validation)
    app.data.store.put_job(job)
    status, body = get(app, "/projects/fleet/jobs/job-v")
    assert status == 200 and "1,200 rows checked, 3 skipped (policy <code>skip</code>)" in body
    assert "rate: <code>between [0, 1]</code> violated by 3 rows: e.g. <code>{&#x27;driver_id&#x27;: 7" in body
    assert 'href="/projects/fleet/tables/trips/statistics?current=job-v"' in body
    status, body = get(app, "/projects/fleet/tables/trips/statistics", {"current": "job-v"})
    assert status == 200 and "job-v</a>" in body
    passed = dataclasses.replace(job, id="job-p", validation={**validation, "violations": [], "passed": True},
                                 statistics=None)  # fmt: skip
    app.data.store.put_job(passed)
    status, body = get(app, "/projects/fleet/jobs/job-p")
    assert "passed</span>: 1,200 rows checked" in body and "none recorded" in body


def test_statistics_show_the_quantiles() -> None:
    feature = {"name": "rate", "count": 2, "quantiles": [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]}
    html = feature_card(feature)
    assert "<dt>quantiles</dt><dd>p1 0 · p5 0.1 · p25 0.25 · p50 0.5 · p75 0.75 · p95 0.9 · p99 1</dd>" in html


def test_search_spans_every_readable_project_and_an_authorization_header_works(app: UiApp) -> None:
    everyone = Grant("admin", MappingProxyType({ALL_PROJECTS: Role.READ}))
    hits = app.data.search(everyone, "driver")
    assert {(h.entry.project, h.entry.kind) for h in hits} >= {("fleet", "entity"), ("other", "entity")}
    assert (
        pages.hit_json(next(h for h in hits if h.entry.project == "other"))["url"] == "/projects/other#entity-driver_id"
    )
    status, body, _ = app.handle(UiRequest("GET", "/projects/fleet", {}, "Bearer tok", None, {}))
    assert status == 200 and "Signed in as <strong>viewer</strong>" in body.decode()
    status, _, _ = app.handle(UiRequest("GET", "/projects/fleet", {}, "Bearer nope", None, {}))
    assert status == 401


def test_freshness_comes_from_a_shared_online_store_and_a_private_one_is_explained(tmp_path: Path) -> None:
    store = SQLiteRegistry.from_url(f"sqlite:///{tmp_path / 'r.db'}", base_dir=tmp_path)
    store.update("fleet", lambda _s: RegistryChange(put=(DRIVER, TRIPS)), actor="alice")
    online = SQLiteStore(tmp_path / "online.db", project="fleet")
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    online.write(
        TRIPS, batch(TRIPS, [{"driver_id": 1, "rate": 0.5, "event_timestamp": when}], entities={"driver_id": DRIVER})
    )
    opened: list[str] = []

    def open_online(project: str) -> SQLiteStore:
        opened.append(project)
        return SQLiteStore(tmp_path / "online.db", project=project)

    app = UiApp(store, lambda _a: READER, auth_enabled=False, open_online=open_online)
    for _ in range(2):
        status, body, _ = app.handle(UiRequest("GET", "/projects/fleet/jobs", {}, None, None, {}))
        assert status == 200 and f'<time datetime="{when.isoformat()}">' in body.decode()
    assert opened == ["fleet"]  # opened once per project, then reused
    app.close()
    private = UiApp(store, lambda _a: READER, auth_enabled=False, open_online=lambda p: MemoryStore(project=p))
    status, body, _ = private.handle(UiRequest("GET", "/projects/fleet/jobs", {}, None, None, {}))
    assert status == 200 and "lives inside each process" in body.decode()
    online.close()
    store.close()


def test_lineage_draws_on_demand_views_from_their_inputs_and_says_when_it_cuts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    request_only = pv.OnDemandFeatures(
        name="amount_cents",
        inputs=[],
        request_schema={"amount": pv.ValueType.DOUBLE},
        features=[pv.Feature("cents", pv.ValueType.DOUBLE)],
        function="tests.support.on_demand_functions:ratios",
    )
    store = SQLiteRegistry(tmp_path / "r.db")
    try:
        store.update("fleet", lambda _s: RegistryChange(put=(DRIVER, TRIPS, RATIOS, request_only)))
        snapshot = store.read("fleet")
    finally:
        store.close()
    _, body, _ = pages.lineage(snapshot, [])
    items = re.findall(r"<li>(.*?)</li>", body.split('class="lineage-list"')[1])
    assert [re.sub("<[^>]+>", "", item) for item in items] == [
        "file: /data/trips → trips (no job yet)",
        "request (amount) → amount_cents (on demand)",
        "feature table trips (rate), request (amount) → trip_ratios (on demand)",
    ]
    assert body.count('class="on-demand"') == 2 and '<a href="/projects/fleet/on-demand/trip_ratios">' in body
    assert "Showing the first" not in body
    monkeypatch.setattr(pages, "MAX_LINEAGE_TABLES", 1)
    _, body, _ = pages.lineage(snapshot, [])
    assert body.count('class="on-demand"') == 1 and "Showing the first 1 of 2 on-demand views (by name)." in body
    only_views = dataclasses.replace(snapshot, feature_tables=MappingProxyType({}))
    assert "Nothing to draw yet" not in pages.lineage(only_views, [])[1]


def test_no_online_store_yet_is_said_and_asked_again_on_the_next_page(tmp_path: Path) -> None:
    store = SQLiteRegistry(tmp_path / "r.db")
    store.update("fleet", lambda _s: RegistryChange(put=(DRIVER, TRIPS)))
    opened: list[SQLiteStore] = []

    def open_online(project: str) -> SQLiteStore | None:
        path = tmp_path / "online.db"
        if not path.exists():
            return None
        opened.append(SQLiteStore(path, project=project))
        return opened[-1]

    app = UiApp(store, lambda _a: READER, auth_enabled=False, open_online=open_online)
    try:
        assert app.data.online_freshness("fleet", ["trips"]).problem.startswith("no online store data yet")
        writer = SQLiteStore(tmp_path / "online.db", project="fleet")
        writer.write(TRIPS, batch(TRIPS, [{"driver_id": 1, "trips_today": 3}]))
        writer.close()
        assert set(app.data.online_freshness("fleet", ["trips"]).tables) == {"trips"}  # not cached as missing
        app.data.online_freshness("fleet", ["trips"])
        assert len(opened) == 1  # opened once it existed, then kept
    finally:
        app.close()
        store.close()
