"""State shared by the CLI's commands: the global options and the client."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from provender.client import Client


@dataclass(slots=True, kw_only=True)
class CliState:
    """Global options, and the client built from them on first use."""

    config: Path | None
    project: str | None
    debug: bool
    _client: Client | None = field(default=None)

    def client(self) -> Client:
        """Return the client for the global options (built once)."""
        if self._client is None:
            self._client = Client(self.config, self.project)
        return self._client
