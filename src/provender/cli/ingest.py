"""``provender ingest``: load the latest feature values from the batch source into the online store."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import click

from provender.cli.progress import Progress
from provender.cli.render import plural
from provender.cli.state import CliState
from provender.ingestion.batch import IngestionJob

_RELATIVE = re.compile(r"now\s*-\s*(\d+)\s*([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(value: str) -> datetime:
    """Parse an ISO-8601 time; a time without a zone is UTC.

    ``now`` and ``now-<N><unit>`` (unit ``s``, ``m``, ``h`` or ``d``: ``now-2h``) are accepted too,
    so a scheduled job can name a window relative to when it runs.
    """
    text = value.strip().lower()
    if text == "now":
        return datetime.now(UTC)
    relative = _RELATIVE.fullmatch(text)
    if relative:
        amount, unit = relative.groups()
        return datetime.now(UTC) - timedelta(seconds=int(amount) * _UNIT_SECONDS[unit])
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO-8601 time like 2026-11-20 or 2026-11-20T12:00, nor 'now' or 'now-2h'"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@click.command()
@click.option("--table", "-t", "table", required=True, help="Feature table to ingest.")
@click.option(
    "--validation-policy",
    type=click.Choice(["fail", "skip", "warn"]),
    default=None,
    help="Override the table's policy for rows violating its expectations.",
)
@click.option(
    "--start", "start", required=True, help="Window start, inclusive (ISO-8601, UTC if no zone; or now-2h, now-1d)."
)
@click.option("--end", "end", default="now", show_default=True, help="Window end, exclusive (ISO-8601 or 'now').")
@click.option(
    "--incremental",
    is_flag=True,
    help="Delta sources: read only what was committed since the table's last succeeded ingestion.",
)
@click.pass_obj
def ingest(state: CliState, table: str, validation_policy: str | None, start: str, end: str, incremental: bool) -> None:
    """Write, per entity key, the latest row with start <= event_timestamp < end to the online store.

    Stored values that are newer are never replaced, so jobs can be re-run and overlap.

    \b
    Example:
      provender ingest --table driver_statistics --start now-7d --end now
      provender ingest --table driver_statistics --start 2026-11-20T00:00 --end 2026-11-27T00:00
      provender ingest --table driver_statistics --start now-30d --incremental
    """
    client = state.client()
    started = parse_time(start)
    ended = parse_time(end)
    job = client.start_offline_to_online_ingestion(
        table, start=started, end=ended, validation_policy=validation_policy, incremental=incremental
    )

    began = time.perf_counter()

    def status() -> str:
        rate = job.rows_written / max(time.perf_counter() - began, 1e-9)
        return f"ingesting {table}: {plural(job.rows_written, 'entity key')} written ({rate:,.0f} keys/s)"

    with Progress(status) as progress:
        try:
            job.wait()
        finally:
            if isinstance(job, IngestionJob) and job.validation is not None and not job.validation.passed:
                click.echo(str(job.validation), err=True)
    seconds = progress.elapsed_seconds
    window = f"{started.astimezone(UTC):%Y-%m-%d %H:%M} <= event time < {ended.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    source_rows = job.source_rows if isinstance(job, IngestionJob) else None
    if source_rows is None:
        chosen = f"the latest row of each key with {window}"
    else:
        rate = source_rows / max(seconds, 1e-9)
        chosen = f"the latest of {plural(source_rows, 'source row')} with {window}, {rate:,.0f} source rows/s"
    click.echo(f"Ingested {table}: {plural(job.rows_written, 'entity key')} written ({chosen}) in {seconds:.2f} s.")
