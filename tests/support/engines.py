"""The offline engines under test: every ``provender.offline_engines`` entry point, with its options.

Each registered engine needs a provisioner below saying how to run it in the suite (DuckDB in
process; Spark on the test session's one local session, which costs about 12 s to start, so
every Spark case shares it). Tests that need more than the contract select engines by their
``capabilities``, never by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import provender as pv
from provender import backends
from provender.offline.engine import EngineCapabilities, OfflineEngine
from tests.support.builders import make_client

Provisioner = Callable[[pytest.FixtureRequest], dict[str, object]]


def _spark(request: pytest.FixtureRequest) -> dict[str, object]:
    request.getfixturevalue("spark_engine")  # the session's local Spark, kept open for the run
    return dict(request.getfixturevalue("spark_options"))


PROVISIONERS: dict[str, Provisioner] = {
    "duckdb": lambda request: {"engine": "duckdb"},
    "spark": _spark,
}
NEEDS_SERVICE = {"spark"}


@dataclass(frozen=True)
class EngineCase:
    """An engine under test: its entry point's name and its ``offline:`` options."""

    name: str
    options: Mapping[str, object]

    @property
    def cls(self) -> type[OfflineEngine]:
        """The engine class of the entry point."""
        return backends.load_offline_engine(self.name)

    @property
    def capabilities(self) -> EngineCapabilities:
        """What the engine can do (select tests by these, not by name)."""
        return self.cls.capabilities

    def client(
        self, project_dir: Path, *, online: Mapping[str, object] | None = None, project: str | None = None
    ) -> pv.Client:
        """A client on a fresh project in ``project_dir`` using this engine (the caller closes it)."""
        return make_client(project_dir, offline=self.options, online=online, project=project)

    def open(self, base_dir: Path) -> OfflineEngine:
        """The engine itself (the caller closes it); Spark joins the session's running one."""
        return self.cls.from_options(self.options, base_dir=base_dir)


def engine_names() -> list[str]:
    """The registered engines' names, sorted."""
    return sorted(backends.available(backends.Role.OFFLINE_ENGINE))


def engine_marks(name: str) -> list[pytest.MarkDecorator]:
    """The marks of a case running engine ``name`` (a service, slow, for Spark)."""
    return [pytest.mark.service, pytest.mark.slow] if name in NEEDS_SERVICE else []


def engine_params() -> list[Any]:
    """One ``pytest.param`` per registered engine."""
    return [pytest.param(name, id=name, marks=engine_marks(name)) for name in engine_names()]


def engine_case(request: pytest.FixtureRequest, name: str) -> EngineCase:
    """Provision engine ``name`` for the requesting test."""
    provision = PROVISIONERS.get(name)
    if provision is None:
        pytest.fail(f"offline engine {name!r} is registered but has no provisioner in {__name__}.PROVISIONERS")
    return EngineCase(name=name, options=provision(request))
