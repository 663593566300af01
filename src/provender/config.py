"""The one settings object, and how it is loaded.

Precedence, lowest to highest: defaults < ``provender.yaml`` < ``PROVENDER_*`` environment
variables (nested with ``__``: ``PROVENDER_ONLINE__STORE=redis``) < explicit arguments.
Relative paths are resolved against the directory of the config file (or the working directory
when there is none). Every key is validated at start-up, and an error names the key, with a
"did you mean" hint for unknown names. Each section's selector (``offline.engine``,
``online.store``, the registry URL's scheme) names a backend whose own ``Config`` model validates
the rest of the section (see ``backends.py``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from provender.errors import ConfigError, did_you_mean

CONFIG_FILE_NAME = "provender.yaml"
ENV_PREFIX = "PROVENDER_"
ENV_NESTING = "__"
# PROVENDER_* variables that are not settings: the config file's path, and the test harness switch.
_ENV_NOT_SETTINGS = frozenset({"CONFIG", "REQUIRE_SERVICES"})


class OfflineSection(BaseModel):
    """``offline:``: the engine computing historical retrieval and ingestion batches."""

    model_config = ConfigDict(frozen=True, extra="allow")
    engine: str = "duckdb"


class OnlineSection(BaseModel):
    """``online:``: the store holding the latest feature values per entity key."""

    model_config = ConfigDict(frozen=True, extra="allow")
    store: str = "sqlite"


class Settings(BaseModel):
    """Everything configurable, validated. Build it with :func:`load_settings`.

    Attributes:
        project: the project (namespace) the client works in.
        registry: where definitions live: ``sqlite:///path``, ``postgresql://...`` or ``http://core:6565``.
        offline: the offline engine's section.
        online: the online store's section.
        serving_url: when set, online reads go through this serving service.
        base_dir: directory that relative paths are resolved against (the config file's).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    project: str = "default"
    registry: str = "sqlite:///.provender/registry.db"
    offline: OfflineSection = Field(default_factory=OfflineSection)
    online: OnlineSection = Field(default_factory=OnlineSection)
    serving_url: str | None = None
    base_dir: Path = Field(default_factory=Path.cwd)

    @field_validator("project")
    @classmethod
    def _check_project(cls, value: str) -> str:
        if not value or not value.replace("_", "a").replace("-", "a").isalnum() or not value[0].isalpha():
            raise ValueError(
                f"{value!r} is not a project name (letters, digits, '_' and '-', starting with a letter)"
            )
        return value

    def resolve_path(self, path: str | Path) -> Path:
        """Return ``path`` resolved against :attr:`base_dir` when it is relative."""
        path = Path(path).expanduser()
        return path if path.is_absolute() else self.base_dir / path


def load_settings(
    config: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Settings:
    """Load settings from a file, the environment and explicit overrides.

    Args:
        config: path to a ``provender.yaml``; by default ``$PROVENDER_CONFIG``, else
            ``./provender.yaml`` if it exists, else none (built-in defaults).
        environ: environment to read ``PROVENDER_*`` variables from (default ``os.environ``).
        overrides: explicit values, nested like the file (``{"online": {"store": "redis"}}``);
            ``None`` values are ignored.

    Raises:
        ConfigError: naming the offending key.
    """
    environ = os.environ if environ is None else environ
    path = _find_config_file(config, environ)
    layers: list[dict[str, Any]] = [_read_file(path) if path else {}, _read_env(environ)]
    layers.append({k: v for k, v in (overrides or {}).items() if v is not None})
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = _deep_merge(merged, layer)
    merged.setdefault("base_dir", path.parent.resolve() if path else Path.cwd())
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise _config_error(exc) from None


def _find_config_file(config: str | Path | None, environ: Mapping[str, str]) -> Path | None:
    explicit = config if config is not None else environ.get(f"{ENV_PREFIX}CONFIG")
    if explicit is not None:
        path = Path(explicit).expanduser()
        if path.is_dir():
            path = path / CONFIG_FILE_NAME
        if not path.is_file():
            raise ConfigError("config", f"no config file at {str(path)!r}")
        return path
    default = Path.cwd() / CONFIG_FILE_NAME
    return default if default.is_file() else None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError("config", f"cannot read {str(path)!r}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            "config", f"{str(path)!r} must hold a mapping of settings, got {type(data).__name__}"
        )
    if "base_dir" in data:
        raise ConfigError("base_dir", "is derived from the config file's location and cannot be set")
    return data


def _read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    known = [name for name in Settings.model_fields if name != "base_dir"]
    result: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name.removeprefix(ENV_PREFIX) in _ENV_NOT_SETTINGS:
            continue
        keys = name.removeprefix(ENV_PREFIX).lower().split(ENV_NESTING)
        if keys[0] not in known:
            hint = did_you_mean(keys[0], known) or f" Known settings: {', '.join(known)}."
            raise ConfigError(".".join(keys), f"unknown setting from environment variable {name}.{hint}")
        node = result
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(".".join(keys), f"environment variable {name} nests under a plain value")
        node[keys[-1]] = value
    return result


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(dict(merged[key]), value)
        elif isinstance(value, BaseModel):
            merged[key] = _deep_merge(dict(merged.get(key) or {}), value.model_dump())
        else:
            merged[key] = value
    return merged


def _config_error(exc: ValidationError) -> ConfigError:
    error = exc.errors()[0]
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        known = [name for name in Settings.model_fields if name != "base_dir"]
        hint = did_you_mean(str(error["loc"][-1]), known) or f" Known settings: {', '.join(known)}."
        return ConfigError(key, f"unknown setting.{hint}")
    return ConfigError(key, f"{error['msg']} (got {error.get('input')!r})")


def validate_backend_config(model: type[BaseModel], section: str, values: Mapping[str, Any]) -> BaseModel:
    """Validate a section's backend-specific keys against the backend's ``Config`` model.

    Raises:
        ConfigError: naming ``<section>.<key>``, with a hint for unknown keys.
    """
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join([section, *(str(part) for part in error["loc"])])
        if error["type"] == "extra_forbidden":
            hint = did_you_mean(str(error["loc"][-1]), list(model.model_fields)) or (
                f" Known keys: {', '.join(model.model_fields) or '(none)'}."
            )
            return_error = ConfigError(key, f"unknown setting.{hint}")
        else:
            return_error = ConfigError(key, f"{error['msg']} (got {error.get('input')!r})")
        raise return_error from None
