"""``provender ui``: the feature discovery UI over the local registry, read-only."""

from __future__ import annotations

import click

from provender.cli.state import CliState
from provender.config import load_settings
from provender.errors import MissingExtraError


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8888, show_default=True, help="HTTP port.")
@click.pass_obj
def ui(state: CliState, host: str, port: int) -> None:
    """Browse this folder's registry in a browser (read-only) until Ctrl-C.

    Projects, search, feature tables (with their code and how to read them), freshness (from
    the job records and this folder's online store) and jobs, history and lineage
    (docs/ui.md). With a core service, open its own address instead: it serves the same UI at /.

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
    runtime = Runtime(settings)
    run(runtime.open_registry(), host=host, port=port, open_online=runtime.open_online_store)
