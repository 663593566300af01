"""``provender jobs list|show|cancel``: the jobs recorded in the registry, wherever they run."""

from __future__ import annotations

import click

from provender.cli.render import echo_json, echo_table
from provender.cli.state import CliState
from provender.client.jobs import Job
from provender.registry import wire


@click.group()
def jobs() -> None:
    """Ingestion and retrieval jobs recorded in the registry."""


def _row(job: Job) -> tuple[object, ...]:
    r = job.record
    started = r.started_at.isoformat(timespec="seconds") if r.started_at else "-"
    return (r.id, r.kind.value, r.table or "-", r.status.value, r.rows, started, r.runner)


@jobs.command("list")
@click.option("--table", default=None, help="Only the jobs of this feature table.")
@click.option("--all", "include_finished", is_flag=True, help="Also the finished ones (SUCCEEDED, FAILED, CANCELLED).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def list_jobs(state: CliState, table: str | None, include_finished: bool, as_json: bool) -> None:
    """List the project's jobs, newest first (unfinished ones unless --all).

    \b
    Example:
      provender jobs list --all --table driver_statistics
    """
    found = state.client().list_jobs(table, include_finished=include_finished)
    if as_json:
        echo_json([wire.job_to_dict(job.record) for job in found])
        return
    echo_table(["ID", "KIND", "TABLE", "STATUS", "ROWS", "STARTED_AT", "RUNNER"], [_row(job) for job in found])


@jobs.command("show")
@click.argument("job_id")
@click.pass_obj
def show_job(state: CliState, job_id: str) -> None:
    """Show everything recorded about job JOB_ID (as JSON).

    \b
    Example:
      provender jobs show job-3f2a9c0d1e4b5a6f
    """
    echo_json(wire.job_to_dict(state.client().get_job(job_id).record))


@jobs.command("lineage")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the recorded JSON instead of a table.")
@click.pass_obj
def job_lineage(state: CliState, job_id: str, as_json: bool) -> None:
    """Show what job JOB_ID read: per feature table its files (size, modified) and Delta version.

    \b
    Example:
      provender jobs lineage job-3f2a9c0d1e4b5a6f
    """
    job = state.client().get_job(job_id)
    if as_json:
        echo_json(job.record.lineage or {})
        return
    rows = [
        (
            read.table,
            "-" if read.delta_version is None else read.delta_version,
            "-" if read.changes_since is None else read.changes_since,
            f.path,
            "-" if f.size is None else f.size,
            f.modified.isoformat(timespec="seconds") if f.modified else "-",
        )
        for read in job.lineage()
        for f in read.files
    ]
    if not rows and not job.lineage():
        click.echo(f"Job {job_id} recorded no lineage.")
        return
    echo_table(["TABLE", "DELTA_VERSION", "SINCE", "FILE", "SIZE", "MODIFIED"], rows)
    for read in job.lineage():
        if read.note:
            click.echo(f"{read.table}: {read.note}")


@jobs.command("cancel")
@click.argument("job_id")
@click.pass_obj
def cancel_job(state: CliState, job_id: str) -> None:
    """Cancel job JOB_ID: a pending job ends at once, a running one after the batch it is writing.

    \b
    Example:
      provender jobs cancel job-3f2a9c0d1e4b5a6f
    """
    job = state.client().get_job(job_id)
    job.cancel()
    if job.is_done:
        click.echo(f"Job {job_id} is {job.status}.")
    else:
        click.echo(f"Asked job {job_id} to stop; it ends CANCELLED after the batch it is writing.")
