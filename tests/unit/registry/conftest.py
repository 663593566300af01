"""Fixtures of the registry tests: an isolated working directory and clients on one registry.

The registry is a SQLite file, or the test's PostgreSQL database or core service
(``PROVENDER_TEST_REGISTRY``, :mod:`tests.support.registries`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from provender import Client
from tests.support.registries import registry_url as test_registry_url


@pytest.fixture
def registry_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite registry URL; the test runs in ``tmp_path`` with no ``PROVENDER_*`` settings."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("PROVENDER_") and name != "PROVENDER_REQUIRE_SERVICES":
            monkeypatch.delenv(name)
    return test_registry_url(tmp_path, f"sqlite:///{tmp_path}/registry.db")


@pytest.fixture
def make_client(registry_url: str) -> Iterator[Callable[..., Client]]:
    """Build clients on the test's registry (closed at teardown)."""
    clients: list[Client] = []

    def make(project: str | None = None) -> Client:
        client = Client(project=project, core_url=registry_url)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., Client]) -> Client:
    """A client on the test's registry, in project ``default``."""
    return make_client()
