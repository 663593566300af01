"""THE backend registry: configuration names -> backend classes, via entry points.

Each role has an entry-point group in ``pyproject.toml``; a backend module is imported only
when it is selected, so its driver may be imported at module top. A missing driver becomes a
:class:`MissingExtraError` that prints the ``pip install`` line; an unknown name gets a hint.
"""

from __future__ import annotations

from enum import StrEnum
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

from provender.errors import ConfigError, MissingExtraError, did_you_mean

if TYPE_CHECKING:
    from provender.offline.engine import OfflineEngine
    from provender.registry.store import RegistryStore


class Role(StrEnum):
    """A kind of backend, named by its entry-point group."""

    REGISTRY = "provender.registries"
    OFFLINE_ENGINE = "provender.offline_engines"
    ONLINE_STORE = "provender.online_stores"


_SETTING = {
    Role.REGISTRY: "registry",
    Role.OFFLINE_ENGINE: "offline.engine",
    Role.ONLINE_STORE: "online.store",
}
# The extra that installs each backend's drivers (backends without one need no extra).
_EXTRAS = {"redis": "redis", "spark": "spark", "postgresql": "postgres", "http": "serving", "kafka": "kafka"}
_SCHEME_ALIASES = {"postgres": "postgresql", "https": "http"}


def available(role: Role) -> dict[str, EntryPoint]:
    """Return the installed backends of ``role`` by name."""
    return {ep.name: ep for ep in entry_points(group=role.value)}


def find_backend(role: Role, name: str) -> EntryPoint:
    """Return the entry point of backend ``name`` without importing it.

    Raises:
        ConfigError: no backend of that name (with a hint and the choices).
    """
    backends = available(role)
    entry = backends.get(name)
    if entry is None:
        hint = did_you_mean(name, backends) or ""
        choices = ", ".join(sorted(backends)) or "(none installed)"
        raise ConfigError(_SETTING[role], f"unknown backend {name!r}.{hint} Available: {choices}.")
    return entry


def load_backend(role: Role, name: str) -> type:
    """Import and return the backend class registered as ``name`` for ``role``.

    Raises:
        ConfigError: no backend of that name (with a hint).
        MissingExtraError: the backend's optional dependency is not installed.
    """
    entry = find_backend(role, name)
    try:
        backend: type = entry.load()
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "provender":
            raise
        raise MissingExtraError(name, extra=_EXTRAS.get(name, "all"), missing=exc.name or "?") from exc
    return backend


def registry_backend_name(url: str) -> str:
    """Return the registry backend named by a registry URL's scheme (``sqlite:///x`` -> ``sqlite``)."""
    scheme = urlsplit(url).scheme.lower()
    if not scheme:
        raise ConfigError("registry", f"{url!r} is not a URL; expected e.g. 'sqlite:///.provender/registry.db'")
    return _SCHEME_ALIASES.get(scheme, scheme)


def load_registry(url: str) -> type[RegistryStore]:
    """Return the registry backend class for a registry URL (by its scheme)."""
    return cast("type[RegistryStore]", load_backend(Role.REGISTRY, registry_backend_name(url)))


def load_offline_engine(name: str) -> type[OfflineEngine]:
    """Return the offline engine class registered as ``name`` (``offline.engine``)."""
    return cast("type[OfflineEngine]", load_backend(Role.OFFLINE_ENGINE, name))
