"""Tests marked ``image`` run containers of the built OCI images: ``make deploy-test`` builds the
images, then runs them with ``PROVENDER_TEST_IMAGES=1``. Elsewhere (the e2e group of
scripts/run_suite.sh runs beside the image build) they are deselected, never skipped."""

from __future__ import annotations

import os

import pytest

IMAGES_ENV = "PROVENDER_TEST_IMAGES"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the ``image`` tests unless ``PROVENDER_TEST_IMAGES=1``."""
    if os.environ.get(IMAGES_ENV) == "1":
        return
    dropped = [item for item in items if item.get_closest_marker("image")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not item.get_closest_marker("image")]
