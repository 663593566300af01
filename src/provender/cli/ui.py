"""``provender ui``: the feature discovery UI over the local registry, read-only."""

from __future__ import annotations

import click

from provender.cli.state import CliState
from provender.config import load_settings
from provender.errors import MissingExtraError
from provender.registry.sqlite import SCHEMA_VERSION, path_from_url, stored_schema_version

SQLITE_PREFIX = "sqlite:///"


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8888, show_default=True, help="HTTP port.")
@click.pass_obj
def ui(state: CliState, host: str, port: int) -> None:
    """Browse this folder's registry in a browser (read-only) until Ctrl-C.

    Projects, search, feature tables (with their code and how to read them), freshness (from
    the job records and this folder's online store) and jobs, history and lineage
    (docs/ui.md). With a core service, open its own address instead: it serves the same UI at /.

    It creates nothing: with no registry file yet it says to apply first, and with no online
    store file yet the pages say "no online store data yet".

    \b
    Example:
      provender ui --port 8888      # then open http://127.0.0.1:8888/
    """
    try:
        from provender.ui.server import run
    except ImportError as exc:
        raise MissingExtraError("ui", extra="serving", missing=exc.name or "?") from exc
    from provender.runtime import Runtime

    settings = load_settings(state.config, overrides={"project": state.project})
    if settings.registry.startswith(SQLITE_PREFIX):
        path = path_from_url(settings.registry, base_dir=settings.base_dir)
        if not path.exists():  # opening it would create an empty registry file
            raise click.ClickException(
                f"no registry at {path} yet: run `provender apply` in this folder first "
                "(provender ui only reads, and creates no file)"
            )
        found = stored_schema_version(path)
        if found < SCHEMA_VERSION:  # opening it would upgrade it: a write
            raise click.ClickException(
                f"the registry at {path} was written by an older Provender (schema version {found}; this "
                f"one uses {SCHEMA_VERSION}), and provender ui only reads, so it does not upgrade it: run "
                "another provender command in this folder once (e.g. `provender tables list`, which "
                "upgrades it), then provender ui again"
            )
    runtime = Runtime(settings)
    run(runtime.open_registry(), host=host, port=port, open_online=runtime.open_existing_online_store)
