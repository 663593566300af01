"""The public surface of ``provender``: exactly these names, all importable, DESIGN.md's among them."""

from __future__ import annotations

import importlib

import pytest

import provender

EXPECTED_ALL = [
    "Aggregation",
    "AvroFormat",
    "BackendError",
    "Client",
    "ConfigError",
    "CsvFormat",
    "DataError",
    "DefinitionError",
    "DeltaSource",
    "DriftReport",
    "Entity",
    "EntityNotFoundError",
    "Feature",
    "FeatureRef",
    "FeatureRefError",
    "FeatureTable",
    "FeatureTableNotFoundError",
    "FileSource",
    "JsonFormat",
    "KafkaSource",
    "MissingExtraError",
    "NotFoundError",
    "OnDemandFeatures",
    "OnDemandFunctionError",
    "ParquetFormat",
    "ProvenderError",
    "RegistryConflictError",
    "Settings",
    "SqlSource",
    "TableStatistics",
    "ValueType",
    "__version__",
    "expect",
    "load_settings",
]

# Names that DESIGN.md's "Public Python API" section uses as ``pv.<name>``.
DESIGN_NAMES = [
    "Client",
    "Entity",
    "Feature",
    "FeatureTable",
    "ValueType",
    "FileSource",
    "ParquetFormat",
    "CsvFormat",
    "KafkaSource",
    "AvroFormat",
    "JsonFormat",
]


def test_all_is_exactly_the_curated_public_names() -> None:
    assert provender.__all__ == EXPECTED_ALL


def test_all_is_sorted_and_has_no_duplicates() -> None:
    assert provender.__all__ == sorted(set(provender.__all__))


@pytest.mark.parametrize("name", EXPECTED_ALL)
def test_every_public_name_is_importable(name: str) -> None:
    module = importlib.import_module("provender")
    assert getattr(module, name) is not None
    namespace: dict[str, object] = {}
    exec(f"from provender import {name}", namespace)  # the way users import it
    assert namespace[name] is getattr(provender, name)


@pytest.mark.parametrize("name", DESIGN_NAMES)
def test_design_names_exist_and_are_public(name: str) -> None:
    assert name in provender.__all__
    assert isinstance(getattr(provender, name), type)


def test_star_import_exports_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from provender import *", namespace)
    exported = {name for name in namespace if name != "__builtins__"}
    assert exported == set(EXPECTED_ALL)


def test_version_is_a_string() -> None:
    assert isinstance(provender.__version__, str)
    assert provender.__version__.count(".") >= 1


def test_errors_derive_from_the_base_and_the_builtin_they_refine() -> None:
    assert issubclass(provender.DefinitionError, provender.ProvenderError)
    assert issubclass(provender.DefinitionError, ValueError)
    assert issubclass(provender.FeatureRefError, ValueError)
    assert issubclass(provender.ConfigError, ValueError)
    assert issubclass(provender.RegistryConflictError, ValueError)
    assert issubclass(provender.DataError, ValueError)
    assert issubclass(provender.NotFoundError, LookupError)
    assert issubclass(provender.EntityNotFoundError, provender.NotFoundError)
    assert issubclass(provender.FeatureTableNotFoundError, provender.NotFoundError)
    assert issubclass(provender.MissingExtraError, ImportError)
    for name in EXPECTED_ALL:
        value = getattr(provender, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, provender.ProvenderError), name
