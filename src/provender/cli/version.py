"""``provender version`` and ``provender --version``: the package, its libraries and the servers it reaches."""

from __future__ import annotations

import json

import click

from provender.cli.state import CliState
from provender.versions import render_text, version_report


@click.command("version")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def version(state: CliState, as_json: bool) -> None:
    """Show Provender's version, its engines' and libraries', and the configured servers'.

    Library versions are read from the installed packages (Spark's without starting a JVM);
    the online store's server (Redis) is asked for its version when the settings select one.
    """
    report = version_report(state.config, project=state.project)
    click.echo(json.dumps(report, indent=2) if as_json else render_text(report))


def print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """The eager ``--version`` option: the same report as ``provender version``, then exit."""
    if not value or ctx.resilient_parsing:
        return
    click.echo(render_text(version_report()))
    ctx.exit()
