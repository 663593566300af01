"""``provender stats show|compare|serving``: feature statistics (engine, job, or serving log) and drift."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import datetime
from pathlib import Path

import click
import pyarrow as pa

from provender.cli.ingest import parse_time
from provender.cli.render import echo_json
from provender.cli.state import CliState
from provender.definitions import FeatureTable, ValueType
from provender.errors import DataError
from provender.offline.duckdb import StatisticsCollector
from provender.offline.plan import table_join
from provender.offline.statistics import StatisticsPlan, TableStatistics
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


def served_rows(path: Path, table: FeatureTable, *, project: str) -> tuple[pa.Table, datetime, datetime]:
    """The feature values ``table`` served in the request log at ``path`` (one row per entity row answered).

    Returns the rows (one column per feature, typed as declared) and the first and last log times.
    """
    columns = {f.name: f"{table.name}__{f.name}" for f in table.features}
    values: dict[str, list[object]] = {name: [] for name in columns}
    times: list[datetime] = []
    if not path.is_file():
        raise DataError(f"no request log at {path}")
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except ValueError:
                raise DataError(f"{path}:{number} is not a JSON line of the request log") from None
            answer = (record.get("response") or {}).get("columns") or {}
            if record.get("project", project) != project or not any(c in answer for c in columns.values()):
                continue
            times.append(datetime.fromisoformat(record["time"]))
            rows = max(len(answer.get(c) or []) for c in columns.values())
            for name, column in columns.items():
                values[name].extend(answer.get(column) or [None] * rows)
    if not times:
        raise DataError(
            f"the request log {path} holds no answer with features of {table.name!r} in project {project!r}"
        )
    arrays = []
    for feature in table.features:
        items = values[feature.name]
        if feature.value_type.element is ValueType.BYTES:
            items = [None if v is None else _unbase64(v) for v in items]
        elif feature.value_type.element is ValueType.UNIX_TIMESTAMP:  # RFC 3339 text in the log
            items = [None if v is None else _parse_times(v) for v in items]
        arrays.append(pa.array(items, type=feature.value_type.to_arrow()))
    return pa.Table.from_arrays(arrays, names=list(columns)), min(times), max(times)


def _parse_times(value: object) -> object:
    if isinstance(value, list):
        return [None if v is None else datetime.fromisoformat(v) for v in value]
    return datetime.fromisoformat(str(value))


def _unbase64(value: object) -> object:
    if isinstance(value, list):
        return [None if v is None else base64.b64decode(v) for v in value]
    return base64.b64decode(str(value))


@stats.command("serving")
@click.option("--log", "log_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--table", "-t", "table", required=True, help="The feature table whose served values to describe.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_obj
def serving(state: CliState, log_path: Path, table: str, as_json: bool) -> None:
    """Statistics of the feature values serving answered, from its sampled request log.

    Compare them with a training window (training/serving skew) with ``stats compare`` in Python:
    ``client.compare_statistics(training, served)``.

    \b
    Example:
      provender stats serving --log /var/log/provender/requests.jsonl -t driver_statistics
    """
    client = state.client()
    definition = client.get_feature_table(table)
    rows, first, last = served_rows(log_path, definition, project=client.project)
    entities = {e.name: e for e in client.list_entities()}
    join = table_join(definition, definition.features, entities)
    collector = StatisticsCollector(StatisticsPlan(join=join, start=first, end=last))
    try:
        collector.add(rows)
        result = dataclasses.replace(collector.finish(), notes=(f"values served, from the request log {log_path}",))
    finally:
        collector.close()
    if as_json:
        echo_json(result.to_dict())
        return
    click.echo(repr(result))
