"""The ``provender`` command: global options, error handling, and the command groups.

Commands parse options, call the :class:`~provender.Client`, and render. Errors go to stderr
with a non-zero exit code; tracebacks only with ``--debug``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from provender.cli.state import CliState
from provender.cli.version import print_version as _print_version
from provender.errors import ProvenderError

log = logging.getLogger(__name__)


class _Group(click.Group):
    """A group that turns Provender errors into a one-line message and exit code 1."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ProvenderError as exc:
            if _debug(ctx):
                raise
            raise click.ClickException(str(exc)) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if _debug(ctx):
                raise
            raise click.ClickException(
                f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)"
            ) from None


def _debug(ctx: click.Context) -> bool:
    state = ctx.find_object(CliState)
    return bool(state and state.debug)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "-c",
    type=click.Path(path_type=Path),
    default=None,
    help="Path to provender.yaml (default: ./provender.yaml if present, else built-in defaults).",
)
@click.option("--project", "-p", default=None, help="Project to work in (default: the 'project' setting).")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the versions of Provender, its libraries and the configured servers, and exit.",
)
@click.pass_context
def cli(ctx: click.Context, config: Path | None, project: str | None, debug: bool) -> None:
    """Provender: define features once, train on point-in-time correct data, serve them online.

    \b
    Start here:
      provender init my_project && cd my_project
      python generate_data.py
      provender apply .
      provender tables list
    """
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = CliState(config=config, project=project, debug=debug)
    ctx.call_on_close(lambda: ctx.obj._client.close() if ctx.obj._client else None)


def _register_commands() -> None:
    from provender.cli import (
        apply,
        core,
        ingest,
        ingest_stream,
        init,
        jobs,
        online,
        registry,
        retrieve,
        serve,
        stats,
        ui,
        version,
    )

    cli.add_command(init.init)
    cli.add_command(apply.apply)
    cli.add_command(registry.entities)
    cli.add_command(registry.tables)
    cli.add_command(registry.projects)
    cli.add_command(registry.history)
    cli.add_command(retrieve.retrieve)
    cli.add_command(ingest.ingest)
    cli.add_command(ingest_stream.ingest_stream)
    cli.add_command(online.online)
    cli.add_command(serve.serve)
    cli.add_command(version.version)
    cli.add_command(core.core)
    cli.add_command(ui.ui)
    cli.add_command(jobs.jobs)
    cli.add_command(stats.stats)


_register_commands()


def main() -> None:
    """Run the ``provender`` command line."""
    cli(prog_name="provender")
