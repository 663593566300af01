"""Online reads through the serving service: ``Client(serving_url=...)``.

``http://host:6566`` (or ``https://``) uses the JSON API, ``grpc://host:6567`` (or ``grpcs://``
for TLS) the gRPC API. Either way :meth:`RemoteReader.read` returns an
:class:`~provender.online.read.OnlineResponse` equal to an in-process read of the same data:
``to_dict()``, ``statuses()`` and ``to_arrow()`` give the same columns, values (bytes, UTC
datetimes, NaN included) and types, because the service reports each column's type and the
values are decoded by it (see :mod:`provender.wire.codec`).

Errors come back as the same exception types (FeatureTableNotFoundError, FeatureRefError,
DataError, BackendError with ``retryable`` ...), rebuilt through their constructors with the
same attributes and the server's message (:mod:`provender.wire.errors`); a service that cannot
be reached is a retryable BackendError. Needs the ``serving`` extra.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Mapping, Sequence
from typing import Protocol
from urllib.parse import urlsplit

import pyarrow as pa

from provender import errors
from provender.definitions import ValueType
from provender.definitions.request import ref_list
from provender.online.read import FeatureStatus, OnlineResponse

try:
    import orjson

    from provender.wire import codec
    from provender.wire._proto import serving_pb2 as pb
    from provender.wire.errors import from_grpc_metadata, rebuild_error
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise errors.MissingExtraError("serving_url", extra="serving", missing=exc.name or "?") from exc

DEFAULT_TIMEOUT_SECONDS = 10.0
_GRPC_METHOD = "/provender.serving.v1.ServingService/GetOnlineFeatures"
_GRPC_STATUSES = {
    pb.FEATURE_STATUS_PRESENT: FeatureStatus.PRESENT,
    pb.FEATURE_STATUS_NOT_FOUND: FeatureStatus.NOT_FOUND,
    pb.FEATURE_STATUS_OUTSIDE_MAX_AGE: FeatureStatus.OUTSIDE_MAX_AGE,
    pb.FEATURE_STATUS_NULL_VALUE: FeatureStatus.NULL_VALUE,
    pb.FEATURE_STATUS_CORRUPT: FeatureStatus.CORRUPT,
}
_DECODED_TYPES = frozenset({ValueType.BYTES, ValueType.UNIX_TIMESTAMP, ValueType.FLOAT, ValueType.DOUBLE})


class RemoteReader(Protocol):
    """Reads online features from a serving service."""

    def read(self, feature_refs: Sequence[str], entity_rows: Sequence[Mapping[str, object]]) -> OnlineResponse:
        """Return the latest values of ``feature_refs`` for ``entity_rows``."""
        ...

    def close(self) -> None:
        """Close connections."""
        ...


def connect(url: str, *, project: str, token: str | None = None) -> RemoteReader:
    """Return a reader for the serving service at ``url`` (``http(s)://`` or ``grpc(s)://``).

    Raises:
        ConfigError: an unsupported URL scheme.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        return HttpReader(url, project=project, token=token)
    if scheme in ("grpc", "grpcs"):
        return GrpcReader(url, project=project, token=token)
    raise errors.ConfigError(
        "serving_url", f"{url!r}: expected http://host:6566, https://..., grpc://host:6567 or grpcs://..."
    )


class RemoteOnlineResponse(OnlineResponse):
    """An :class:`OnlineResponse` rebuilt from the service's answer (same methods, same values)."""

    __slots__ = ("_arrow_types", "_statuses")

    def __init__(
        self,
        *,
        columns: dict[str, list[object]],
        entity_columns: tuple[str, ...],
        feature_columns: tuple[str, ...],
        statuses: dict[str, list[FeatureStatus]],
        types: Mapping[str, ValueType],
    ) -> None:
        self._columns = columns
        self.entity_columns = entity_columns
        self.feature_columns = feature_columns
        self._statuses = statuses
        self._arrow_types = {name: value_type.to_arrow() for name, value_type in types.items()}

    def statuses(self) -> dict[str, list[FeatureStatus]]:
        """Return ``{<table>__<feature>: [status per entity row]}``."""
        return {name: list(self._statuses[name]) for name in self.feature_columns}

    def to_arrow(self) -> pa.Table:
        """Return the values as an Arrow table, typed by the registry."""
        return pa.table(
            {name: pa.array(values, type=self._arrow_types.get(name)) for name, values in self._columns.items()}
        )


def _entity_columns(entity_rows: Sequence[Mapping[str, object]]) -> tuple[dict[str, list[object]], tuple[str, ...]]:
    """The columns to send (every key of any row), and the result's entity columns (the first row's)."""
    if isinstance(entity_rows, Mapping | str | bytes):
        raise errors.DataError("entity_rows must be a list of mappings, e.g. [{'driver_id': 1001}]; got one mapping.")
    columns = codec.columns_of_rows(entity_rows)
    names = tuple(entity_rows[0]) if entity_rows else ()
    return columns, names


def _response(
    entity_rows: Sequence[Mapping[str, object]],
    names: tuple[str, ...],
    features: dict[str, list[object]],
    statuses: dict[str, list[FeatureStatus]],
    types: Mapping[str, ValueType],
) -> RemoteOnlineResponse:
    columns: dict[str, list[object]] = {name: [row.get(name) for row in entity_rows] for name in names}
    if not entity_rows:
        names = tuple(name for name in types if name not in features)
        columns = {name: [] for name in names}
    columns.update(features)
    return RemoteOnlineResponse(
        columns=columns,
        entity_columns=names,
        feature_columns=tuple(features),
        statuses=statuses,
        types=types,
    )


def _unreachable(url: str, exc: BaseException) -> errors.BackendError:
    return errors.BackendError(
        f"Serving service {url}: {type(exc).__name__}: {exc}. Check that it runs and is reachable; "
        "the read is safe to retry.",
        retryable=True,
    )


class HttpReader:
    """Reads through ``POST /v1/online-features`` (one keep-alive connection per thread)."""

    def __init__(
        self, url: str, *, project: str, token: str | None = None, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    ) -> None:
        parts = urlsplit(url)
        self.url = url
        self.project = project
        self._secure = parts.scheme.lower() == "https"
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if self._secure else 80)
        self._path = parts.path.rstrip("/") + "/v1/online-features"
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token}"
        self._timeout = timeout_seconds
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def read(self, feature_refs: Sequence[str], entity_rows: Sequence[Mapping[str, object]]) -> OnlineResponse:
        """Return the service's answer for ``feature_refs`` and ``entity_rows``."""
        feature_refs = ref_list(feature_refs)  # the request model's check, before anything is sent
        columns, names = _entity_columns(entity_rows)
        request = {
            "features": list(feature_refs),
            "entities": columns,
            "project": self.project,
            "include_statuses": True,
            "include_types": True,
        }
        try:
            body = orjson.dumps(request, default=codec.json_default, option=orjson.OPT_SERIALIZE_NUMPY)
        except TypeError as exc:
            raise errors.DataError(f"entity_rows cannot be sent to the serving service: {exc}") from None
        status, payload = self._post(body)
        answer = orjson.loads(payload) if payload else {}
        if status != 200:
            detail = answer.get("error", {}) if isinstance(answer, dict) else {}
            fields = detail.get("fields")
            raise rebuild_error(
                str(detail.get("type", "")),
                code=str(detail.get("code", "")),
                message=str(detail.get("message", f"HTTP {status} from {self.url}")),
                fields=fields if isinstance(fields, dict) else None,
            )
        types = {name: ValueType(value) for name, value in answer.get("types", {}).items()}
        statuses = {name: [FeatureStatus(s) for s in values] for name, values in answer.get("statuses", {}).items()}
        features: dict[str, list[object]] = {}
        for name in statuses:
            values = answer["columns"][name]
            value_type = types.get(name)
            if value_type is not None and (value_type.is_list or value_type in _DECODED_TYPES):
                if value_type in (ValueType.FLOAT, ValueType.DOUBLE) and not any(type(v) is str for v in values):
                    pass
                else:
                    values = [codec.from_json_value(value, value_type) for value in values]
            features[name] = values
        return _response(entity_rows, names, features, statuses, types)

    def _post(self, body: bytes) -> tuple[int, bytes]:
        for attempt in range(2):
            connection = self._connection()
            try:
                connection.request("POST", self._path, body=body, headers=self._headers)
                response = connection.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                # A keep-alive connection the server closed meanwhile: retry once on a new one.
                connection.close()
                if attempt:
                    raise _unreachable(self.url, exc) from exc
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                raise _unreachable(self.url, exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _connection(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            cls = http.client.HTTPSConnection if self._secure else http.client.HTTPConnection
            connection = cls(self._host, self._port, timeout=self._timeout)
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._local = threading.local()


class GrpcReader:
    """Reads through ``provender.serving.v1.ServingService/GetOnlineFeatures``."""

    def __init__(
        self, url: str, *, project: str, token: str | None = None, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    ) -> None:
        import grpc

        self._grpc = grpc
        parts = urlsplit(url)
        self.url = url
        self.project = project
        target = f"{parts.hostname or 'localhost'}:{parts.port or 6567}"
        if parts.scheme.lower() == "grpcs":
            self._channel = grpc.secure_channel(target, grpc.ssl_channel_credentials())
        else:
            self._channel = grpc.insecure_channel(target)
        self._call = self._channel.unary_unary(
            _GRPC_METHOD,
            request_serializer=pb.GetOnlineFeaturesRequest.SerializeToString,
            response_deserializer=pb.GetOnlineFeaturesResponse.FromString,
        )
        self._metadata = None if token is None else (("authorization", f"Bearer {token}"),)
        self._timeout = timeout_seconds

    def read(self, feature_refs: Sequence[str], entity_rows: Sequence[Mapping[str, object]]) -> OnlineResponse:
        """Return the service's answer for ``feature_refs`` and ``entity_rows``."""
        feature_refs = ref_list(feature_refs)  # the request model's check, before anything is sent
        columns, names = _entity_columns(entity_rows)
        request = pb.GetOnlineFeaturesRequest(project=self.project, include_statuses=True)
        request.features.extend(feature_refs)
        for name, values in columns.items():
            column = request.entities.add()
            column.name = name
            value_type = codec.infer_value_type(name, values)
            codec.fill_column(column, codec.prepare_values(values, value_type), value_type)
        try:
            response = self._call(request, timeout=self._timeout, metadata=self._metadata)
        except self._grpc.RpcError as exc:
            raise self._error(exc) from None
        statuses = {column.name: [_GRPC_STATUSES[code] for code in column.statuses] for column in response.statuses}
        features = {column.name: codec.read_column(column) for column in response.columns if column.name in statuses}
        types = {column.name: ValueType(column.value_type) for column in response.columns if column.value_type}
        return _response(entity_rows, names, features, statuses, types)

    def _error(self, exc: BaseException) -> errors.ProvenderError:
        grpc = self._grpc
        if not isinstance(exc, grpc.Call):
            return _unreachable(self.url, exc)
        code = exc.code()
        kind, fields = from_grpc_metadata(exc.trailing_metadata())
        if not kind and code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return _unreachable(self.url, RuntimeError(exc.details() or code.name))
        return rebuild_error(
            kind, code=code.name if code is not None else "", message=exc.details() or "", fields=fields
        )

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()
