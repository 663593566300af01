"""The composition root: every section validated at start-up, by the client, the service and the CLI."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from click.testing import CliRunner

import provender as pv
from provender.cli.main import cli
from provender.config import load_settings, validate_settings
from provender.runtime import Runtime
from provender.serving.service import FeatureService

# A typo in one option of each backend, the key it names and the hint it gives.
TYPOS = [
    pytest.param(
        {"offline": {"engine": "duckdb", "memroy_limit": "4GB"}}, "offline.memroy_limit", "memory_limit", id="duckdb"
    ),
    pytest.param({"offline": {"engine": "spark", "mastr": "local[1]"}}, "offline.mastr", "master", id="spark"),
    pytest.param({"online": {"store": "sqlite", "pth": "x.db"}}, "online.pth", "path", id="sqlite"),
    pytest.param({"online": {"store": "redis", "ulr": "redis://localhost:1/0"}}, "online.ulr", "url", id="redis"),
    pytest.param({"online": {"store": "memory", "path": "x.db"}}, "online.path", "Known keys: (none)", id="memory"),
    pytest.param({"offline": {"engine": "duckdbb"}}, "offline.engine", "duckdb", id="engine-name"),
    pytest.param({"online": {"store": "reddis"}}, "online.store", "redis", id="store-name"),
    pytest.param({"registry": "sqlit:///r.db"}, "registry", "sqlite", id="registry-scheme"),
    pytest.param(
        {"registry": "postgresql://u@localhost:1/db?pool_max_sise=3"}, "registry", "pool_max_size", id="postgresql-pool"
    ),
    pytest.param({"registry": "postgresql://u@localhost:1/db?sslmdoe=require"}, "registry", "sslmode", id="postgresql"),
    pytest.param({"serving_url": "htp://localhost:6566"}, "serving_url", "grpc://", id="serving-url"),
]


def _write_config(tmp_path: Path, values: dict[str, object]) -> Path:
    import yaml

    path = tmp_path / "provender.yaml"
    path.write_text(yaml.safe_dump({"registry": "sqlite:///registry.db", **values}))
    return path


@pytest.mark.parametrize(("values", "key", "hint"), TYPOS)
def test_a_typo_in_any_backend_option_fails_when_the_client_starts(
    tmp_path: Path, values: dict[str, object], key: str, hint: str
) -> None:
    with pytest.raises(pv.ConfigError) as caught:
        pv.Client(_write_config(tmp_path, values))
    assert caught.value.key == key
    assert hint in str(caught.value)
    assert not (tmp_path / "registry.db").exists()  # nothing was opened


@pytest.mark.parametrize(("values", "key", "hint"), TYPOS[:5])
def test_a_typo_fails_when_the_serving_service_starts(
    tmp_path: Path, values: dict[str, object], key: str, hint: str
) -> None:
    settings = load_settings(_write_config(tmp_path, values))
    with pytest.raises(pv.ConfigError, match=key.replace(".", r"\.")):
        FeatureService(Runtime(settings))


@pytest.mark.parametrize("command", [["tables", "list"], ["projects", "list"], ["serve"]])
def test_a_typo_fails_before_any_cli_command_runs(tmp_path: Path, command: list[str]) -> None:
    config = _write_config(tmp_path, {"offline": {"engine": "duckdb", "memroy_limit": "4GB"}})
    result = CliRunner().invoke(cli, ["--config", str(config), *command])
    assert result.exit_code != 0
    assert "offline.memroy_limit" in result.output and "memory_limit" in result.output


def test_the_online_store_factory_pickles_and_opens_the_configured_store(tmp_path: Path) -> None:
    settings = validate_settings({"online": {"store": "sqlite", "path": "online.db"}, "base_dir": tmp_path})
    factory = pickle.loads(pickle.dumps(Runtime(settings).online_store_factory("demo")))
    store = factory()
    try:
        assert type(store).__name__ == "SQLiteStore"
        assert store.project == "demo"
        assert not store.capabilities.reachable_from_executors
    finally:
        store.close()
    assert (tmp_path / "online.db").exists()


@pytest.mark.parametrize(("registry", "remote"), [("sqlite:///r.db", False), ("http://core:6565", True)])
def test_registries_say_whether_another_service_owns_their_storage(registry: str, remote: bool) -> None:
    assert Runtime(validate_settings({"registry": registry})).registry_class.is_remote is remote


def test_the_core_service_refuses_a_registry_another_service_owns(tmp_path: Path) -> None:
    from provender.core.service import open_registry

    with pytest.raises(pv.ConfigError, match="must own its registry"):
        open_registry(validate_settings({"registry": "http://core:6565", "base_dir": tmp_path}))
    open_registry(validate_settings({"registry": "sqlite:///r.db", "base_dir": tmp_path})).close()
