"""What ``provender version`` reports: the package, the libraries it runs on, and the servers it reaches.

Library versions come from the installed distributions' metadata, so nothing is imported to
learn them: asking for Spark's version does not start a JVM (the ``pyspark`` distribution
carries Spark itself, so its version is Spark's). A server's version is asked only of the
backends the settings select, and only of those that can tell it: a backend that talks to a
server implements ``server_version()`` (see :class:`ReportsServerVersion`). An unreachable
server is reported, not raised: ``provender version`` is what one runs while diagnosing.

Examples:
    >>> from provender.config import validate_settings
    >>> library_versions()["sqlite"] == sqlite3.sqlite_version
    True
    >>> server_versions(validate_settings({"online": {"store": "memory"}}))
    {}
"""

from __future__ import annotations

import platform
import sqlite3
from importlib import metadata
from pathlib import Path
from typing import Protocol, TypedDict, cast, runtime_checkable

from provender import __version__
from provender.config import Settings, load_settings
from provender.errors import ProvenderError

# The distributions reported, by the name users know them under.
LIBRARIES: dict[str, str] = {
    "duckdb": "duckdb",
    "pyarrow": "pyarrow",
    "pandas": "pandas",
    "numpy": "numpy",
    "pydantic": "pydantic",
    "spark": "pyspark",
    "redis-py": "redis",
    "psycopg": "psycopg",
    "confluent-kafka": "confluent-kafka",
    "grpcio": "grpcio",
    "uvicorn": "uvicorn",
}


@runtime_checkable
class ReportsServerVersion(Protocol):
    """A backend connected to a server that can tell the server's version."""

    def server_version(self) -> str:
        """Ask the server for its version.

        Raises:
            BackendError: the server cannot be reached.
        """
        ...


class ServerVersion(TypedDict):
    """One server the settings point at: its backend, its version, or why it was not reached."""

    backend: str
    version: str | None
    error: str | None


class VersionReport(TypedDict):
    """The answer of ``provender version --json``."""

    provender: str
    python: str
    libraries: dict[str, str | None]
    servers: dict[str, ServerVersion]
    config_error: str | None


def library_versions() -> dict[str, str | None]:
    """Return each library's installed version (None when it is not installed), and SQLite's."""
    versions: dict[str, str | None] = {}
    for name, distribution in LIBRARIES.items():
        try:
            versions[name] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            versions[name] = None
    versions["sqlite"] = sqlite3.sqlite_version
    return versions


def server_versions(settings: Settings) -> dict[str, ServerVersion]:
    """Ask the servers the settings select (the online store) for their versions.

    Backends without a server (DuckDB, SQLite, the memory store) are not listed.
    """
    from provender.runtime import Runtime

    runtime = Runtime(settings)
    servers: dict[str, ServerVersion] = {}
    # Only a store that talks to a server is opened: opening an embedded one would create its file.
    if issubclass(runtime.store_class, ReportsServerVersion):
        try:
            store = runtime.open_online_store(settings.project)
            try:
                version = cast(ReportsServerVersion, store).server_version()
            finally:
                store.close()
        except ProvenderError as exc:
            servers["online_store"] = {"backend": settings.online.store, "version": None, "error": str(exc)}
        else:
            servers["online_store"] = {"backend": settings.online.store, "version": version, "error": None}
    return servers


def version_report(config: str | Path | None = None, *, project: str | None = None) -> VersionReport:
    """Return the package's version, the libraries', and those of the servers the settings select.

    Args:
        config: the ``provender.yaml`` to read (default: as :func:`~provender.config.load_settings`).
        project: the project whose online store is opened (default: the ``project`` setting).

    A configuration that does not load is reported in ``config_error`` (the versions that need
    no configuration are still there), never raised.
    """
    report: VersionReport = {
        "provender": __version__,
        "python": platform.python_version(),
        "libraries": library_versions(),
        "servers": {},
        "config_error": None,
    }
    try:
        report["servers"] = server_versions(load_settings(config, overrides={"project": project}))
    except ProvenderError as exc:
        report["config_error"] = str(exc)
    return report


def render_text(report: VersionReport) -> str:
    """Format a report for a terminal: the package first, one line per component."""
    lines = [f"provender {report['provender']}", f"  python {report['python']}"]
    lines += [f"  {name} {version}" for name, version in report["libraries"].items() if version is not None]
    missing = sorted(name for name, version in report["libraries"].items() if version is None)
    if missing:
        lines.append(f"  not installed: {', '.join(missing)}")
    for role, server in report["servers"].items():
        state = server["version"] if server["error"] is None else f"unreachable ({server['error']})"
        lines.append(f"  {role} ({server['backend']} server) {state}")
    if report["config_error"] is not None:
        lines.append(f"  servers not asked: {report['config_error']}")
    return "\n".join(lines)
