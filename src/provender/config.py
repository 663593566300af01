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

import difflib
import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from provender.errors import ConfigError, did_you_mean

CONFIG_FILE_NAME = "provender.yaml"
ENV_PREFIX = "PROVENDER_"
ENV_NESTING = "__"
# The one PROVENDER_* variable that is not a setting: the config file's path.
_ENV_CONFIG = "CONFIG"
# What Kubernetes injects into every pod for each Service in the namespace (a Service named
# "provender" gives PROVENDER_SERVICE_HOST, PROVENDER_PORT_6566_TCP_ADDR, ...): never a typo.
_KUBERNETES_SERVICE_LINK = re.compile(
    r"(^|_)(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_[0-9]+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?)$"
)
# How close an unknown variable's first name must be to a setting's to be reported as a typo.
_TYPO_CUTOFF = 0.8
# Each section's selector and its default: when a higher layer names another backend, the lower
# layers' options (for the backend no longer selected) are dropped.
_SELECTORS = {"online": ("store", "sqlite"), "offline": ("engine", "duckdb")}

log = logging.getLogger(__name__)


class OfflineSection(BaseModel):
    """``offline:``: the engine computing historical retrieval and ingestion batches."""

    model_config = ConfigDict(frozen=True, extra="allow")
    engine: str = "duckdb"


class OnlineSection(BaseModel):
    """``online:``: the store holding the latest feature values per entity key."""

    model_config = ConfigDict(frozen=True, extra="allow")
    store: str = "sqlite"


def _split_names(value: object) -> object:
    """Accept ``"a,b"`` (from an environment variable) where a list of names is expected."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class RequestLogSection(BaseModel):
    """``serving.request_log:``: sampled request/response logging as JSON lines.

    Attributes:
        enabled: log requests at all (off by default).
        sample_rate: the fraction of requests logged, 0 to 1.
        path: the file lines are appended to; None writes them to standard output.
        buffer_lines: lines held for the writer thread; when full, new lines are dropped
            (and counted) rather than slowing requests down.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    enabled: bool = False
    sample_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    path: str | None = None
    buffer_lines: int = Field(default=10_000, gt=0)


