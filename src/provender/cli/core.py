"""``provender core``: the core service (the registry over HTTP/JSON, auth, the job service)."""

from __future__ import annotations

import logging

import click

from provender.cli.state import CliState
from provender.config import load_settings
from provender.errors import MissingExtraError


@click.command()
@click.option("--host", default=None, help="Interface to listen on (default: core.host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="HTTP port (default: core.port, 6565).")
@click.pass_obj
def core(state: CliState, host: str | None, port: int | None) -> None:
    """Serve the registry over HTTP/JSON until SIGTERM or Ctrl-C.

    The registry is the 'registry' setting (sqlite:/// for one node, postgresql:// for
    replicas). Clients use it with `registry: http://host:6565` in provender.yaml or
    pv.Client(core_url=...). Endpoints under /v1/ (see /v1/openapi.json), /v1/health,
    /v1/ready, /metrics. Settings: the core: and jobs: sections (docs/core.md).

    \b
    Example:
      provender core --port 6565
      curl -s localhost:6565/v1/projects
    """
    try:
        from provender.asgi import configure_logging
        from provender.core.server import run
    except ImportError as exc:
        raise MissingExtraError("core", extra="serving", missing=exc.name or "?") from exc

    overrides = {key: value for key, value in {"host": host, "port": port}.items() if value is not None}
    settings = load_settings(state.config, overrides={"project": state.project, "core": overrides})
    configure_logging(logging.DEBUG if state.debug else logging.INFO)
    run(settings)
