"""The job service: jobs recorded in the registry, run locally or in the core service, reaped when their runner dies."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

import provender as pv
from provender.client.jobs import JobReporter, new_record
from provender.config import load_settings
from provender.errors import ConfigError, JobNotFoundError, PermissionDeniedError
from provender.registry.jobs import JobKind, JobStatus
from tests.support.builders import DRIVER, make_client
from tests.support.core import CoreServer, StartCore
from tests.support.ingestion import driver_table, hour, write_driver_rows

pytestmark = pytest.mark.service

END = hour(datetime.now(UTC))
FAST_JOBS = {"heartbeat_seconds": 0.2, "stale_after_seconds": 1.0}


def wait_for(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_local_ingestion_and_retrieval_are_recorded(tmp_path: Path) -> None:
    write_driver_rows(tmp_path / "src", drivers=20, hours=3, end=END)
    table = driver_table(tmp_path / "src")
    with closing(make_client(tmp_path / "project")) as client:
        client.apply([DRIVER, table])
        job = client.start_offline_to_online_ingestion(table, start=END - timedelta(days=1), end=END)
        job.wait(60)
        recorded = client.get_job(job.id)
        assert (recorded.status, recorded.rows_written, recorded.table) == (JobStatus.SUCCEEDED, 20, "driver_stats")
        record = recorded.record
        assert record.kind is JobKind.OFFLINE_TO_ONLINE and record.runner == client.runner
        assert record.started_at is not None and record.finished_at is not None and record.heartbeat_at is not None
        assert client.list_jobs() == []  # nothing unfinished
        rows = pd.DataFrame({"driver_id": [1, 2], "event_timestamp": [END, END]})
        assert len(client.get_historical_features(["driver_stats:trips"], rows).to_pandas()) == 2
        finished = client.list_jobs(include_finished=True)
        assert [(j.record.kind, j.status) for j in finished] == [
            (JobKind.HISTORICAL, JobStatus.SUCCEEDED),
            (JobKind.OFFLINE_TO_ONLINE, JobStatus.SUCCEEDED),
        ]
        assert finished[0].rows_written == 2
        assert [j.id for j in client.list_jobs("driver_stats", include_finished=True)] == [j.id for j in finished]
        with pytest.raises(JobNotFoundError):
            client.get_job("job-nope")
        with pytest.raises(ConfigError, match="run_on"):
            client.start_offline_to_online_ingestion(table, start=END - timedelta(days=1), end=END, run_on="core")


def test_cancel_a_pending_and_a_running_job(tmp_path: Path) -> None:
    with closing(make_client(tmp_path)) as client:
        registry = client._registry
        pending = registry.put_job(new_record(kind=JobKind.OFFLINE_TO_ONLINE, project="default", table="t", runner="x"))
        job = client.get_job(pending.id)
        job.cancel()
        assert job.status is JobStatus.CANCELLED and job.is_done
        running = registry.put_job(new_record(kind=JobKind.OFFLINE_TO_ONLINE, project="default", table="t", runner="x"))
        asked: list[bool] = []
        reporter = JobReporter(
            registry, running, heartbeat_seconds=0.05, progress=lambda: 7, on_cancel=lambda: asked.append(True)
        )
        reporter.started()
        client.get_job(running.id).cancel()
        wait_for(lambda: asked)
        reporter.finished(JobStatus.CANCELLED)
        done = client.get_job(running.id)
        assert (done.status, done.rows_written, done.record.cancel_requested) == (JobStatus.CANCELLED, 7, True)


def test_cli_jobs_list_show_cancel(tmp_path: Path) -> None:
    with closing(make_client(tmp_path)) as client:
        record = client._registry.put_job(
            new_record(kind=JobKind.OFFLINE_TO_ONLINE, project="default", table="t", runner="x")
        )

    def run(*args: str) -> str:
        argv = [sys.executable, "-c", "from provender.cli.main import main; main()", *args]
        done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert record.id in run("jobs", "list")
    assert '"status": "PENDING"' in run("jobs", "show", record.id)
    assert "CANCELLED" in run("jobs", "cancel", record.id)
    assert record.id not in run("jobs", "list")
    assert record.id in run("jobs", "list", "--all")


def _core_with_data(start_core: StartCore, tmp_path: Path, **core: object) -> tuple[CoreServer, pv.FeatureTable]:
    write_driver_rows(tmp_path / "src", drivers=20, hours=3, end=END)
    table = driver_table(tmp_path / "src")
    core_server = start_core(
        tmp_path / "core",
        registry="sqlite:///registry.db",
        settings={"online": {"store": "sqlite", "path": "online.db"}, "jobs": FAST_JOBS, "core": core},
    )
    return core_server, table


def test_run_on_core_with_a_write_token(start_core: StartCore, tmp_path: Path) -> None:
    tokens = {"tok-w": {"subject": "alice", "grants": ["default:write"]}, "tok-r": ["default"]}
    core, table = _core_with_data(start_core, tmp_path, auth={"mode": "token", "tokens": tokens})
    settings = pv.Settings(registry=core.url, base_dir=tmp_path, core_token="tok-w")  # type: ignore[arg-type]
    with closing(pv.Client(settings=settings)) as client:
        client.apply([DRIVER, table])
        job = client.start_offline_to_online_ingestion(table, start=END - timedelta(days=1), end=END, run_on="core")
        assert job.wait(60).status is JobStatus.SUCCEEDED
        assert [j.id for j in client.list_jobs(include_finished=True)] == [job.id]
    reader = pv.Settings(registry=core.url, base_dir=tmp_path, core_token="tok-r")  # type: ignore[arg-type]
    with closing(pv.Client(settings=reader)) as client:
        assert client.get_job(job.id).status is JobStatus.SUCCEEDED
        with pytest.raises(PermissionDeniedError):
            client.start_offline_to_online_ingestion(table, start=END - timedelta(days=1), end=END, run_on="core")


def test_run_on_core_uses_the_services_store_and_outlives_the_submitter(start_core: StartCore, tmp_path: Path) -> None:
    core, table = _core_with_data(start_core, tmp_path)
    notebook = tmp_path / "notebook"
    notebook.mkdir()
    with closing(pv.Client(settings=pv.Settings(registry=core.url, base_dir=notebook))) as client:
        client.apply([DRIVER, table])
        job = client.start_offline_to_online_ingestion(table, start=END - timedelta(days=1), end=END, run_on="core")
        job.wait(60)
        assert (job.status, job.rows_written) == (JobStatus.SUCCEEDED, 20)
        assert job.record.runner.startswith("core:")
    assert not (notebook / ".provender").exists()  # the notebook never opened an online store
    # a submitter that exits at once: the job runs on in the service
    script = (
        "import provender as pv, datetime as dt\n"
        f"c = pv.Client(settings=pv.Settings(registry={core.url!r}))\n"
        f"end = dt.datetime.fromisoformat({END.isoformat()!r})\n"
        "print(c.start_offline_to_online_ingestion('driver_stats', start=end - dt.timedelta(days=1), end=end,"
        " run_on='core').id)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    job_id = done.stdout.strip().splitlines()[-1]
    with closing(pv.Client(settings=pv.Settings(registry=core.url, base_dir=notebook))) as client:
        wait_for(lambda: client.get_job(job_id).is_done, timeout=60)
        assert client.get_job(job_id).status is JobStatus.SUCCEEDED
    # the values are in the core's own online store
    with closing(pv.Client(settings=load_settings(core.config, environ={}))) as inside:
        values = inside.get_online_features(["driver_stats:trips"], [{"driver_id": 1}]).to_dict()
        assert values["driver_stats__trips"][0] is not None


RUNNER = """
import sys, time
import provender as pv
from provender.client.jobs import JobReporter, new_record
from provender.registry.jobs import JobKind
client = pv.Client(settings=pv.Settings(registry=sys.argv[1]))
registry = client._registry
record = new_record(kind=JobKind.OFFLINE_TO_ONLINE, project="default", table="t", runner=client.runner)
record = registry.put_job(record)
reporter = JobReporter(registry, record, heartbeat_seconds=0.2, progress=lambda: 5, on_cancel=lambda: None)
reporter.started()
print(record.id, flush=True)
time.sleep(600)
"""


def test_a_job_whose_runner_dies_ends_failed(start_core: StartCore, tmp_path: Path) -> None:
    core, _ = _core_with_data(start_core, tmp_path)
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, core.url], stdout=subprocess.PIPE, text=True)
    try:
        assert runner.stdout is not None
        job_id = runner.stdout.readline().strip()
        time.sleep(0.6)
        assert core.request("GET", f"/v1/jobs/{job_id}")[1]["status"] == "RUNNING"  # it beats
    finally:
        runner.kill()
        runner.wait()
        if runner.stdout is not None:
            runner.stdout.close()
    # nobody asks: the core service's reaper fails it
    wait_for(lambda: core.request("GET", f"/v1/jobs/{job_id}")[1]["status"] == "FAILED", timeout=15)
    record = core.request("GET", f"/v1/jobs/{job_id}")[1]
    assert "runner died" in str(record["error"]) and record["rows"] == 5
    assert "provender_core_jobs_failed_stale_total 1.0" in core.text("/metrics")


def test_without_a_core_service_reading_jobs_fails_dead_ones(tmp_path: Path) -> None:
    registry = f"sqlite:///{tmp_path}/registry.db"
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, registry], stdout=subprocess.PIPE, text=True)
    try:
        assert runner.stdout is not None
        job_id = runner.stdout.readline().strip()
    finally:
        runner.kill()
        runner.wait()
        if runner.stdout is not None:
            runner.stdout.close()
    settings = pv.Settings(registry=registry, base_dir=tmp_path, jobs=FAST_JOBS)  # type: ignore[arg-type]
    with closing(pv.Client(settings=settings)) as client:
        assert client.get_job(job_id).status is JobStatus.RUNNING
        time.sleep(1.2)
        assert client.get_job(job_id).status is JobStatus.FAILED
        assert client.list_jobs() == []


def test_run_on_core_overrides_the_validation_policy(start_core: StartCore, tmp_path: Path) -> None:
    """The table says ``fail``; the job submitted to the core says ``skip``: the service runs it so."""
    core, table = _core_with_data(start_core, tmp_path)
    trips = pv.Feature("trips", pv.ValueType.INT64, expect=[pv.expect.between(0, 49)])
    strict = dataclasses.replace(table, features=[trips, *table.features[1:]], validation_policy="fail")
    written = write_driver_rows(tmp_path / "src", drivers=20, hours=3, end=END)  # the same rows again
    latest = {
        d: t
        for d, t, tag, ts in zip(
            *(written.column(c).to_pylist() for c in ("driver_id", "trips", "tag", "ts")), strict=True
        )
        if tag == "winner" and ts == END - timedelta(hours=1)
    }
    bad = {d for d, t in latest.items() if t > 49}
    assert 0 < len(bad) < 20
    start = END - timedelta(days=1)
    with closing(pv.Client(settings=pv.Settings(registry=core.url, base_dir=tmp_path))) as client:
        client.apply([DRIVER, strict])
        failed = client.start_offline_to_online_ingestion(strict, start=start, end=END, run_on="core")
        with pytest.raises(pv.ProvenderError):
            failed.wait(60)
        assert (failed.status, failed.rows_written) == (JobStatus.FAILED, 0)
        assert failed.validation is not None and failed.validation.policy == "fail"
        job = client.start_offline_to_online_ingestion(
            strict, start=start, end=END, run_on="core", validation_policy="skip"
        )
        assert job.wait(60).status is JobStatus.SUCCEEDED
        report = job.validation
        assert report is not None
        assert (report.policy, report.rows_checked, report.rows_skipped) == ("skip", 20, len(bad))
        assert job.rows_written == 20 - len(bad)
        with pytest.raises(pv.DataError, match=r"'validation_policy' must be one of \['fail', 'skip', 'warn'\]"):
            client.start_offline_to_online_ingestion(
                strict, start=start, end=END, run_on="core", validation_policy="lenient"
            )
    with closing(pv.Client(settings=load_settings(core.config, environ={}))) as inside:
        values = inside.get_online_features(["driver_stats:trips"], [{"driver_id": d} for d in sorted(latest)])
        found = dict(zip(sorted(latest), values.to_dict()["driver_stats__trips"], strict=True))
    assert {d for d, v in found.items() if v is None} == bad
    assert all(found[d] == latest[d] for d in latest if d not in bad)
