"""``provender serve``: the online serving service (HTTP and gRPC)."""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Mapping

import click

from provender.cli.state import CliState
from provender.config import load_settings
from provender.errors import MissingExtraError
from provender.runtime import Runtime


@click.command()
@click.option(
    "--host",
    default=None,
    help="Interface to listen on (default: serving.host, 127.0.0.1: this machine only; "
    "0.0.0.0 for every interface, e.g. in a container).",
)
@click.option("--http-port", type=click.IntRange(0, 65535), default=None, help="HTTP port (default: 6566).")
@click.option("--grpc-port", type=click.IntRange(0, 65535), default=None, help="gRPC port (default: 6567).")
@click.option("--no-grpc", is_flag=True, help="Serve HTTP only.")
@click.option(
    "--workers", type=click.IntRange(1, 64), default=None, help="Worker processes sharing the ports (default: 1)."
)
@click.pass_obj
def serve(
    state: CliState,
    host: str | None,
    http_port: int | None,
    grpc_port: int | None,
    no_grpc: bool,
    workers: int | None,
) -> None:
    """Serve online features over HTTP (JSON) and gRPC until SIGTERM or Ctrl-C.

    Every project of the registry is served (or those listed in serving.projects); registry
    changes are picked up within serving.registry_refresh_seconds. Endpoints: POST
    /v1/online-features, GET /v1/health, /v1/ready, /metrics, /v1/openapi.json; gRPC
    provender.serving.v1.ServingService and grpc.health.v1.Health. Settings: the serving:
    section of provender.yaml (docs/serving.md).

    \b
    Example:
      provender serve --http-port 6566 --grpc-port 6567 --workers 2
      curl -s localhost:6566/v1/online-features \\
        -d '{"features": ["driver_statistics:conv_rate"], "entities": {"driver_id": [1001]}}'
    """
    try:
        from provender.asgi import configure_logging
        from provender.serving.server import run
    except ImportError as exc:
        raise MissingExtraError("serve", extra="serving", missing=exc.name or "?") from exc

    overrides: dict[str, object] = {"host": host, "http_port": http_port, "grpc_port": grpc_port, "workers": workers}
    serving: dict[str, object] = {key: value for key, value in overrides.items() if value is not None}
    if no_grpc:
        serving["grpc_port"] = None
    settings = load_settings(state.config, overrides={"project": state.project, "serving": serving})
    Runtime(settings)  # validates every section before any worker starts
    check_ports_free(settings.serving.host, {"HTTP": settings.serving.http_port, "gRPC": settings.serving.grpc_port})
    configure_logging(logging.DEBUG if state.debug else logging.INFO)
    code = run(settings, log_level=logging.DEBUG if state.debug else logging.INFO)
    if code:
        raise click.exceptions.Exit(code)


def check_ports_free(host: str, ports: Mapping[str, int | None]) -> None:
    """Raise a clear error when one of ``ports`` (by protocol; None or 0: none) cannot be bound on ``host``.

    Raises:
        click.ClickException: naming the address, the protocol and the option that changes it.
    """
    options = {"HTTP": "--http-port", "gRPC": "--grpc-port"}
    for protocol, port in ports.items():
        if not port:
            continue
        try:
            family, kind, proto, _, address = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(address)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            hint = f"; stop the process using it or choose another with {options.get(protocol, '--http-port')}"
            if exc.errno != errno.EADDRINUSE:
                hint = "" if isinstance(exc, socket.gaierror) else f" (check --host {host})"
            raise click.ClickException(f"cannot listen on {host}:{port} ({protocol}): {reason}{hint}") from None
