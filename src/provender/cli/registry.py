"""``provender entities|tables|projects|history``: read and manage the registry."""

from __future__ import annotations

import click

from provender.cli.render import echo_json, echo_table, format_duration, plural
from provender.cli.state import CliState
from provender.definitions import DeltaSource, FeatureTable, FileSource, OnDemandFeatures, SqlSource
from provender.registry import codec
from provender.registry.store import DEFAULT_HISTORY_LIMIT, ItemAction, RegistryChangeRecord

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
    """List the project's feature tables (and on-demand features)."""
    client = state.client()
    found = client.list_feature_tables()
    on_demand = client.list_on_demand_features()
    if as_json:
        definitions: list[FeatureTable | OnDemandFeatures] = [*found, *on_demand]
        echo_json([codec.to_dict(d)["spec"] for d in definitions])
        return
    echo_table(
        ["NAME", "ENTITIES", "FEATURES", "MAX_AGE", "SOURCE"],
        [
            (
                t.name,
                ",".join(t.entities),
                len(t.features),
                format_duration(t.max_age) if t.max_age else "-",
                _source(t),
            )
            for t in found
        ],
    )
    if on_demand:
        click.echo("On-demand features:")
        echo_table(
            ["NAME", "INPUTS", "FEATURES", "FUNCTION"],
            [(o.name, ",".join(o.inputs) or "-", len(o.features), o.function) for o in on_demand],
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
    """Show one feature table (entities, features, sources, max_age, labels) or on-demand features."""
    client = state.client()
    if name in {o.name for o in client.list_on_demand_features()}:
        _describe_on_demand(client.get_on_demand_features(name), as_json=as_json)
        return
    table = client.get_feature_table(name)
    if as_json:
        echo_json(codec.to_dict(table)["spec"])
        return
    click.echo(f"Feature table: {table.name}")
    click.echo(f"  entities:  {', '.join(table.entities)}")
    click.echo(f"  max_age:   {format_duration(table.max_age) if table.max_age else 'none (values never expire)'}")
    if table.batch_source:
        source = table.batch_source
        click.echo(
            f"  batch:     {source.path} ({_source_kind(source)}), "
            f"event time {source.event_timestamp_column!r}"
            + (f", created {source.created_timestamp_column!r}" if source.created_timestamp_column else "")
            + (
                f", partitions {source.date_partition_column!r}"
                if isinstance(source, FileSource) and source.date_partition_column
                else ""
            )
        )
    if isinstance(table.batch_source, SqlSource):
        click.echo(f"  query:     {' '.join(table.batch_source.query.split())}")
    if table.stream_source:
        stream = table.stream_source
        click.echo(
            f"  stream:    kafka topic {stream.topic!r} on {stream.bootstrap_servers} "
            f"({type(stream.message_format).__name__})"
        )
    if table.labels:
        click.echo(f"  labels:    {', '.join(f'{k}={v}' for k, v in table.labels.items())}")
    if table.expect or any(f.expect for f in table.features):
        expected = ", ".join(e.describe() for e in table.expect)
        click.echo(f"  validation: policy {table.validation_policy}" + (f"; table: {expected}" if expected else ""))
    click.echo("  features:")
    if not any(f.expect for f in table.features):
        echo_table(["NAME", "TYPE", "DESCRIPTION"], [(f.name, f.value_type, f.description) for f in table.features])
    else:
        echo_table(
            ["NAME", "TYPE", "DESCRIPTION", "EXPECT"],
            [
                (f.name, f.value_type, f.description, ", ".join(e.describe() for e in f.expect) or "-")
                for f in table.features
            ],
        )
    if table.aggregations:
        click.echo("  aggregations (events with T - window < event_timestamp <= T):")
        echo_table(
            ["NAME", "FUNCTION", "COLUMN", "WINDOW"],
            [(a.name, a.function, a.column, format_duration(a.window)) for a in table.aggregations],
        )


def _describe_on_demand(odf: OnDemandFeatures, *, as_json: bool) -> None:
    if as_json:
        echo_json(codec.to_dict(odf)["spec"])
        return
    click.echo(f"On-demand features: {odf.name}")
    click.echo(f"  function:  {odf.function} (mode {odf.mode})")
    click.echo(
        f"  applied:   {odf.function_version or 'not from an installed distribution'}, source digest "
        f"{odf.function_digest or 'unknown'}"
    )
    click.echo(f"  inputs:    {', '.join(odf.inputs) or '-'}")
    request = ", ".join(f"{name} ({value_type})" for name, value_type in odf.request_schema.items())
    click.echo(f"  request:   {request or '-'}")
    if odf.labels:
        click.echo(f"  labels:    {', '.join(f'{k}={v}' for k, v in odf.labels.items())}")
    click.echo("  features:")
    echo_table(["NAME", "TYPE", "DESCRIPTION"], [(f.name, f.value_type, f.description) for f in odf.features])


def _source(table: FeatureTable) -> str:
    if table.batch_source:
        return table.batch_source.path
    return f"kafka:{table.stream_source.topic}" if table.stream_source else "-"


@click.group()
def projects() -> None:
    """Projects (namespaces)."""


@projects.command("list")
@json_option
@click.option("--archived", "include_archived", is_flag=True, help="Include archived projects.")
@click.pass_obj
def list_projects(state: CliState, as_json: bool, include_archived: bool) -> None:
    """List projects with their registry version and last change."""
    found = state.client(existing_project=False).describe_projects(include_archived=include_archived)
    if as_json:
        rows = [{"name": p.name, "version": p.version, "updated_at": p.updated_at} for p in found]
        if include_archived:
            rows = [{**row, "archived_at": p.archived_at} for row, p in zip(rows, found, strict=True)]
        echo_json(rows)
    elif include_archived:
        echo_table(
            ["NAME", "VERSION", "UPDATED_AT", "ARCHIVED_AT"],
            [(p.name, p.version, p.updated_at or "-", p.archived_at or "-") for p in found],
        )
    else:
        echo_table(["NAME", "VERSION", "UPDATED_AT"], [(p.name, p.version, p.updated_at or "-") for p in found])


@projects.command("archive")
@click.argument("name")
@yes_option
@click.pass_obj
def archive_project(state: CliState, name: str, yes: bool) -> None:
    """Archive project NAME: hidden from listings and read-only; its definitions are kept.

    \b
    Example:
      provender projects archive old_experiments --yes
    """
    client = state.client()
    if not yes:
        click.confirm(f"Archive project {name!r} (it becomes read-only and hidden)?", abort=True)
    info = client.archive_project(name)
    click.echo(f"Archived project {name!r} at version {info.version}; its definitions are kept.")


@click.command()
@click.option("--limit", "-n", type=click.IntRange(min=1), default=DEFAULT_HISTORY_LIMIT, show_default=True)
@click.option("--all-projects", is_flag=True, help="Show the changes of every project.")
@click.option("--no-diff", "no_diff", is_flag=True, help="Only the summary line of each change, not its diff lines.")
@json_option
@click.pass_obj
def history(state: CliState, limit: int, all_projects: bool, no_diff: bool, as_json: bool) -> None:
    """Show the registry's changes, newest first: who, when, versions and what changed.

    Under each change, every changed definition's readable diff, a line per difference with the
    values (``labels: {team='growth'} -> {team='pricing'}``, ``+ feature speed (DOUBLE)``);
    ``--no-diff`` prints the summary lines alone.

    \b
    Example:
      provender history --limit 20
      provender history --no-diff
    """
    records = state.client().registry_history(limit, all_projects=all_projects)
    if as_json:
        echo_json([_record_json(r) for r in records])
        return
    headers = ["VERSION", "CHANGED_AT", "ACTOR", "WHAT"]
    rows: list[tuple[object, ...]] = [
        (f"{r.version_before}->{r.version_after}", r.changed_at.isoformat(timespec="seconds"), r.actor, _what(r))
        for r in records
    ]
    if all_projects:
        headers.insert(0, "PROJECT")
        rows = [(r.project, *row) for r, row in zip(records, rows, strict=True)]
    echo_table(headers, rows, details=None if no_diff else [_diff_lines(r) for r in records])


_DIFF_COLOURS = {"+": "green", "-": "red"}


def _diff_lines(record: RegistryChangeRecord) -> list[str]:
    """The readable diff of each changed definition of ``record``, indented under its summary row."""
    lines = []
    for item in record.items:
        if not item.diff:
            continue
        lines.append(f"    ~ {item.kind}:{item.name}")
        for line in item.diff:
            colour = _DIFF_COLOURS.get(line[:2].strip()) if line[1:2] == " " else None
            lines.append(click.style(f"        {line}", fg=colour) if colour else f"        {line}")
    return lines


def _what(record: RegistryChangeRecord) -> str:
    if record.description and all(item.kind == "project" for item in record.items):
        return record.description  # e.g. "archive project fraud"
    parts = [f"{action.value} {', '.join(names)}" for action in ItemAction if (names := record.names(action))]
    return "; ".join(parts) or record.description or "-"


def _record_json(record: RegistryChangeRecord) -> dict[str, object]:
    return {
        "project": record.project,
        "version_before": record.version_before,
        "version_after": record.version_after,
        "changed_at": record.changed_at.isoformat(),
        "actor": record.actor,
        "description": record.description,
        "items": [item.to_dict() for item in record.items],
    }


def _source_kind(source: FileSource | DeltaSource | SqlSource) -> str:
    if isinstance(source, SqlSource):
        return f"SQL ({source.dialect}) over " + ", ".join(f"{n}={s.path}" for n, s in source.sources.items())
    if isinstance(source, DeltaSource):
        pin = source.version if source.version is not None else source.timestamp
        return "Delta" + ("" if pin is None else f" at {pin}")
    return type(source.file_format).__name__
