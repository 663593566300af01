"""``provender retrieve``: build a point-in-time correct training set."""

from __future__ import annotations

import click

from provender.cli.progress import Progress
from provender.cli.render import plural
from provender.cli.state import CliState


def split_refs(values: tuple[str, ...]) -> list[str]:
    """Split repeated and comma-separated ``--features`` values into refs."""
    return [ref for value in values for ref in value.replace(",", " ").split()]


@click.command()
@click.option(
    "--features",
    "-f",
    "features",
    multiple=True,
    required=True,
    help="Feature refs 'table:feature' or 'table' (repeat, or separate with commas).",
)
@click.option(
    "--entities",
    "-e",
    "entities",
    required=True,
    help="Entity rows: a Parquet file, directory or glob with the entity columns and event_timestamp.",
)
@click.option(
    "--out",
    "-o",
    "out",
    required=True,
    help="Parquet file to write the training set to (a path, or an s3:// or gs:// object).",
)
@click.pass_obj
def retrieve(state: CliState, features: tuple[str, ...], entities: str, out: str) -> None:
    """Join entity rows with feature values as of each row's event_timestamp; write Parquet.

    \b
    Example:
      provender retrieve -f driver_statistics:conv_rate -f driver_statistics:acc_rate \\
          --entities entity_rows.parquet --out training.parquet
    """
    client = state.client()
    with Progress(lambda: "retrieving") as progress:
        job = client.get_historical_features(split_refs(features), entities)
        rows = job.to_parquet(out)
    click.echo(
        f"Wrote {plural(rows, 'row')} x {plural(len(job.output_columns), 'feature')} to {out} "
        f"in {progress.elapsed_seconds:.2f} s."
    )
