"""State shared by the CLI's commands: the global options and the client."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from provender.client import Client
from provender.errors import ProjectNotFoundError


@dataclass(slots=True, kw_only=True)
class CliState:
    """Global options, and the client built from them on first use."""

    config: Path | None
    project: str | None
    debug: bool
    _client: Client | None = field(default=None)

    def client(self, *, existing_project: bool = True) -> Client:
        """Return the client for the global options (built once).

        Args:
            existing_project: the project must exist already (every command but ``apply``,
                which creates it): a mistyped ``--project`` is an error with a hint, not an
                empty listing.

        Raises:
            ProjectNotFoundError: ``existing_project`` and nothing was ever applied to the project.
        """
        if self._client is None:
            self._client = Client(self.config, self.project)
        if existing_project:
            known = [p.name for p in self._client.describe_projects(include_archived=True)]  # archived: read-only
            if self._client.project not in known:
                raise ProjectNotFoundError(self._client.project, known=known)
        return self._client
