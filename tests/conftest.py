"""Shared pytest configuration for the Provender test suite.

Real-service fixtures (``redis_server``, ``redis_cluster``, ``postgres_server``,
``kafka_broker``) live in :mod:`tests.support.services`; Spark's
(``spark_engine``, ``spark_options``, ``spark_standalone``) in :mod:`tests.support.spark`;
``provender core`` processes (``start_core``) in :mod:`tests.support.core`; the registry of test
projects (``PROVENDER_TEST_REGISTRY``: sqlite, postgresql, core) in :mod:`tests.support.registries`.
"""

from __future__ import annotations

pytest_plugins = [
    "tests.support.services",
    "tests.support.spark",
    "tests.support.core",
    "tests.support.registries",
    "tests.support.browser",
    "tests.support.objectstore",
]
