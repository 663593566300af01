"""Fixtures of the contract suites: ``engine`` runs a test once per registered offline engine."""

from __future__ import annotations

import pytest

from tests.support.engines import EngineCase, engine_case, engine_params


@pytest.fixture(params=engine_params())
def engine(request: pytest.FixtureRequest) -> EngineCase:
    """An offline engine under test (see ``tests/support/engines.py``)."""
    return engine_case(request, request.param)
