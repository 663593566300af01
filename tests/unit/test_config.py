"""Settings: defaults < provender.yaml < PROVENDER_* environment < arguments, validated with hints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provender import Client, ConfigError, Settings, load_settings
from provender.backends import Role, load_backend, registry_backend_name
from tests.support.kubernetes import KUBERNETES_SERVICE_LINKS


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty directory with no PROVENDER_* variables set."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("PROVENDER_"):
            monkeypatch.delenv(name)
    return tmp_path


def write_config(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "provender.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings(environ={})
    assert settings.project == "default"
    assert settings.registry == "sqlite:///.provender/registry.db"
    assert settings.offline.engine == "duckdb"
    assert settings.online.store == "sqlite"
    assert settings.serving_url is None
    assert settings.base_dir == tmp_path.resolve()


def test_settings_are_frozen() -> None:
    settings = load_settings(environ={})
    with pytest.raises(ValueError, match="frozen"):
        settings.project = "other"


def test_yaml_file_values(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "repo",
        "project: fraud\n"
        "registry: sqlite:///state/registry.db\n"
        "offline: {engine: spark, master: 'local[2]'}\n"
        "online: {store: redis, url: 'redis://localhost:6379/0'}\n"
        "serving_url: http://serving:6566\n",
    )
    settings = load_settings(path, environ={})
    assert settings.project == "fraud"
    assert settings.registry == "sqlite:///state/registry.db"
    assert settings.offline.engine == "spark"
    assert settings.offline.model_extra == {"master": "local[2]"}
    assert settings.online.store == "redis"
    assert settings.online.model_extra == {"url": "redis://localhost:6379/0"}
    assert settings.serving_url == "http://serving:6566"
    assert settings.base_dir == (tmp_path / "repo").resolve()


def test_empty_yaml_file_means_defaults(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path, ""), environ={})
    assert settings.project == "default"
    assert settings.online.store == "sqlite"


def test_provender_yaml_in_the_working_directory_is_found(tmp_path: Path) -> None:
    write_config(tmp_path, "project: found\n")
    assert load_settings(environ={}).project == "found"


def test_config_given_as_a_directory(tmp_path: Path) -> None:
    write_config(tmp_path / "repo", "project: in_dir\n")
    assert load_settings(tmp_path / "repo", environ={}).project == "in_dir"


def test_provender_config_variable_names_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path / "elsewhere", "project: from_env_file\n")
    settings = load_settings(environ={"PROVENDER_CONFIG": str(path)})
    assert settings.project == "from_env_file"
    assert settings.base_dir == path.parent.resolve()


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "project: from_file\nonline: {store: sqlite, path: online.db}\n")
    environ = {
        "PROVENDER_PROJECT": "fraud",
        "PROVENDER_ONLINE__STORE": "redis",
        "PROVENDER_ONLINE__URL": "redis://host:6379/0",
    }
    settings = load_settings(path, environ=environ)
    assert settings.project == "fraud"
    assert settings.online.store == "redis"
    # the file's SQLite options are dropped with the SQLite store (the Redis store has no `path`)
    assert settings.online.model_extra == {"url": "redis://host:6379/0"}


def test_environment_keeps_the_files_options_for_the_same_store(tmp_path: Path) -> None:
    path = write_config(tmp_path, "online: {store: redis, url: 'redis://file:6379/0', ssl: true}\n")
    settings = load_settings(path, environ={"PROVENDER_ONLINE__STORE": "redis", "PROVENDER_ONLINE__URL": "redis://env"})
    assert settings.online.model_extra == {"url": "redis://env", "ssl": True}


def test_default_store_options_are_dropped_when_the_environment_names_another(tmp_path: Path) -> None:
    path = write_config(tmp_path, "online: {path: online.db}\noffline: {memory_limit: 2GB}\n")
    settings = load_settings(path, environ={"PROVENDER_ONLINE__STORE": "redis", "PROVENDER_OFFLINE__ENGINE": "spark"})
    assert (settings.online.store, settings.online.model_extra) == ("redis", {})
    assert (settings.offline.engine, settings.offline.model_extra) == ("spark", {})


def test_an_argument_that_changes_the_engine_drops_the_files_engine_options(tmp_path: Path) -> None:
    path = write_config(tmp_path, "offline: {engine: duckdb, memory_limit: 2GB}\n")
    settings = load_settings(path, environ={}, overrides={"offline": {"engine": "spark", "master": "local[2]"}})
    assert settings.offline.model_extra == {"master": "local[2]"}


def test_arguments_override_the_environment(tmp_path: Path) -> None:
    path = write_config(tmp_path, "project: from_file\nregistry: sqlite:///file.db\n")
    environ = {
        "PROVENDER_PROJECT": "from_env",
        "PROVENDER_ONLINE__STORE": "redis",
        "PROVENDER_REGISTRY": "sqlite:///env.db",
    }
    settings = load_settings(
        path,
        environ=environ,
        overrides={"project": "from_args", "online": {"store": "memory"}, "registry": None},
    )
    assert settings.project == "from_args"
    assert settings.online.store == "memory"
    assert settings.registry == "sqlite:///env.db"  # a None override is ignored


def test_os_environ_is_the_default_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVENDER_PROJECT", "from_os")
    assert load_settings().project == "from_os"


def test_relative_config_path_gives_the_config_files_directory_as_base_dir(tmp_path: Path) -> None:
    write_config(tmp_path / "sub" / "repo", "registry: sqlite:///state/registry.db\n")
    settings = load_settings(Path("sub/repo/provender.yaml"), environ={})
    assert settings.base_dir == (tmp_path / "sub" / "repo").resolve()
    assert settings.base_dir.is_absolute()
    assert settings.resolve_path("data/x.parquet") == settings.base_dir / "data" / "x.parquet"
    assert settings.resolve_path("/abs/x.parquet") == Path("/abs/x.parquet")


def test_relative_registry_path_lives_next_to_the_config_file(tmp_path: Path) -> None:
    path = write_config(tmp_path / "repo", "registry: sqlite:///state/registry.db\n")
    with Client(config=path) as client:
        client.list_entities()
    assert (tmp_path / "repo" / "state" / "registry.db").is_file()
    assert not (tmp_path / "state").exists()


def test_base_dir_cannot_be_set_in_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(write_config(tmp_path, "base_dir: /somewhere\n"), environ={})
    assert excinfo.value.key == "base_dir"


def test_unknown_key_in_yaml_is_named_with_a_hint(tmp_path: Path) -> None:
    path = write_config(tmp_path, "onlin: {store: redis}\n")
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path, environ={})
    assert excinfo.value.key == "onlin"
    assert "Did you mean 'online'?" in str(excinfo.value)


def test_unknown_key_without_a_close_match_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(write_config(tmp_path, "zzz: 1\n"), environ={})
    assert excinfo.value.key == "zzz"
    assert "Known settings: project, registry, offline, online, serving_url" in str(excinfo.value)


def test_kubernetes_service_variables_are_ignored_silently(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(environ={**KUBERNETES_SERVICE_LINKS, "PROVENDER_PROJECT": "fraud"})
    assert settings.project == "fraud"
    assert settings == load_settings(environ={"PROVENDER_PROJECT": "fraud"})
    assert caplog.records == []


def test_kubernetes_service_variables_do_not_stop_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in KUBERNETES_SERVICE_LINKS.items():
        monkeypatch.setenv(name, value)
    with Client() as client:
        assert client.list_feature_tables() == []


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("PROVENDER_ONLNE__STORE", "PROVENDER_ONLINE__STORE"),
        ("PROVENDER_ONLIN__STORE", "PROVENDER_ONLINE__STORE"),
        ("PROVENDER_PROJCT", "PROVENDER_PROJECT"),
        ("PROVENDER_SERVNG_URL", "PROVENDER_SERVING_URL"),
        ("PROVENDER_CONFG", "PROVENDER_CONFIG"),
    ],
)
def test_a_likely_typo_is_ignored_with_a_warning(name: str, meant: str, caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(environ={name: "redis"})
    assert settings.online.store == "sqlite"
    [record] = caplog.records
    assert record.levelname == "WARNING"
    assert name in record.getMessage()
    assert f"Did you mean {meant}?" in record.getMessage()


def test_a_nested_variable_that_is_no_setting_is_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    load_settings(environ={"PROVENDER_CACHE__SIZE": "10"})
    [record] = caplog.records
    assert "PROVENDER_CACHE__SIZE" in record.getMessage()
    assert "settings: project, registry" in record.getMessage()


def test_other_environment_variables_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(
        environ={"PROVENDERX": "1", "HOME": "/root", "PROVENDER_REQUIRE_SERVICES": "1", "PROVENDER_DEBUG": "1"}
    )
    assert settings.project == "default"
    assert caplog.records == []


def test_config_py_has_no_test_switch() -> None:
    import provender.config

    assert "REQUIRE_SERVICES" not in Path(provender.config.__file__).read_text(encoding="utf-8")


def test_environment_cannot_nest_under_a_plain_value() -> None:
    with pytest.raises(ConfigError):
        load_settings(environ={"PROVENDER_PROJECT": "x", "PROVENDER_PROJECT__NAME": "y"})


@pytest.mark.parametrize("project", ["", "1fraud", "fraud team", "fraud/ads", "-fraud", "fraud.v2"])
def test_invalid_project_name(project: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(environ={}, overrides={"project": project})
    assert excinfo.value.key == "project"
    assert repr(project) in str(excinfo.value)


@pytest.mark.parametrize("project", ["fraud", "fraud_team", "fraud-team", "F2"])
def test_valid_project_names(project: str) -> None:
    assert load_settings(environ={}, overrides={"project": project}).project == project


def test_invalid_project_name_through_the_client() -> None:
    with pytest.raises(ConfigError) as excinfo:
        Client(project="not a project")
    assert excinfo.value.key == "project"


def test_wrong_type_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(write_config(tmp_path, "online: {store: [redis]}\n"), environ={})
    assert excinfo.value.key == "online.store"


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "project: [unclosed\n"])
def test_malformed_file_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(write_config(tmp_path, text), environ={})
    assert excinfo.value.key == "config"


def test_missing_explicit_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "provender.yaml"
    with pytest.raises(ConfigError) as excinfo:
        load_settings(missing, environ={})
    assert excinfo.value.key == "config"
    assert str(missing) in str(excinfo.value)


def test_missing_config_file_named_by_the_environment(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no config file"):
        load_settings(environ={"PROVENDER_CONFIG": str(tmp_path / "nope.yaml")})


def test_missing_config_file_through_the_client(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no config file"):
        Client(config=tmp_path / "nope.yaml")


# -- backend names ------------------------------------------------------------------------------


def test_unknown_registry_scheme_through_the_client_gets_a_hint() -> None:
    with pytest.raises(ConfigError) as excinfo:
        Client(core_url="sqlit:///x.db")
    assert excinfo.value.key == "registry"
    assert "unknown backend 'sqlit'" in str(excinfo.value)
    assert "Did you mean 'sqlite'?" in str(excinfo.value)
    assert "sqlite" in str(excinfo.value).split("Available:")[1]


def test_unknown_registry_scheme_from_the_file_through_the_client(tmp_path: Path) -> None:
    write_config(tmp_path, "registry: sqlitee:///x.db\n")
    with pytest.raises(ConfigError, match="Did you mean 'sqlite'"):
        Client()


@pytest.mark.parametrize("url", ["registry.db", "/abs/registry.db", ""])
def test_registry_that_is_not_a_url(url: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        Client(settings=Settings(registry=url))
    assert excinfo.value.key == "registry"
    assert "is not a URL" in str(excinfo.value)


def test_registry_scheme_aliases() -> None:
    assert registry_backend_name("sqlite:///x.db") == "sqlite"
    assert registry_backend_name("SQLITE:///x.db") == "sqlite"
    assert registry_backend_name("postgres://host/db") == "postgresql"
    assert registry_backend_name("https://core:6565") == "http"


@pytest.mark.parametrize(
    ("role", "key"), [(Role.ONLINE_STORE, "online.store"), (Role.OFFLINE_ENGINE, "offline.engine")]
)
def test_unknown_backend_name_names_the_setting(role: Role, key: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_backend(role, "no_such_backend")
    assert excinfo.value.key == key
    assert "unknown backend 'no_such_backend'" in str(excinfo.value)
    assert "Available:" in str(excinfo.value)


def test_known_registry_backend_loads() -> None:
    from provender.registry.sqlite import SQLiteRegistry

    assert load_backend(Role.REGISTRY, "sqlite") is SQLiteRegistry


def test_stream_fetches_two_micro_batches_ahead_and_commits_every_five_seconds(tmp_path: Path) -> None:
    (tmp_path / "provender.yaml").write_text("")
    stream = load_settings(str(tmp_path / "provender.yaml"), environ={}).stream
    assert (stream.prefetch, stream.commit_interval_seconds) == (20_000, 5.0)
    (tmp_path / "provender.yaml").write_text("stream: {batch_rows: 500}\n")
    assert load_settings(str(tmp_path / "provender.yaml"), environ={}).stream.prefetch == 1_000
    (tmp_path / "provender.yaml").write_text(
        "stream: {batch_rows: 500, prefetch_rows: 7, commit_interval_seconds: 0.5}\n"
    )
    stream = load_settings(str(tmp_path / "provender.yaml"), environ={}).stream
    assert (stream.prefetch, stream.commit_interval_seconds) == (7, 0.5)
    with pytest.raises(ConfigError, match="commit_interval_seconds"):
        load_settings(
            str(tmp_path / "provender.yaml"), environ={}, overrides={"stream": {"commit_interval_seconds": 0}}
        )
