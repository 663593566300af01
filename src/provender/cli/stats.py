"""``provender stats show``: feature statistics, computed by the offline engine or recorded by a job."""

from __future__ import annotations

import click

from provender.cli.ingest import parse_time
from provender.cli.render import echo_json
from provender.cli.state import CliState
from provender.errors import DataError
from provender.offline.statistics import TableStatistics
from provender.registry.jobs import JobKind


@click.group()
def stats() -> None:
    """Feature statistics."""


@stats.command("show")
@click.option("--table", "-t", "table", required=True, help="The feature table.")
@click.option("--job", "job_id", default=None, help="Show the statistics this ingestion job recorded.")
@click.option("--start", default=None, help="Compute over rows from this time, inclusive (ISO-8601 or now-1d).")
@click.option("--end", default=None, help="... to this time, exclusive.")
@click.option("--feature", "features", multiple=True, help="Only this feature (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_obj
def show(
    state: CliState,
    table: str,
    job_id: str | None,
    start: str | None,
    end: str | None,
    features: tuple[str, ...],
    as_json: bool,
) -> None:
    """Show a feature table's statistics.

    With --start and --end the offline engine computes them over the source rows of that window;
    with --job they are those the ingestion job recorded of what it wrote; with neither, those of
    the table's latest ingestion job that recorded some.

    \b
    Examples:
      provender stats show --table driver_statistics --start now-7d --end now
      provender stats show --table driver_statistics --job job-3f2a9c0d1e4b5a6f
    """
    client = state.client()
    chosen = list(features) or None
    if start is not None or end is not None:
        if start is None or end is None or job_id is not None:
            raise DataError("give --start and --end together, without --job")
        result = client.get_statistics(table, start=parse_time(start), end=parse_time(end), features=chosen)
    else:
        if job_id is None:
            recorded = [
                j
                for j in client.list_jobs(table, include_finished=True)
                if j.record.kind is JobKind.OFFLINE_TO_ONLINE and j.record.statistics is not None
            ]
            if not recorded:
                raise DataError(
                    f"no ingestion job of {table!r} recorded statistics; give --start and --end to compute them"
                )
            job_id = recorded[0].id
        result = client.get_statistics(table, from_job=job_id, features=chosen)
    if as_json:
        echo_json(result.to_dict())
        return
    click.echo(repr(result))


def _statistics(state: CliState, table: str, which: str) -> TableStatistics:
    """``which`` is a job id, or a window ``START/END``."""
    client = state.client()
    if "/" in which:
        start, end = which.split("/", 1)
        return client.get_statistics(table, start=parse_time(start), end=parse_time(end))
    return client.get_statistics(table, from_job=which)


@stats.command("compare")
@click.option("--table", "-t", "table", required=True, help="The feature table.")
@click.option("--baseline", required=True, help="A job id, or a window START/END (e.g. 2026-01-01/2026-02-01).")
@click.option("--current", required=True, help="A job id, or a window START/END (e.g. now-1d/now).")
@click.option("--psi-threshold", default=0.2, show_default=True, help="PSI at which a feature is drifted.")
@click.option("--js-threshold", default=0.1, show_default=True, help="JS distance at which a feature is drifted.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_obj
def compare_command(
    state: CliState,
    table: str,
    baseline: str,
    current: str,
    psi_threshold: float,
    js_threshold: float,
    as_json: bool,
) -> None:
    """Compare two statistics of a table per feature (PSI, Jensen-Shannon distance); exit 3 on drift.

    \b
    Example:
      provender stats compare -t driver_statistics --baseline 2026-01-01/2026-02-01 --current now-1d/now
    """
    report = state.client().compare_statistics(
        _statistics(state, table, baseline),
        _statistics(state, table, current),
        psi_threshold=psi_threshold,
        js_threshold=js_threshold,
    )
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(repr(report))
    if report.drifted:
        raise SystemExit(3)
