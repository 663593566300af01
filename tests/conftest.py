"""Shared pytest configuration for the Provender test suite.

Real-service fixtures (``redis_server``, ``redis_cluster``, ``postgres_server``,
``kafka_broker``) live in :mod:`tests.support.services`.
"""

from __future__ import annotations

pytest_plugins = ["tests.support.services"]
