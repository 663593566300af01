"""A minimal Confluent Schema Registry client: the writer schema of a schema id, cached.

Only ``GET <url>/schemas/ids/<id>`` is used; schemas never change under an id, so a fetched
schema is cached for the life of the client. An unknown id (HTTP 404) is remembered for
``MISSING_RETRY_SECONDS`` so a burst of records with a bad id costs one request, not one each.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from provender.errors import BackendError, ConfigError

log = logging.getLogger(__name__)

MISSING_RETRY_SECONDS = 30.0


class SchemaNotFoundError(LookupError):
    """The registry has no schema under the id (the record cannot be decoded)."""


class SchemaRegistryClient:
    """Fetch writer schemas by id from a Confluent-compatible schema registry.

    Args:
        url: the registry's base URL, ``http://host:8081`` (``https://`` for TLS; credentials
            in the URL are sent as HTTP basic auth by urllib's handlers only if configured).
        timeout_seconds: how long one HTTP request may take.

    Raises:
        ConfigError: the URL is not ``http://`` or ``https://``.
    """

    def __init__(self, url: str, *, timeout_seconds: float = 5.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError("stream.schema_registry_url", f"must be an http(s):// URL, got {url!r}")
        self.url = url.rstrip("/")
        self._timeout = timeout_seconds
        self._schemas: dict[int, dict[str, Any]] = {}
        self._missing: dict[int, float] = {}
        self._lock = threading.Lock()

    def schema(self, schema_id: int) -> dict[str, Any]:
        """Return the Avro schema (parsed JSON) registered under ``schema_id``.

        Raises:
            SchemaNotFoundError: no such id, or the schema is not Avro.
            BackendError: the registry could not be reached or answered badly (``retryable``).
        """
        cached = self._schemas.get(schema_id)
        if cached is not None:
            return cached
        with self._lock:
            missing_since = self._missing.get(schema_id)
            if missing_since is not None and time.monotonic() - missing_since < MISSING_RETRY_SECONDS:
                raise SchemaNotFoundError(f"schema id {schema_id} is not in the registry at {self.url}")
            schema = self._fetch(schema_id)
            self._schemas[schema_id] = schema
            self._missing.pop(schema_id, None)
            return schema

    def _fetch(self, schema_id: int) -> dict[str, Any]:
        url = f"{self.url}/schemas/ids/{schema_id}"
        accept = {"Accept": "application/vnd.schemaregistry.v1+json"}
        # The URL's scheme is http or https: checked when the client is made.
        request = urllib.request.Request(url, headers=accept)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                body = response.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                self._missing[schema_id] = time.monotonic()
                raise SchemaNotFoundError(f"schema id {schema_id} is not in the registry at {self.url}") from None
            raise BackendError(
                f"schema registry {self.url} answered HTTP {exc.code} for schema id {schema_id}",
                retryable=exc.code >= 500 or exc.code == 429,
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise BackendError(f"schema registry {self.url} is unreachable: {exc}", retryable=True) from None
        try:
            payload = json.loads(body)
            schema_type = payload.get("schemaType", "AVRO")
            schema = json.loads(payload["schema"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BackendError(f"schema registry {self.url} sent an unreadable schema {schema_id}: {exc}") from None
        if schema_type != "AVRO":
            self._missing[schema_id] = time.monotonic()
            raise SchemaNotFoundError(f"schema id {schema_id} is a {schema_type} schema, not Avro")
        log.debug("fetched schema id=%d registry=%s", schema_id, self.url)
        return schema if isinstance(schema, dict) else {"type": schema}
