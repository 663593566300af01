"""The discovery UI in real Chromium, against a real `provender core` with applied tables and an ingestion job."""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import provender as pv
from provender.online.redis import RedisStore
from provender.online.sqlite import SQLiteStore
from provender.registry import wire
from provender.registry.jobs import JobKind, JobRecord, new_job_id, utc_now
from tests.support.core import CoreServer, launch_core
from tests.support.ingestion import hour, write_driver_rows
from tests.support.old_registries import SQLITE_V2
from tests.support.online import batch
from tests.support.services import HOST, RedisServer, free_port, port_open, wait_serving

pytestmark = pytest.mark.service

END = hour(datetime.now(UTC))
TOKENS = {
    "tok-w": {"subject": "alice", "grants": ["default:write"]},
    "tok-r": {"subject": "viewer", "grants": ["default"]},
}
SERVED_MS = (
    "(() => { const n = performance.getEntriesByType('navigation')[0]; return n.responseEnd - n.requestStart; })()"
)
LOAD_MS = "(() => { const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd - n.startTime; })()"
SHOTS = os.environ.get("PROVENDER_UI_SCREENSHOTS")  # a folder to copy the screenshots into (docs/ui)


def rate_percent(columns: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The on-demand function of RATE_VIEW (python mode): the acceptance rate in percent."""
    return {"rate_pct": [None if r is None else r * 100 for r in columns["driver_stats__rate"]]}


RATE_VIEW = pv.OnDemandFeatures(
    name="rate_view",
    inputs=["driver_stats:rate"],
    features=[pv.Feature("rate_pct", pv.ValueType.DOUBLE, description="The rate in percent")],
    function=rate_percent,  # type: ignore[arg-type]  # a function is accepted and stored as its path
    mode="python",
)


def fare_per_trip(columns: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The on-demand function of FARE_VIEW (python mode): the request's fare over the driver's trips."""
    pairs = zip(columns["fare"], columns["driver_stats__trips"], strict=True)
    return {"fare_per_trip": [None if f is None or not t else f / t for f, t in pairs]}


FARE_VIEW = pv.OnDemandFeatures(
    name="fare_view",
    inputs=["driver_stats:trips"],
    request_schema={"fare": pv.ValueType.DOUBLE},
    features=[pv.Feature("fare_per_trip", pv.ValueType.DOUBLE, description="The fare over the trips")],
    function=fare_per_trip,  # type: ignore[arg-type]
    mode="python",
)
DRIVER = pv.Entity(name="driver_id", value_type=pv.ValueType.INT64, description="A driver of the fleet")


def driver_stats(source: Path) -> pv.FeatureTable:
    return pv.FeatureTable(
        name="driver_stats",
        entities=["driver_id"],
        features=[
            pv.Feature("trips", pv.ValueType.INT64, description="Completed trips in the last hour"),
            pv.Feature(
                "rate",
                pv.ValueType.DOUBLE,
                description="Acceptance rate of ride offers",
                expect=[pv.expect.between(0, 1)],
            ),
            pv.Feature("tag", pv.ValueType.STRING, description="Segment of the driver"),
        ],
        batch_source=pv.FileSource(path=str(source), event_timestamp_column="ts", created_timestamp_column="created"),
        max_age=timedelta(days=2),
        labels={"team": "pricing"},
    )


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CoreServer, str, str, str]]:
    """A core service with token auth, one applied table, a finished ingestion job and a pending one."""
    root = tmp_path_factory.mktemp("ui")
    write_driver_rows(root / "src", drivers=20, hours=3, end=END)
    server = launch_core(root / "core", registry=f"sqlite:///{root / 'registry.db'}",
                         settings={"core": {"auth": {"mode": "token", "tokens": TOKENS}}})  # fmt: skip
    try:
        settings = pv.Settings(registry=server.url, base_dir=root, core_token="tok-w")  # type: ignore[arg-type]
        with closing(pv.Client(settings=settings)) as client:
            table = driver_stats(root / "src")
            client.apply([DRIVER, dataclasses.replace(table, labels={"team": "growth"})])
            client.apply([DRIVER, table, RATE_VIEW, FARE_VIEW])  # a change and back, for the history's diff
            job = client.start_offline_to_online_ingestion(table, start=END - timedelta(days=1), end=END, run_on="core")
            assert job.wait(60).status.value == "SUCCEEDED"
            first = job
            write_driver_rows(root / "src", drivers=20, hours=3, end=END, seed=99)  # other values: other statistics
            job = client.start_offline_to_online_ingestion(
                table, start=END - timedelta(hours=2), end=END, run_on="core"
            )
            assert job.wait(60).status.value == "SUCCEEDED"
        pending = JobRecord(id=new_job_id(), kind=JobKind.OFFLINE_TO_ONLINE, project="default", table="driver_stats",
                            created_at=utc_now())  # fmt: skip
        assert server.request("POST", "/v1/jobs", wire.job_to_dict(pending), token="tok-w")[0] == 200
        yield server, job.id, pending.id, first.id
    finally:
        server.stop()


