"""Expectations enforced at offline-to-online ingestion, each policy, on real SQLite and Redis stores."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

import provender as pv
from provender.definitions.expect import FeatureExpectation
from provender.ingestion.batch import JobStatus
from provender.ingestion.validation import ExpectationError, ValidationReport
from tests.support.builders import DRIVER, make_client, write_parquet

END = datetime(2026, 3, 1, tzinfo=UTC)
START = END - timedelta(days=1)
DRIVERS = list(range(1, 11))
# Driver 3: conv_rate null; 4: conv_rate 1.5; 5: city 'rome' (not one_of); 6: city 'Paris' (neither one_of nor matches).
CONV = {3: None, 4: 1.5}
CITY = {5: "rome", 6: "Paris"}
BAD = {3, 4, 5, 6}


def _features(**extra: Sequence[FeatureExpectation]) -> list[pv.Feature]:
    return [
        pv.Feature("conv_rate", pv.ValueType.DOUBLE, expect=[pv.expect.not_null(), pv.expect.between(0, 1)]),
        pv.Feature(
            "city", pv.ValueType.STRING, expect=[pv.expect.one_of(["paris", "lyon"]), pv.expect.matches("[a-z]+")]
        ),
        pv.Feature("trips", pv.ValueType.INT64, expect=extra.get("trips", [])),
    ]


def _table(path: Path, **changes: object) -> pv.FeatureTable:
    values: dict[str, object] = {
        "name": "driver_quality",
        "entities": ["driver_id"],
        "features": _features(),
        "batch_source": pv.FileSource(path=str(path), event_timestamp_column="ts"),
    }
    return pv.FeatureTable(**(values | changes))  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.service)])
def online(request: pytest.FixtureRequest) -> dict[str, object] | None:
    """The online store: the default SQLite file, or a real Redis."""
    if request.param == "sqlite":
        return None
    server = request.getfixturevalue("redis_server")
    return {"store": "redis", "url": server.url}


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return write_quality_rows(tmp_path)


def write_quality_rows(tmp_path: Path) -> Path:
    """One row per driver, 1 h before END: drivers in BAD violate an expectation, 7 has no trips."""
    rows = pa.table(
        {
            "driver_id": pa.array(DRIVERS, pa.int64()),
            "ts": pa.array([END - timedelta(hours=1)] * len(DRIVERS), pa.timestamp("us", tz="UTC")),
            "conv_rate": pa.array([CONV.get(d, d / 20) for d in DRIVERS], pa.float64()),
            "city": pa.array([CITY.get(d, "paris" if d % 2 else "lyon") for d in DRIVERS], pa.string()),
            "trips": pa.array([None if d == 7 else d for d in DRIVERS], pa.int64()),
        }
    )
    return write_parquet(rows, tmp_path / "src" / "quality.parquet")


@pytest.fixture
def client(tmp_path: Path, online: dict[str, object] | None) -> Iterator[pv.Client]:
    with make_client(tmp_path / "project", online=online, project=f"p{tmp_path.name[-12:]}") as c:
        yield c


def _online(client: pv.Client) -> dict[int, object]:
    got = client.get_online_features(["driver_quality:conv_rate"], [{"driver_id": d} for d in DRIVERS]).to_dict()
    return dict(zip(DRIVERS, got["driver_quality__conv_rate"], strict=True))


def _by_expectation(report: ValidationReport) -> dict[tuple[str | None, str], int]:
    return {(v.feature, v.expectation): v.count for v in report.violations}


EXPECTED = {
    ("conv_rate", "not_null"): 1,
    ("conv_rate", "between(0, 1)"): 1,
    ("city", "one_of('paris', 'lyon')"): 2,
    ("city", "matches('[a-z]+')"): 1,
}


def test_fail_writes_nothing_and_names_each_violation(client: pv.Client, source: Path) -> None:
    client.apply([DRIVER, _table(source)])  # the table's policy defaults to fail
    job = client.start_offline_to_online_ingestion("driver_quality", start=START, end=END)
    with pytest.raises(ExpectationError, match="nothing written") as info:
        job.wait()
    assert isinstance(info.value, pv.DataError)
    report = info.value.report
    assert job.validation is report
    assert (report.policy, report.rows_checked, report.passed) == ("fail", 10, False)
    assert _by_expectation(report) == EXPECTED
    examples = {(v.feature, v.expectation): v.examples for v in report.violations}
    assert examples[("conv_rate", "between(0, 1)")] == [{"driver_id": 4, "conv_rate": 1.5}]
    assert examples[("city", "matches('[a-z]+')")] == [{"driver_id": 6, "city": "Paris"}]
    assert "city: one_of('paris', 'lyon') violated by 2 row(s)" in str(info.value)
    assert job.rows_written == 0
    assert set(_online(client).values()) == {None}
    record = client.get_job(job.id)
    assert record.status.value == JobStatus.FAILED.value
    assert record.validation is not None
    assert record.validation.to_dict() == report.to_dict()


def test_skip_writes_only_the_valid_rows(client: pv.Client, source: Path) -> None:
    client.apply([DRIVER, _table(source, validation_policy="skip")])
    job = client.start_offline_to_online_ingestion("driver_quality", start=START, end=END).wait()
    report = job.validation
    assert report is not None
    assert (report.policy, report.rows_checked, report.rows_skipped) == ("skip", 10, len(BAD))
    assert _by_expectation(report) == EXPECTED
    assert job.rows_written == 10 - len(BAD)
    written = _online(client)
    assert {d for d, v in written.items() if v is None} == BAD
    assert written[1] == 1 / 20
    recorded = client.get_job(job.id).validation
    assert recorded is not None and recorded.to_dict() == report.to_dict()


def test_warn_writes_everything_and_reports(client: pv.Client, source: Path) -> None:
    client.apply([DRIVER, _table(source, validation_policy="skip")])
    job = client.start_offline_to_online_ingestion(
        "driver_quality", start=START, end=END, validation_policy="warn"
    ).wait()
    assert job.validation is not None
    assert (job.validation.policy, job.validation.rows_skipped) == ("warn", 0)
    assert _by_expectation(job.validation) == EXPECTED
    assert job.rows_written == 10
    assert _online(client)[4] == 1.5


def test_a_clean_job_passes(client: pv.Client, source: Path) -> None:
    features = [pv.Feature("conv_rate", pv.ValueType.DOUBLE, expect=[pv.expect.between(min=0)])]
    client.apply([DRIVER, _table(source, features=features)])
    job = client.start_offline_to_online_ingestion("driver_quality", start=START, end=END).wait()
    assert job.validation is not None and job.validation.passed
    assert job.rows_written == 10
    assert "every expectation met" in str(job.validation)


def test_job_wide_expectations(client: pv.Client, source: Path) -> None:
    trips = [pv.expect.max_null_fraction(0.05)]  # 1 null in 10 rows
    table = _table(
        source,
        features=_features(trips=trips),
        expect=[pv.expect.row_count_between(max=5)],
        validation_policy="skip",
    )
    client.apply([DRIVER, table])
    job = client.start_offline_to_online_ingestion("driver_quality", start=START, end=END)
    with pytest.raises(ExpectationError) as info:  # skipping rows cannot repair a job-wide violation
        job.wait()
    found = _by_expectation(info.value.report)
    assert found[("trips", "max_null_fraction(0.05): 1/10 null")] == 1
    assert found[(None, "row_count_between(None, 5): 10 rows")] == 10
    assert set(_online(client).values()) == {None}
    warned = client.start_offline_to_online_ingestion(
        "driver_quality", start=START, end=END, validation_policy="warn"
    ).wait()
    assert warned.rows_written == 10
    assert warned.validation is not None and len(warned.validation.violations) == len(EXPECTED) + 2


def test_a_bad_policy_is_refused_before_the_job(client: pv.Client, source: Path) -> None:
    client.apply([DRIVER, _table(source)])
    with pytest.raises(pv.DataError, match=r"validation_policy 'lenient' is not one of \['fail', 'skip', 'warn'\]"):
        client.start_offline_to_online_ingestion("driver_quality", start=START, end=END, validation_policy="lenient")
    assert client.list_jobs(include_finished=True) == []


def test_a_training_set_is_validated_against_the_same_expectations(client: pv.Client, source: Path) -> None:
    client.apply([DRIVER, _table(source)])
    entity_rows = pa.table(
        {
            "driver_id": pa.array([*DRIVERS, 99], pa.int64()),  # 99 has no value: not_null flags it
            "event_timestamp": pa.array([END] * (len(DRIVERS) + 1), pa.timestamp("us", tz="UTC")),
        }
    )
    report = client.get_historical_features(["driver_quality:conv_rate", "driver_quality:city"], entity_rows).validate()
    assert (report.policy, report.rows_checked) == ("report", 11)
    found = {(v.feature, v.expectation): v.count for v in report.violations}
    assert found == {
        ("driver_quality__conv_rate", "not_null"): 2,
        ("driver_quality__conv_rate", "between(0, 1)"): 1,
        ("driver_quality__city", "one_of('paris', 'lyon')"): 2,
        ("driver_quality__city", "matches('[a-z]+')"): 1,
    }
    between = next(v for v in report.violations if v.expectation == "between(0, 1)")
    assert between.examples == [{"driver_id": 4, "driver_quality__conv_rate": 1.5}]
