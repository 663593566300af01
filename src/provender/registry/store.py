"""The registry's storage seam: a snapshot per project and one atomic read-modify-write.

Backends (``sqlite.py``, later PostgreSQL and the core service) only persist; the rules of what
may change live in ``diff.py`` and run inside :meth:`RegistryStore.update`, against the latest
state, under the backend's exclusive lock. So concurrent applies serialize and none is lost.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Protocol, Self

from provender.definitions import Definition, Entity, FeatureTable

DEFAULT_PROJECT = "default"


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrySnapshot:
    """Everything registered in one project, at one registry version.

    Attributes:
        version: bumped by every change; 0 for a project never written to.
        updated_at: when the last change happened (UTC), or None.
    """

    project: str
    version: int = 0
    updated_at: datetime | None = None
    entities: Mapping[str, Entity] = field(default_factory=lambda: MappingProxyType({}))
    feature_tables: Mapping[str, FeatureTable] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryChange:
    """What one update writes: definitions to create or replace, names to delete."""

    put: tuple[Definition, ...] = ()
    delete_entities: tuple[str, ...] = ()
    delete_feature_tables: tuple[str, ...] = ()
    description: str = ""

    @property
    def is_empty(self) -> bool:
        """Whether the change writes nothing (and so must not bump the version)."""
        return not (self.put or self.delete_entities or self.delete_feature_tables)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectInfo:
    """A project's name, registry version and time of its last change."""

    name: str
    version: int
    updated_at: datetime | None


class RegistryStore(Protocol):
    """Where definitions are persisted. Selected by the scheme of the ``registry`` URL."""

    @classmethod
    def from_url(cls, url: str, *, base_dir: Path) -> Self:
        """Open the registry at ``url``; relative paths are resolved against ``base_dir``."""
        ...

    def read(self, project: str) -> RegistrySnapshot:
        """Return the project's current snapshot (empty if it was never written)."""
        ...

    def update(self, project: str, decide: Callable[[RegistrySnapshot], RegistryChange]) -> RegistrySnapshot:
        """Atomically apply ``decide(latest snapshot)`` and return the new snapshot.

        ``decide`` runs under an exclusive lock on the latest state. If it raises, nothing is
        written. A non-empty change bumps the project's version and records when it happened.
        """
        ...

    def list_projects(self) -> list[ProjectInfo]:
        """Return every project that has been written to, plus ``default``, sorted by name."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
