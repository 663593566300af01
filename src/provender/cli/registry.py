"""``provender entities|tables|projects``: read the registry."""

from __future__ import annotations

import click

from provender.cli.render import echo_json, echo_table, plural
from provender.cli.state import CliState
from provender.definitions import FeatureTable
from provender.registry import codec

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


@click.group()
def entities() -> None:
    """Registered entities."""


@entities.command("list")
@json_option
@click.pass_obj
def list_entities(state: CliState, as_json: bool) -> None:
    """List the project's entities."""
    found = state.client().list_entities()
    if as_json:
        echo_json([codec.to_dict(e)["spec"] for e in found])
    else:
        echo_table(["NAME", "TYPE", "DESCRIPTION"], [(e.name, e.value_type, e.description) for e in found])


yes_option = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")


@entities.command("delete")
@click.argument("name")
@yes_option
@click.pass_obj
def delete_entity(state: CliState, name: str, yes: bool) -> None:
    """Delete entity NAME from the registry (refused while a feature table uses it).

    \b
    Example:
      provender entities delete driver_id --yes
    """
    client = state.client()
    client.get_entity(name)  # not found: an error with a hint, before asking
    if not yes:
        click.confirm(f"Delete entity {name!r} from project {client.project!r}?", abort=True)
    client.delete_entity(name)
    click.echo(f"Deleted entity {name!r}. Registry version {client.registry_version()}.")


@click.group()
def tables() -> None:
    """Registered feature tables."""


@tables.command("list")
@json_option
@click.pass_obj
def list_tables(state: CliState, as_json: bool) -> None:
    """List the project's feature tables."""
    found = state.client().list_feature_tables()
    if as_json:
        echo_json([codec.to_dict(t)["spec"] for t in found])
        return
    echo_table(
        ["NAME", "ENTITIES", "FEATURES", "MAX_AGE", "SOURCE"],
        [(t.name, ",".join(t.entities), len(t.features), t.max_age or "-", _source(t)) for t in found],
    )


@tables.command("delete")
@click.argument("name")
@yes_option
@click.pass_obj
def delete_table(state: CliState, name: str, yes: bool) -> None:
    """Delete feature table NAME from the registry, and its rows from the online store.

    The batch source's files are not touched; apply the definition again to re-create it.

    \b
    Example:
      provender tables delete driver_statistics --yes
    """
    client = state.client()
    client.get_feature_table(name)  # not found: an error with a hint, before asking
    if not yes:
        click.confirm(f"Delete feature table {name!r} of project {client.project!r} and its online rows?", abort=True)
    rows = client.delete_feature_table(name)
    click.echo(
        f"Deleted feature table {name!r} and {plural(rows, 'online row')}. "
        f"Registry version {client.registry_version()}."
    )


@tables.command("describe")
@click.argument("name")
@json_option
@click.pass_obj
def describe_table(state: CliState, name: str, as_json: bool) -> None:
    """Show one feature table: entities, features, sources, max_age, labels."""
    table = state.client().get_feature_table(name)
    if as_json:
        echo_json(codec.to_dict(table)["spec"])
        return
    click.echo(f"Feature table: {table.name}")
    click.echo(f"  entities:  {', '.join(table.entities)}")
    click.echo(f"  max_age:   {table.max_age or 'none (values never expire)'}")
    if table.batch_source:
        source = table.batch_source
        click.echo(
            f"  batch:     {source.path} ({type(source.file_format).__name__}), "
            f"event time {source.event_timestamp_column!r}"
            + (f", created {source.created_timestamp_column!r}" if source.created_timestamp_column else "")
            + (f", partitions {source.date_partition_column!r}" if source.date_partition_column else "")
        )
    if table.stream_source:
        stream = table.stream_source
        click.echo(
            f"  stream:    kafka topic {stream.topic!r} on {stream.bootstrap_servers} "
            f"({type(stream.message_format).__name__})"
        )
    if table.labels:
        click.echo(f"  labels:    {', '.join(f'{k}={v}' for k, v in table.labels.items())}")
    click.echo("  features:")
    echo_table(["NAME", "TYPE", "DESCRIPTION"], [(f.name, f.value_type, f.description) for f in table.features])


def _source(table: FeatureTable) -> str:
    if table.batch_source:
        return table.batch_source.path
    return f"kafka:{table.stream_source.topic}" if table.stream_source else "-"


@click.group()
def projects() -> None:
    """Projects (namespaces)."""


@projects.command("list")
@json_option
@click.pass_obj
def list_projects(state: CliState, as_json: bool) -> None:
    """List projects with their registry version and last change."""
    found = state.client().describe_projects()
    if as_json:
        echo_json([{"name": p.name, "version": p.version, "updated_at": p.updated_at} for p in found])
    else:
        echo_table(["NAME", "VERSION", "UPDATED_AT"], [(p.name, p.version, p.updated_at or "-") for p in found])
