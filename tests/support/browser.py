"""Headless Chromium for the UI tests: Debian's /usr/bin/chromium driven by Playwright (never `playwright install`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """A headless Chromium (module-scoped: launching costs ~1 s)."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("PROVENDER_REQUIRE_SERVICES"):
            pytest.fail(f"{CHROMIUM} is missing: run `make system-deps`")
        pytest.skip(f"{CHROMIUM} is missing: run `make system-deps`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield launched
        launched.close()
