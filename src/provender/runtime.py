"""The composition root: the one place that turns :class:`~provender.config.Settings` into backends.

The client, the serving service, the CLI and the jobs all receive their registry, offline
engine and online store from a :class:`Runtime`; nothing else looks backends up by name.

Building a runtime validates the whole configuration at once, so a process fails when it
starts, not when a code path first reads a setting: the selectors (``offline.engine``,
``online.store``, the registry URL's scheme) must name installed backends, each backend's own
options are checked against its ``config_model`` (an unknown key fails with a did-you-mean),
and ``serving_url`` must have a scheme the remote client speaks.

Examples:
    >>> from provender.config import validate_settings
    >>> runtime = Runtime(validate_settings({"online": {"store": "memory"}}))
    >>> store = runtime.open_online_store("demo")
    >>> type(store).__name__, store.capabilities.reachable_from_executors
    ('MemoryStore', False)
    >>> store.close()
    >>> Runtime(validate_settings({"offline": {"engine": "duckdb", "memroy_limit": "4GB"}}))
    Traceback (most recent call last):
    ...
    provender.errors.ConfigError: Setting 'offline.memroy_limit': unknown setting. Did you mean 'memory_limit'?
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

from provender import backends
from provender.config import Settings, validate_backend_config
from provender.errors import ConfigError

if TYPE_CHECKING:
    from provender.offline.engine import OfflineEngine
    from provender.online.store import OnlineStore, OnlineStoreFactory
    from provender.registry.store import RegistryStore


_SERVING_SCHEMES = ("http", "https", "grpc", "grpcs")


class Runtime:
    """Backends built from settings: validated once, opened on demand.

    Args:
        settings: the configuration; every section is validated here (see the module docstring).

    Raises:
        ConfigError: an unknown backend or option (naming the key, with a hint).
        MissingExtraError: a selected backend whose optional dependency is not installed.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry_class = backends.load_registry(settings.registry)
        self.engine_class = backends.load_offline_engine(settings.offline.engine)
        self.store_class = cast(
            "type[OnlineStore]", backends.load_backend(backends.Role.ONLINE_STORE, settings.online.store)
        )
        _check_options(self.engine_class, "offline", settings.offline.model_dump())
        _check_options(self.store_class, "online", settings.online.model_dump(exclude={"store"}))
        if settings.serving_url is not None:
            scheme = urlsplit(settings.serving_url).scheme.lower()
            if scheme not in _SERVING_SCHEMES:
                raise ConfigError(
                    "serving_url",
                    f"{settings.serving_url!r}: expected http://host:6566, https://..., grpc://host:6567 or grpcs://...",
                )

    @property
    def online_options(self) -> dict[str, object]:
        """The ``online:`` section as the store's ``from_options`` takes it."""
        return self.settings.online.model_dump()

    def open_registry(self) -> RegistryStore:
        """Open the registry of the ``registry`` URL (with the ``core_token`` for a core service)."""
        token = self.settings.core_token
        return self.registry_class.from_url(
            self.settings.registry,
            base_dir=self.settings.base_dir,
            token=None if token is None else token.get_secret_value(),
        )

    def open_offline_engine(self) -> OfflineEngine:
        """Build the offline engine of the ``offline:`` section."""
        return self.engine_class.from_options(
            self.settings.offline.model_dump(), base_dir=self.settings.base_dir, storage=self.settings.storage
        )

    def open_online_store(self, project: str) -> OnlineStore:
        """Open the online store of the ``online:`` section for ``project``."""
        return self.online_store_factory(project)()

    def open_existing_online_store(self, project: str) -> OnlineStore | None:
        """Open the online store for reading, or return None when it keeps its data in a file not written yet.

        For a reader that must create nothing (``provender ui``): a store whose class names its
        local file (``local_file``, the SQLite store) is opened only once that file exists; a
        network store is opened as usual (opening it creates nothing here).
        """
        local_file = getattr(self.store_class, "local_file", None)
        if callable(local_file):
            path = local_file(self.online_options, base_dir=self.settings.base_dir)
            if not isinstance(path, Path) or not path.exists():
                return None
        return self.open_online_store(project)

    def online_store_factory(self, project: str) -> OnlineStoreFactory:
        """Return a picklable callable that opens the online store for ``project`` wherever it runs.

        The store class travels by reference and the options as plain values, so the factory
        can be shipped to processes on other machines (Spark executors), which call it to open
        their own connection. Whether such a process can reach the store is the store's
        ``capabilities.reachable_from_executors``.
        """
        return functools.partial(
            self.store_class.from_options, self.online_options, base_dir=self.settings.base_dir, project=project
        )


def _check_options(
    backend: type[OfflineEngine] | type[OnlineStore], section: str, options: Mapping[str, object]
) -> None:
    validate_backend_config(backend.config_model, section, options)