def open_page(browser: Any, url: str, token: str | None = "tok-w", width: int = 1280) -> tuple[Any, list[str]]:
    context = browser.new_context(viewport={"width": width, "height": 900})
    if token is not None:
        context.add_cookies([{"name": "provender_token", "value": token, "url": url}])
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page, errors


def shot(page: Any, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def test_every_page_loads_without_console_errors(
    core: tuple[CoreServer, str, str, str], browser: Any, tmp_path: Path
) -> None:
    server, job_id, pending_id, _ = core
    page, errors = open_page(browser, server.url)
    pages = {
        "projects": ("/", "Projects"),
        "search": ("/search?q=trips", "Search results"),
        "project": ("/projects/default", "Project default"),
        "table": ("/projects/default/tables/driver_stats", "Feature table driver_stats"),
        "jobs": ("/projects/default/jobs", "Freshness and jobs"),
        "job": (f"/projects/default/jobs/{job_id}", f"Job {job_id}"),
        "history": ("/projects/default/history", "History"),
        "lineage": ("/projects/default/lineage", "Lineage"),
        "statistics": ("/projects/default/tables/driver_stats/statistics", "Statistics"),
        "on-demand": ("/projects/default/on-demand/rate_view", "On-demand features rate_view"),
    }
    for name, (path, heading) in pages.items():
        response = page.goto(server.url + path)
        assert response.status == 200, path
        assert heading in page.locator("h1").inner_text(), path
        shot(page, tmp_path, name)
    assert errors == []
    page.goto(server.url + "/projects/default")
    assert "3" in page.locator("table.list").first.inner_text()  # 3 features
    page.goto(server.url + "/projects/default/tables/driver_stats")
    code = page.locator("#definition").inner_text()
    scope: dict[str, object] = {}
    exec(code, scope)  # the snippet must recreate the table
    assert scope["driver_stats"] == driver_stats(Path(str(scope["driver_stats"].batch_source.path)).resolve())  # type: ignore[attr-defined]
    assert (
        "between [0, 1]" in page.locator("#feature-rate").inner_text()
        or "between" in page.locator("#feature-rate").inner_text()
    )
    assert 'pv.Feature(name="trips"' not in code and "name='trips'" in code and "timedelta(seconds=172800)" in code
    assert "get_historical_features" in page.locator("#reading").inner_text()
    assert "SUCCEEDED\t20\t" in page.locator("main").inner_text()  # 20 drivers' latest rows
    newest = (END - timedelta(hours=1)).isoformat()  # the newest event time of the ingested rows
    assert page.locator("#table-freshness time").first.get_attribute("datetime") == newest
    page.goto(server.url + "/projects/default/jobs")  # freshness read from the core's SQLite online store
    assert page.locator("#fresh-driver_stats td.newest time").get_attribute("datetime") == newest
    assert page.locator("#fresh-driver_stats td.newest-age").inner_text().endswith("ago")
    page.goto(server.url + "/projects/default/history")
    changes = page.locator("main ol.plain > li").all_inner_texts()  # newest first
    assert len(changes) == 2 and all(c.startswith("alice") for c in changes)
    assert "feature table driver_stats added" in changes[1] and "version 0 → 1" in changes[1]
    assert "feature table driver_stats changed (labels)\nlabels: {team='growth'} → {team='pricing'}" in changes[0]
    page.goto(server.url + "/projects/default/tables/driver_stats/statistics")
    assert page.get_by_role("img", name="Histogram of rate").count() == 1  # recorded by the ingestion job
    top_values = page.get_by_role("table", name="Most frequent values of tag")
    assert top_values.get_by_role("row", name="winner").inner_text().split() == ["winner", "20"]
    check_histogram_axes(server, page, job_id)
    page.goto(server.url + "/projects/default/lineage")
    page.get_by_text("Show the lineage as a list").click()
    line, fare_line, rate_line = page.locator("ul.lineage-list li").all_inner_texts()
    assert line.startswith("file: ") and f"→ driver_stats ← offline_to_online {pending_id} (" in line  # its latest job
    assert fare_line == "feature table driver_stats (trips), request (fare) → fare_view (on demand)"
    assert rate_line == "feature table driver_stats (rate) → rate_view (on demand)"
    graph = page.get_by_role("group", name="Lineage of default")
    assert graph.locator("rect.on-demand").count() == 2  # drawn in the graph, not only listed
    assert graph.get_by_text("request: fare").count() == 1
    assert graph.locator('a[href="/projects/default/tables/driver_stats"]').count() == 3  # the table and 2 inputs
    graph.locator('a[href="/projects/default/on-demand/fare_view"]').click()
    page.wait_for_url("**/on-demand/fare_view")
    assert page.locator("h1").inner_text() == "On-demand features fare_view"
    narrow, narrow_errors = open_page(browser, server.url, width=390)
    for path, _ in pages.values():  # every page fits a phone screen: wide parts scroll inside themselves
        narrow.goto(server.url + path)
        assert narrow.evaluate("document.documentElement.scrollWidth") <= 392, path
    narrow.goto(server.url + "/projects/default/tables/driver_stats")
    shot(narrow, tmp_path, "table-narrow")
    missing = narrow.goto(server.url + "/projects/default/tables/nope")
    assert missing.status == 404 and "nope" in narrow.get_by_role("alert").inner_text()
    assert narrow_errors == [] or all("404" in e for e in narrow_errors)


def job_statistics(server: CoreServer, job_id: str, feature: str) -> dict[str, Any]:
    status, record = server.request("GET", f"/v1/jobs/{job_id}", token="tok-w")
    assert status == 200
    statistics: Any = record["statistics"]
    return next(f for f in statistics["features"] if f["name"] == feature)


def check_histogram_axes(server: CoreServer, page: Any, job_id: str) -> None:
    """The histogram of `rate` labels its axes with the recorded values and counts, and reads as a table too."""
    recorded = job_statistics(server, job_id, "rate")
    edges, counts = recorded["histogram"]["edges"], recorded["histogram"]["counts"]
    chart = page.locator("#stats-rate svg.histogram")
    x_ticks = chart.locator("text.x-tick").all_text_contents()
    assert x_ticks[0] == f"{edges[0]:.4g}" and x_ticks[-1] == f"{edges[-1]:.4g}" and len(x_ticks) == 5
    assert [float(x) for x in x_ticks] == sorted(float(x) for x in x_ticks)
    y_ticks = chart.locator("text.y-tick").all_text_contents()
    assert y_ticks[0] == "0" and y_ticks[-1] == f"{max(counts):,}"
    assert chart.locator("text.x-title").text_content() == "rate (value)"
    assert chart.locator("text.y-title").text_content() == "count"
    assert chart.locator("rect.bar").count() == len(counts)
    label = chart.get_attribute("aria-label")
    assert label is not None and f"from {edges[0]:.4g} to {edges[-1]:.4g} on the x axis" in label
    summary = page.get_by_text("Show the histogram of rate as a table")
    summary.focus()
    page.keyboard.press("Enter")  # the disclosure opens from the keyboard
    table = page.get_by_role("table", name="Histogram of rate")
    rows = table.locator("tbody tr").all_inner_texts()
    assert len(rows) == len(counts) and sum(int(r.split("\t")[-1].replace(",", "")) for r in rows) == sum(counts)
    assert rows[0].startswith(f"{edges[0]:.4g} to {edges[1]:.4g})")


def test_the_reading_snippet_runs_in_python_and_its_curl_against_provender_serve(
    core: tuple[CoreServer, str, str, str], browser: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, *_ = core
    page, errors = open_page(browser, server.url)
    page.goto(server.url + "/projects/default/tables/driver_stats")
    code = page.locator("#reading").inner_text().replace("1001", "1")  # driver 1 exists; the page's key is an example
    assert errors == []
    reader = tmp_path / "reader"  # a project folder reading the core's registry and its online store
    reader.mkdir()
    online_db = server.root / ".provender" / "online.db"
    (reader / "provender.yaml").write_text(
        f"project: default\nregistry: {server.url}\ncore_token: tok-w\nonline: {{store: sqlite, path: '{online_db}'}}\n"
    )
    monkeypatch.chdir(reader)
    for name in [n for n in os.environ if n.startswith("PROVENDER_") and n != "PROVENDER_REQUIRE_SERVICES"]:
        monkeypatch.delenv(name)
    scope: dict[str, Any] = {}
    exec(code, scope)  # the Python lines as shown
    scope["client"].close()
    online = scope["online"]
    assert online["driver_id"] == [1] and online["driver_stats__tag"] == ["winner"]
    training = scope["training"]
    assert list(training["driver_id"]) == [1] and list(training["driver_stats__tag"]) == ["winner"]
    page.goto(server.url + "/projects/default/on-demand/rate_view")  # computed features read the same way
    view_code = page.locator("#reading").inner_text().replace("1001", "1")
    exec(view_code, scope)
    scope["client"].close()
    assert scope["online"]["rate_view__rate_pct"] == [online["driver_stats__rate"][0] * 100]
    assert list(scope["training"]["rate_view__rate_pct"]) == [online["driver_stats__rate"][0] * 100]
    definition: dict[str, Any] = {}
    exec(page.locator("#definition").inner_text(), definition)
    assert definition["rate_view"] == dataclasses.replace(
        RATE_VIEW, function_version=definition["rate_view"].function_version,
        function_digest=definition["rate_view"].function_digest,
    )  # fmt: skip
    assert definition["rate_view"].function_digest is not None  # recorded by apply, shown, recreated

    port = free_port()
    argv = [sys.executable, "-c", "from provender.cli.main import main; main()", "serve", "--http-port", str(port),
            "--no-grpc"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVENDER_")}
    with (tmp_path / "serve.log").open("wb") as log:
        serve = subprocess.Popen(argv, cwd=reader, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        ready = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://{HOST}:{port}/v1/ready"]
        wait_serving(
            lambda: subprocess.run(ready, capture_output=True, text=True, check=False).stdout == "200",
            "provender serve", tmp_path / "serve.log", pid=serve.pid, ports=[port], alive=lambda: serve.poll() is None,
        )  # fmt: skip
        curl = code.split("# the serving service (provender serve), over HTTP:\n")[1]
        command = " ".join(line.removeprefix("# ").removesuffix("\\") for line in curl.splitlines())
        command = command.replace("localhost:6566", f"{HOST}:{port}")
        answer = subprocess.run(command, shell=True, capture_output=True, text=True, check=True)
        assert json.loads(answer.stdout)["columns"] == online, answer.stdout  # the same values as Python
    finally:
        serve.terminate()
        serve.wait(30)


def test_search_as_you_type_finds_a_feature_by_its_description(
    core: tuple[CoreServer, str, str, str], browser: Any
) -> None:
    server, *_ = core
    page, errors = open_page(browser, server.url)
    page.goto(server.url + "/")
    page.get_by_label("Search tables, features, entities, labels, descriptions").fill("acceptance")
    live = page.locator("#live a").first
    live.wait_for()
    assert "rate" in live.inner_text() and page.locator("#live mark").first.inner_text().lower() == "acceptance"
    assert page.get_by_role("status").filter(has_text="result").inner_text() == "1 result for “acceptance”"
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.wait_for_url("**/tables/driver_stats#feature-rate")
    page.goto(server.url + "/")
    page.locator("#q").fill("pricing")  # a label
    page.locator("#q").press("Enter")  # the plain form: /search?q=
    page.wait_for_url("**/search?q=pricing")
    assert "driver_stats" in page.locator("table.list").inner_text()
    assert errors == []


def test_every_page_passes_an_axe_accessibility_audit(core: tuple[CoreServer, str, str, str], browser: Any) -> None:
    """axe-core (shipped in the axe-playwright-python wheel) finds no violation on any page, wide or narrow."""
    from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]

    server, job_id, _, first_id = core
    axe = Axe()
    paths = ["/", "/search?q=rate", "/projects/default", "/projects/default/tables/driver_stats",
             f"/projects/default/tables/driver_stats/statistics?against={first_id}&current={job_id}",
             "/projects/default/jobs",
             f"/projects/default/jobs/{job_id}", "/projects/default/history", "/projects/default/lineage",
             "/projects/default/on-demand/rate_view"]  # fmt: skip
    found = {}
    for width in (1280, 390):
        page, errors = open_page(browser, server.url, width=width)
        for path in paths:
            page.goto(server.url + path)
            for summary in page.locator("details summary").all():  # audit the disclosed tables too
                summary.click()
            violations = axe.run(page).response["violations"]
            found.update({(width, path, v["id"]): [n["target"] for n in v["nodes"]][:3] for v in violations})
        assert errors == []
    prompt, _ = open_page(browser, server.url, token=None)
    prompt.goto(server.url + "/projects/default")  # the sign-in page
    found.update({(0, "sign-in", v["id"]): v["nodes"][0]["target"] for v in axe.run(prompt).response["violations"]})
    assert found == {}, "\n".join(f"{k}: {v}" for k, v in found.items())


def test_keyboard_skip_link_and_focus(core: tuple[CoreServer, str, str, str], browser: Any) -> None:
    server, *_ = core
    page, errors = open_page(browser, server.url)
    page.goto(server.url + "/projects/default")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "content" and page.url.endswith("#content")
    page.keyboard.press("Tab")  # the next stop is inside the page: the breadcrumb's first link
    assert page.evaluate("document.activeElement.closest('main') !== null")
    for _ in range(6):  # tab to the first table link and follow it with Enter
        if page.evaluate("document.activeElement.textContent") == "driver_stats":
            break
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_url("**/projects/default/tables/driver_stats")
    assert errors == []


def test_click_through_and_back_forward(core: tuple[CoreServer, str, str, str], browser: Any) -> None:
    server, job_id, _, first_id = core
    page, errors = open_page(browser, server.url)
    page.goto(server.url + "/")
    page.get_by_role("link", name="default").click()
    page.get_by_role("link", name="driver_stats").first.click()
    page.wait_for_url("**/projects/default/tables/driver_stats")
    page.get_by_role("link", name="Statistics").click()
    page.wait_for_url("**/tables/driver_stats/statistics")
    assert page.get_by_label("Current job").input_value() == job_id  # the latest by default
    assert page.get_by_label("Baseline job").input_value() == first_id  # the one before it, preselected
    page.get_by_role("button", name="Compare").click()
    page.wait_for_url(f"**/statistics?against={first_id}&current={job_id}")
    assert page.get_by_role("heading", name=f"Drift of {job_id} against {first_id}").count() == 1
    assert "rate" in page.locator("#drift").inner_text()

    # Both ends are chosen: the earlier job as current, the later as baseline.
    page.get_by_label("Current job").select_option(first_id)
    page.get_by_label("Baseline job").select_option(job_id)
    page.get_by_role("button", name="Compare").click()
    page.wait_for_url(f"**/statistics?against={job_id}&current={first_id}")
    assert page.get_by_role("heading", name=f"Drift of {first_id} against {job_id}").count() == 1
    assert f"Recorded by job {first_id}" in page.locator("main").inner_text()
    first_mean, latest_mean = (job_statistics(server, j, "rate")["mean"] for j in (first_id, job_id))
    assert f"{first_mean:.4g}" != f"{latest_mean:.4g}"  # the two jobs read different rows
    assert page.locator("#stats-rate dl").inner_text().split("mean")[1].split()[0] == f"{first_mean:.4g}"
    page.goto(page.url.replace(f"against={job_id}", f"against={first_id}"))  # the same job twice
    assert "choose two different jobs" in page.get_by_role("alert").inner_text()
    assert page.locator("#drift").count() == 0
    page.go_back()
    page.go_back()
    page.go_back()
    page.go_back()
    page.get_by_role("link", name=job_id).click()
    page.wait_for_url(f"**/projects/default/jobs/{job_id}")
    assert "SUCCEEDED" in page.locator("main").inner_text()
    assert page.locator("#validation").inner_text().startswith("passed: 20 rows checked")  # recorded by the job
    page.get_by_role("link", name="The statistics this job recorded").click()
    page.wait_for_url(f"**/tables/driver_stats/statistics?current={job_id}")
    assert f"Recorded by job {job_id}" in page.locator("main").inner_text()
    page.go_back()
    page.go_back()
    assert page.url.endswith("/projects/default/tables/driver_stats")
    page.go_back()
    assert page.url.endswith("/projects/default")
    page.go_forward()
    assert page.url.endswith("/projects/default/tables/driver_stats")
    assert errors == []


def test_token_prompt_and_read_only_users_see_no_write_actions(
    core: tuple[CoreServer, str, str, str], browser: Any
) -> None:
    server, _, pending_id, _ = core
    page, _ = open_page(browser, server.url, token=None)
    assert page.goto(server.url + "/projects/default/jobs").status == 401
    page.get_by_label("Token").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    assert "Invalid bearer token" in page.get_by_role("alert").inner_text()
    page.get_by_label("Token").fill("tok-r")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/projects/default/jobs")
    assert "viewer" in page.locator("header").inner_text()
    assert pending_id in page.locator("main").inner_text()
    assert page.locator("[data-write-action]").count() == 0
    writer, errors = open_page(browser, server.url, token="tok-w")
    writer.goto(server.url + "/projects/default/jobs")
    assert writer.get_by_role("button", name=f"Cancel job {pending_id}").count() == 1
    writer.get_by_role("button", name=f"Cancel job {pending_id}").click()
    writer.wait_for_url(f"**/jobs/{pending_id}")
    assert "CANCELLED" in writer.locator("main").inner_text()
    assert errors == []


def test_freshness_shows_the_newest_online_value_from_redis(
    redis_server: RedisServer, browser: Any, tmp_path: Path
) -> None:
    write_driver_rows(tmp_path / "src", drivers=5, hours=2, end=END)
    online = {"store": "redis", "url": redis_server.url, "key_prefix": "ui" + uuid.uuid4().hex[:8]}
    server = launch_core(
        tmp_path / "core", registry=f"sqlite:///{tmp_path / 'registry.db'}", settings={"online": online}
    )
    store = RedisStore.from_options(online, base_dir=tmp_path, project="default")
    try:
        table = driver_stats(tmp_path / "src")
        with closing(pv.Client(settings=pv.Settings(registry=server.url, base_dir=tmp_path))) as client:
            client.apply([DRIVER, table])
            job = client.start_offline_to_online_ingestion(table, start=END - timedelta(days=1), end=END, run_on="core")
            assert job.wait(60).status.value == "SUCCEEDED"
        page, errors = open_page(browser, server.url, token=None)
        page.goto(server.url + "/projects/default/jobs")
        newest = page.locator("#fresh-driver_stats td.newest time")
        assert newest.get_attribute("datetime") == (END - timedelta(hours=1)).isoformat()
        written = store.freshness(["driver_stats"])["driver_stats"].written_at
        assert page.locator("#fresh-driver_stats time").nth(1).get_attribute("datetime") == written.isoformat()
        assert (
            job.id in page.locator("#fresh-driver_stats td.ingested").inner_text()
            or page.locator(f"#fresh-driver_stats a[href$='{job.id}']").count() == 1
        )

        # A newer value written straight to Redis (as a stream job would) shows on the next load.
        later = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=90)
        store.write(
            table,
            batch(table, [{"driver_id": 1, "trips": 5, "event_timestamp": later}], entities={"driver_id": DRIVER}),
        )
        page.reload()
        assert newest.get_attribute("datetime") == later.isoformat()
        assert page.locator("#fresh-driver_stats td.newest-age").inner_text() in ("2 min ago", "3 min ago")
        page.goto(server.url + "/projects/default/tables/driver_stats")
        assert page.locator("#table-freshness time").first.get_attribute("datetime") == later.isoformat()
        assert errors == []
    finally:
        store.close()
        server.stop()


def test_provender_ui_serves_the_local_registry_read_only(tmp_path: Path) -> None:
    import http.client

    project = tmp_path / "repo"
    project.mkdir()
    dead = 1  # nothing listens there: the online store does not answer; freshness says so, the pages still work
    (project / "provender.yaml").write_text(
        "project: local\nregistry: sqlite:///registry.db\n"
        f"online: {{store: redis, url: 'redis://{HOST}:{dead}/0', connect_timeout_seconds: 0.2, retries: 0}}\n"
    )
    with closing(pv.Client(settings=pv.load_settings(project / "provender.yaml", environ={}))) as client:
        client.apply([pv.Entity(name="driver_id", value_type=pv.ValueType.INT64), driver_stats(tmp_path / "src")])
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVENDER_")}
    argv = [sys.executable, "-c", "from provender.cli.main import main; main()", "ui", "--port", str(port)]
    proc = subprocess.Popen(argv, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_serving(lambda: port_open(port), "provender ui", Path(os.devnull), pid=proc.pid, ports=[port],
                     alive=lambda: proc.poll() is None)  # fmt: skip

        def call(method: str, path: str) -> tuple[int, str]:
            with closing(http.client.HTTPConnection(HOST, port, timeout=5)) as connection:
                connection.request(method, path, body=b"" if method == "POST" else None)
                response = connection.getresponse()
                return response.status, response.read().decode()

        deadline = time.monotonic() + 30
        while True:
            try:
                status, body = call("GET", "/projects/local/tables/driver_stats")
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                time.sleep(0.1)
        assert status == 200 and "Completed trips in the last hour" in body
        assert "data-write-action" not in body and "Signed in as <strong>local</strong>" in body
        assert call("POST", "/ui/jobs/x/cancel")[0] == 404
        status, body = call("GET", "/projects/local/tables/driver_stats/statistics")
        assert status == 200 and "No statistics recorded for this table yet." in body
        status, body = call("GET", "/projects/local/jobs")
        assert status == 200 and "Online values: cannot read the online store: Redis online store" in body
        assert f"{HOST}:{dead}" in body and "No jobs yet." in body
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()


def files_in(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_provender_ui_creates_no_file_and_says_there_is_no_online_data_yet(tmp_path: Path) -> None:
    import http.client

    project = tmp_path / "repo"
    project.mkdir()
    (project / "provender.yaml").write_text("project: local\nregistry: sqlite:///registry.db\n")  # online: SQLite
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVENDER_")}
    port = free_port()
    argv = [sys.executable, "-c", "from provender.cli.main import main; main()", "ui", "--port", str(port)]

    # No registry yet: a clear error, and the folder is left as it was (no empty registry.db).
    refused = subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"no registry at {project / 'registry.db'} yet: run `provender apply`" in refused.stderr
    assert files_in(project) == {"provender.yaml"}

    # A registry written by an older Provender: refused, not upgraded (that would be a write).
    old = sqlite3.connect(project / "registry.db")
    old.executescript(SQLITE_V2.read_text())
    old.close()
    written = (project / "registry.db").read_bytes()
    refused = subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "was written by an older Provender (schema version 2;" in refused.stderr
    assert "`provender tables list`, which upgrades it" in refused.stderr
    assert (project / "registry.db").read_bytes() == written and files_in(project) == {"provender.yaml", "registry.db"}
    (project / "registry.db").unlink()

    settings = pv.load_settings(project / "provender.yaml", environ={})
    with closing(pv.Client(settings=settings)) as client:
        client.apply([DRIVER, driver_stats(tmp_path / "src")])
    before = files_in(project)
    assert ".provender/online.db" not in before
    proc = subprocess.Popen(argv, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_serving(lambda: port_open(port), "provender ui", Path(os.devnull), pid=proc.pid, ports=[port],
                     alive=lambda: proc.poll() is None)  # fmt: skip

        def get(path: str) -> str:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with closing(http.client.HTTPConnection(HOST, port, timeout=5)) as connection:
                        connection.request("GET", path)
                        response = connection.getresponse()
                        assert response.status == 200, path
                        return response.read().decode()
                except OSError:
                    assert time.monotonic() < deadline and proc.poll() is None, (
                        proc.stdout.read() if proc.stdout else ""
                    )
                    time.sleep(0.1)

        jobs = get("/projects/local/jobs")
        assert "Online values: no online store data yet: an ingestion job writes the first values." in jobs
        assert "no online store data yet" in get("/projects/local/tables/driver_stats")
        assert not (project / ".provender").exists()  # reading created no online store

        # An ingestion writes the first values: the running UI finds them on the next page.
        write_driver_rows(tmp_path / "src", drivers=5, hours=2, end=END)
        with closing(pv.Client(settings=settings)) as client:
            job = client.start_offline_to_online_ingestion("driver_stats", start=END - timedelta(days=1), end=END)
            assert job.wait(60).status.value == "SUCCEEDED"
        jobs = get("/projects/local/jobs")
        assert "no online store data yet" not in jobs
        assert f'datetime="{(END - timedelta(hours=1)).isoformat()}"' in jobs
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()
    assert {f for f in files_in(project) - before if not f.endswith(("-wal", "-shm"))} == {
        ".provender",
        ".provender/online.db",
    }  # written by the ingestion, not by the UI


def test_a_project_with_1000_tables_and_20000_features_is_fast(
    tmp_path: Path, browser: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from provender.registry.sqlite import SQLiteRegistry
    from provender.registry.store import RegistryChange

    db = tmp_path / "big.db"
    store = SQLiteRegistry.from_url(f"sqlite:///{db}", base_dir=tmp_path)
    entity = pv.Entity(name="customer_id", value_type=pv.ValueType.STRING)
    tables = tuple(
        pv.FeatureTable(
            name=f"table_{i:04d}",
            entities=["customer_id"],
            features=[
                pv.Feature(f"f{i:04d}_{j:02d}", pv.ValueType.DOUBLE, description=f"Signal {j} of domain {i}")
                for j in range(20)
            ],
            batch_source=pv.FileSource(path=f"/data/t{i}", event_timestamp_column="ts"),
            labels={"owner": f"team{i % 17}"},
        )
        for i in range(1000)
    )
    tables = (*tables[:-1], pv.FeatureTable(
        name="churn_signals", entities=["customer_id"],
        features=[pv.Feature("days_since_login", pv.ValueType.INT64, description="Days since the last zephyrine login"),
                  *tables[-1].features[1:]],
        batch_source=pv.FileSource(path="/data/churn", event_timestamp_column="ts"),
    ))  # fmt: skip
    store.update("big", lambda _s: RegistryChange(put=(entity, *tables)), actor="loader")
    store.close()
    online = SQLiteStore(tmp_path / "core" / ".provender" / "online.db", project="big")  # the core's online store
    for n, t in enumerate(tables):  # a value per table, so the freshness page reads 1,000 tables' freshness
        online.write(t, batch(t, [{"customer_id": "c1", "event_timestamp": END - timedelta(minutes=n)}],
                              entities={"customer_id": entity}))  # fmt: skip
    online.close()
    server = launch_core(tmp_path / "core", registry=f"sqlite:///{db}")
    try:
        page, errors = open_page(browser, server.url, token=None)
        page.goto(server.url + "/")  # warm-up: the first read decodes the project once per version
        timings = []
        for _ in range(3):
            page.goto(server.url + "/")
            timings.append(page.evaluate(LOAD_MS))
        assert "1000" in page.locator("main").inner_text() and "20000" in page.locator("main").inner_text().replace(
            ",", ""
        )
        searches, found = [], {}
        for word in ("zephyrine", "domain 7", "f0999"):
            page.locator("#q").fill("")
            page.locator("#q").fill(word)
            page.locator("body[data-search-ms]").wait_for()  # selectors, not JavaScript: the CSP forbids eval
            page.locator("#live a").first.wait_for()
            searches.append(float(page.evaluate("document.body.dataset.searchMs")))
            found[word] = page.locator("#live").inner_text()
            page.evaluate("delete document.body.dataset.searchMs")
        assert "days_since_login" in found["zephyrine"] and "f0999_01" in found["f0999"]
        fresh, served = [], []
        for _ in range(3):  # the freshness page: 1,000 tables' newest online values in one read of the store
            page.goto(server.url + "/projects/big/jobs")
            fresh.append(page.evaluate(LOAD_MS))
            served.append(page.evaluate(SERVED_MS))
        assert page.locator("#freshness td.newest time").count() == 1000
        assert page.locator("#fresh-table_0000 td.newest time").get_attribute("datetime") == END.isoformat()
        load_ms, search_ms = sorted(timings)[1], sorted(searches)[1]  # medians (the machine is shared)
        with capsys.disabled():
            print(f"\nUI 1000 tables/20000 features: first page load {timings} ms, searches {searches} ms, "  # noqa: T201 - the measurement, reported
                  f"freshness page {fresh} ms (served in {served} ms)")  # fmt: skip
        assert load_ms < 300 and search_ms < 300, (timings, searches)
        # No target in the issue. The server's part is bounded (the store's read is one command: see
        # tests/integration/test_redis_online.py); the rest is the browser laying out 1,000 rows.
        assert sorted(served)[1] < 1000, (served, fresh)
        assert errors == []
    finally:
        server.stop()