class TokenSpec(BaseModel):
    """One static bearer token of ``auth.tokens``: who it is, and what it grants.

    Attributes:
        subject: the name recorded as the actor of the token's changes (default: a digest of
            the token, never the token itself).
        grants: ``"<project>[:<role>]"`` entries; the role is ``read`` (default), ``write``
            or ``admin``; ``"*"`` stands for every project.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    subject: str | None = None
    grants: tuple[str, ...] = ()

    _names = field_validator("grants", mode="before")(_split_names)


class AuthSection(BaseModel):
    """``serving.auth:`` and ``core.auth:``: who may do what in which project (off by default).

    Attributes:
        mode: ``none``; ``token`` (static bearer tokens); or ``jwt`` (signed tokens).
        tokens: for ``token``: each bearer token and what it grants: a list of grants, or
            ``{subject: <name>, grants: [...]}``. A grant is a project (``"*"``: all), optionally
            with a role: ``"fraud"`` (read), ``"fraud:write"``, ``"*:admin"``; the serving service
            only reads, so any role grants it the project. A JSON object string is accepted too
            (for the environment). Never logged.
        jwt_secret: for ``jwt``: the HS256 shared secret.
        jwt_public_key: for ``jwt``: the PEM public key verifying RS256 tokens.
        projects_claim: the JWT claim listing the grants of a token (a list, or a
            comma-separated string, of grants as in ``tokens``; or a mapping project -> role).
            The JWT's ``sub`` names who acts (the audit trail of the core service).
        jwt_audience: if set, a JWT's ``aud`` must match it; if not, ``aud`` is not checked
            (set it when one issuer signs tokens for several services).
        jwt_issuer: if set, a JWT's ``iss`` must match it.
        jwt_require_exp: refuse JWTs without an ``exp`` claim (default: true).
        open_endpoints: with auth on, whether ``/metrics``, ``/v1/ready`` and
            ``/v1/openapi.json`` answer without a token (default: true, for probes and scrapers;
            ``/metrics`` names projects and tables). ``/v1/health`` is always open.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    mode: Literal["none", "token", "jwt"] = "none"
    tokens: dict[str, TokenSpec] = Field(default_factory=dict, repr=False)
    jwt_secret: SecretStr | None = None
    jwt_public_key: SecretStr | None = None
    projects_claim: str = "projects"
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_require_exp: bool = True
    open_endpoints: bool = True

    @field_validator("tokens", mode="before")
    @classmethod
    def _parse_tokens(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ValueError("tokens must be a mapping of token to projects (JSON in the environment)") from None
        if isinstance(value, Mapping):
            return {
                token: spec if isinstance(spec, Mapping | TokenSpec) else {"grants": _split_names(spec)}
                for token, spec in value.items()
            }
        return value

    @model_validator(mode="after")
    def _check_mode(self) -> AuthSection:
        if self.mode == "token" and not self.tokens:
            raise ValueError("mode 'token' needs at least one entry in 'tokens'")
        if self.mode == "jwt" and self.jwt_secret is None and self.jwt_public_key is None:
            raise ValueError("mode 'jwt' needs 'jwt_secret' (HS256) or 'jwt_public_key' (RS256)")
        return self


class ServingSection(BaseModel):
    """``serving:``: the serving service started by ``provender serve``.

    Attributes:
        host: the interface both servers listen on (``0.0.0.0`` for every interface).
        http_port: the HTTP (JSON) port.
        grpc_port: the gRPC port; None turns gRPC off.
        threads: threads per worker running the reads of stores that cannot be awaited on the
            event loop (SQLite, Redis over TLS or Cluster): requests hand their read to them, and
            the loop keeps parsing and answering meanwhile.
        workers: worker processes; each serves both protocols on the shared ports.
        registry_refresh_seconds: how stale the served registry may be: each worker re-reads
            it this often, so a newly applied table is served within this time.
        max_entity_rows: the most entity rows one request may ask for.
        max_feature_refs: the most feature refs one request may list.
        max_entity_columns: the most entity (and pass-through) columns one request may send.
        max_request_bytes: the largest HTTP body and gRPC message accepted (413 /
            RESOURCE_EXHAUSTED above it, before the body is read when its size is declared). It
            bounds the cost of parsing one request, paid before any other limit can be checked.
        max_value_depth: how deeply an entity or pass-through value may nest lists and objects.
        max_header_bytes: the largest HTTP request head (request line and headers): 431 above it.
        header_timeout_seconds: how long a connection may take to send a request head.
        max_connections: the most concurrent HTTP connections and requests per worker (503 above).
        projects: the projects served (None: every project in the registry).
        graceful_shutdown_seconds: how long in-flight requests may take to finish after SIGTERM.
        request_log: sampled request/response logging.
        auth: authentication and per-project authorization.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    host: str = "127.0.0.1"
    http_port: int = Field(default=6566, ge=0, le=65535)
    grpc_port: int | None = Field(default=6567, ge=0, le=65535)
    threads: int = Field(default=2, ge=1, le=256)
    workers: int = Field(default=1, ge=1, le=64)
    registry_refresh_seconds: float = Field(default=5.0, gt=0)
    max_entity_rows: int = Field(default=1000, gt=0)
    max_feature_refs: int = Field(default=1000, gt=0)
    max_entity_columns: int = Field(default=100, gt=0)
    max_request_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_value_depth: int = Field(default=16, ge=1, le=200)
    max_header_bytes: int = Field(default=32 * 1024, ge=1024)
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    max_connections: int = Field(default=1000, gt=0)
    projects: tuple[str, ...] | None = None
    graceful_shutdown_seconds: float = Field(default=10.0, ge=0)
    request_log: RequestLogSection = Field(default_factory=RequestLogSection)
    auth: AuthSection = Field(default_factory=AuthSection)

    _names = field_validator("projects", mode="before")(_split_names)


class CoreSection(BaseModel):
    """``core:``: the core service started by ``provender core`` (the registry over HTTP).

    Attributes:
        host: the interface it listens on (``0.0.0.0`` for every interface).
        port: the HTTP port.
        threads: threads running registry calls and ``run_on="core"`` job submissions.
        auth: authentication and per-project roles (``read``, ``write``, ``admin``).
        graceful_shutdown_seconds: how long in-flight requests may take to finish after SIGTERM.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    host: str = "127.0.0.1"
    port: int = Field(default=6565, ge=0, le=65535)
    threads: int = Field(default=8, ge=1, le=256)
    auth: AuthSection = Field(default_factory=AuthSection)
    graceful_shutdown_seconds: float = Field(default=10.0, ge=0)


class JobsSection(BaseModel):
    """``jobs:``: how jobs report to the registry.

    Attributes:
        heartbeat_seconds: how often a running job records its progress and a heartbeat.
        stale_after_seconds: a RUNNING job without a heartbeat for this long is marked FAILED
            (its runner died): by the core service, and whenever jobs are listed or read.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    stale_after_seconds: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _check_stale(self) -> JobsSection:
        if self.stale_after_seconds <= self.heartbeat_seconds:
            raise ValueError("stale_after_seconds must be longer than heartbeat_seconds")
        return self


class StreamSection(BaseModel):
    """``stream:``: stream-to-online ingestion jobs (``provender ingest-stream``).

    Attributes:
        batch_rows: the most records in one micro-batch (one store write, one commit).
        linger_ms: how long a micro-batch waits for more records after its first one; the
            bound on the time a record waits before it is written.
        dead_letter_suffix: bad records go to ``<topic><suffix>`` (``<topic>.dlq``).
        schema_registry_url: when set, Avro messages are in the Confluent wire format (magic
            byte, schema id) and writer schemas are fetched from this registry.
        session_timeout_ms: how long the group waits for a silent member before giving its
            partitions to the others.
        fetch_wait_max_ms: the longest the broker holds a fetch waiting for new records.
        prefetch_rows: the records per partition the consumer fetches ahead of the job
            (librdkafka's ``queued.min.messages``); default: two micro-batches
            (``2 * batch_rows``). Above it the consumer waits 20 ms before it fetches again
            (``fetch.queue.backoff.ms``; librdkafka waits 1 s, which starved a fast job).
            librdkafka's own default (100,000) buffers a backlog whole, then holds fetches
            open at the end of the topic while the job works through it.
        commit_interval_seconds: how often written offsets are committed while consuming (a
            rebalance or a stop commits at once; after a crash, at most this much more is read
            again, and writes are idempotent). Each commit is a broker request: Kafka's own
            auto-commit default is the same 5 s.
        offline_log_max_rows: the offline log writes a file once this many rows are buffered...
        offline_log_max_seconds: ...or once the oldest buffered row has waited this long;
            offsets are committed only after their rows are in a file.
        consumer_options: extra librdkafka properties for the consumer and the dead-letter
            producer, e.g. ``security.protocol``, ``sasl.mechanism``.
        dead_letter_options: extra librdkafka properties for the dead-letter producer only,
            e.g. ``message.max.bytes`` (a larger record is dead-lettered truncated).
        allowed_lateness_seconds: windowed aggregations: an event more than this behind its
            key's latest event time is not added to the online tiles (it is counted as too
            late, and still written to the offline log).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    batch_rows: int = Field(default=10_000, gt=0, le=1_000_000)
    linger_ms: int = Field(default=10, ge=0, le=60_000)
    dead_letter_suffix: str = Field(default=".dlq", min_length=1)
    schema_registry_url: str | None = None
    session_timeout_ms: int = Field(default=10_000, ge=1_000)
    fetch_wait_max_ms: int = Field(default=100, ge=0)
    prefetch_rows: int | None = Field(default=None, gt=0)
    commit_interval_seconds: float = Field(default=5.0, gt=0)
    offline_log_max_rows: int = Field(default=500_000, gt=0)
    offline_log_max_seconds: float = Field(default=60.0, gt=0)
    consumer_options: dict[str, str | int | float | bool] = Field(default_factory=dict)
    dead_letter_options: dict[str, str | int | float | bool] = Field(default_factory=dict)
    allowed_lateness_seconds: float = Field(default=3600.0, ge=0)

    @property
    def prefetch(self) -> int:
        """Records fetched ahead per partition: ``prefetch_rows``, else two micro-batches."""
        return self.prefetch_rows or 2 * self.batch_rows


class S3Storage(BaseModel):
    """``storage: {s3: ...}``: how ``s3://`` sources are reached.

    Attributes:
        endpoint_url: an S3-compatible endpoint (``http://127.0.0.1:9000``); default: AWS.
        region: the bucket's region (default: ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, else us-east-1).
        access_key_id: the access key (default: ``AWS_ACCESS_KEY_ID``).
        secret_access_key: the secret key (default: ``AWS_SECRET_ACCESS_KEY``); never logged.
        session_token: a temporary session token (default: ``AWS_SESSION_TOKEN``); never logged.
        credential_chain: with no key given, use the machine's default credential chain
            (instance profile, web identity...) instead of failing.
        connect_timeout: seconds to wait for a connection.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    credential_chain: bool = False
    connect_timeout: float = Field(default=5.0, gt=0)


class GcsStorage(BaseModel):
    """``storage: {gcs: ...}``: how ``gs://`` sources and outputs are reached.

    Without ``anonymous`` or ``access_token``, Google's default credentials are used
    (``GOOGLE_APPLICATION_CREDENTIALS``, Workload Identity, the metadata server).

    Attributes:
        endpoint_url: another endpoint (an emulator, ``http://127.0.0.1:4443``); default:
            ``STORAGE_EMULATOR_HOST``, else Google Cloud Storage.
        project_id: the project buckets are created in (only needed to create buckets).
        anonymous: no credentials (public buckets, emulators).
        access_token: an OAuth2 access token; never logged.
        token_lifetime_seconds: how long ``access_token`` is valid from start-up.
        retry_seconds: how long a failing request is retried before the error is raised.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    endpoint_url: str | None = None
    project_id: str | None = None
    anonymous: bool = False
    access_token: SecretStr | None = None
    token_lifetime_seconds: float = Field(default=3600.0, gt=0)
    retry_seconds: float = Field(default=15.0, gt=0)


class StorageSection(BaseModel):
    """``storage:``: credentials and endpoints of the object stores sources live in."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    s3: S3Storage = Field(default_factory=S3Storage)
    gcs: GcsStorage = Field(default_factory=GcsStorage)


class SourcesSection(BaseModel):
    """``sources:``: which paths definitions and requests may read and write (``docs/security.md``).

    Attributes:
        allowed_roots: the folders (relative to the project folder) and URL prefixes (``s3://lake/
            features/``, ``https://host/pub/``; ``s3://`` alone for every bucket) that batch sources,
            entity-row files and outputs must lie under, symlinks and ``..`` resolved; None (the
            default, for the embedded set-up) checks nothing. Set it for a shared deployment, where
            whoever writes the registry should not make ingestion hosts read anything or fetch URLs.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    allowed_roots: tuple[str, ...] | None = None

    _roots = field_validator("allowed_roots", mode="before")(_split_names)


class Settings(BaseModel):
    """Everything configurable, validated. Build it with :func:`load_settings`.

    Attributes:
        project: the project (namespace) the client works in.
        registry: where definitions live: ``sqlite:///path``, ``postgresql://...`` or ``http://core:6565``.
        offline: the offline engine's section.
        online: the online store's section.
        serving_url: when set, online reads go through this serving service
            (``http://host:6566``, or ``grpc://host:6567`` for gRPC).
        serving_token: the bearer token sent to the serving service, if it requires one.
        core_token: the bearer token sent to the core service (``registry: http://...``), if
            it requires one (``PROVENDER_CORE_TOKEN``).
        core: the core service's own settings (``provender core``).
        jobs: how jobs report their progress to the registry.
        serving: the serving service's own settings (``provender serve``).
        stream: stream ingestion jobs' settings (``provender ingest-stream``).
        storage: object-store credentials and endpoints for ``s3://`` sources.
        sources: the allow-list of source and output paths (``sources.allowed_roots``).
        base_dir: directory that relative paths are resolved against (the config file's).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    project: str = "default"
    registry: str = "sqlite:///.provender/registry.db"
    offline: OfflineSection = Field(default_factory=OfflineSection)
    online: OnlineSection = Field(default_factory=OnlineSection)
    serving_url: str | None = None
    serving_token: SecretStr | None = None
    serving: ServingSection = Field(default_factory=ServingSection)
    core_token: SecretStr | None = None
    core: CoreSection = Field(default_factory=CoreSection)
    jobs: JobsSection = Field(default_factory=JobsSection)
    stream: StreamSection = Field(default_factory=StreamSection)
    storage: StorageSection = Field(default_factory=StorageSection)
    sources: SourcesSection = Field(default_factory=SourcesSection)
    base_dir: Path = Field(default_factory=Path.cwd)

    @field_validator("project")
    @classmethod
    def _check_project(cls, value: str) -> str:
        if not value or not value.replace("_", "a").replace("-", "a").isalnum() or not value[0].isalpha():
            raise ValueError(f"{value!r} is not a project name (letters, digits, '_' and '-', starting with a letter)")
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
        merged = _deep_merge(_drop_replaced_backends(merged, layer), layer)
    merged.setdefault("base_dir", path.parent.resolve() if path else Path.cwd())
    return validate_settings(merged)


def validate_settings(values: Mapping[str, Any]) -> Settings:
    """Return validated :class:`Settings` built from ``values``.

    Raises:
        ConfigError: naming the offending key.
    """
    try:
        return Settings.model_validate(dict(values))
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
        raise ConfigError("config", f"{str(path)!r} must hold a mapping of settings, got {type(data).__name__}")
    if "base_dir" in data:
        raise ConfigError("base_dir", "is derived from the config file's location and cannot be set")
    return data


def _read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings named by ``PROVENDER_*`` variables; other variables with the prefix are ignored.

    A variable that is not a setting is not an error (Kubernetes, for one, injects
    ``PROVENDER_SERVICE_HOST`` and ``PROVENDER_PORT_6566_TCP...`` for a Service named provender),
    but one that looks like a mistyped setting (``PROVENDER_ONLNE__STORE``) is logged as a warning.
    """
    known = [name for name in Settings.model_fields if name != "base_dir"]
    result: dict[str, Any] = {}
    for name, value in environ.items():
        suffix = name.removeprefix(ENV_PREFIX)
        if not name.startswith(ENV_PREFIX) or suffix == _ENV_CONFIG:
            continue
        keys = suffix.lower().split(ENV_NESTING)
        if keys[0] not in known:
            _warn_if_typo(name, keys, known)
            continue
        node = result
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(".".join(keys), f"environment variable {name} nests under a plain value")
        node[keys[-1]] = value
    return result


def _warn_if_typo(name: str, keys: list[str], known: list[str]) -> None:
    """Log a warning when ``name`` (not a setting, ignored) looks like a mistyped setting."""
    suffix = name.removeprefix(ENV_PREFIX)
    if _KUBERNETES_SERVICE_LINK.search(suffix):
        return
    guess = difflib.get_close_matches(keys[0], [*known, _ENV_CONFIG.lower()], n=1, cutoff=_TYPO_CUTOFF)
    if guess:
        meant = ENV_NESTING.join([guess[0], *keys[1:]]).upper()
        log.warning("ignoring environment variable %s: not a setting. Did you mean %s%s?", name, ENV_PREFIX, meant)
    elif len(keys) > 1:
        log.warning(
            "ignoring environment variable %s: %r is not a setting (settings: %s)", name, keys[0], ", ".join(known)
        )


def _drop_replaced_backends(merged: dict[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    """Drop the sections of ``merged`` whose backend ``layer`` replaces by another one.

    ``online: {store: sqlite, path: ...}`` in the file and ``PROVENDER_ONLINE__STORE=redis`` give
    the Redis store without the SQLite ``path``: options belong to the backend that was selected.
    """
    result = dict(merged)
    for section, (selector, default) in _SELECTORS.items():
        top = layer.get(section)
        if isinstance(top, BaseModel):
            top = top.model_dump()
        below = result.get(section)
        if not isinstance(top, Mapping) or selector not in top or below is None:
            continue
        below_values = below.model_dump() if isinstance(below, BaseModel) else below
        current = below_values.get(selector, default) if isinstance(below_values, Mapping) else default
        if str(top[selector]) != str(current):
            del result[section]
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
        known = [name for name in _model_at(error["loc"][:-1]).model_fields if name != "base_dir"]
        hint = did_you_mean(str(error["loc"][-1]), known) or f" Known settings: {', '.join(known)}."
        return ConfigError(key, f"unknown setting.{hint}")
    return ConfigError(key, f"{error['msg']} (got {error.get('input')!r})")


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel]:
    """The settings model holding the key at ``loc`` (``("serving", "auth")`` -> AuthSection)."""
    model: type[BaseModel] = Settings
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    return model


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
