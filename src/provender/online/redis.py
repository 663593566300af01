"""The production online store: Redis, standalone or Cluster (``online: {store: redis, url: ...}``).

Key layout: one string key per (project, entity key, feature table)::

    pv:<project>:{<entity key>}:<feature table>   ->   packed row (codec.py)
    pv:default:{driver_id=i:1001}:driver_hourly_stats

* The entity key (``keys.py``) sits in a hash tag, so in a Redis Cluster every table of one
  entity lives in the same slot, and a read of several tables for one entity is one command on
  one node. (A string value can contain ``}``, which then ends the tag early; the tag is still
  the same for all of that entity's tables.)
* The project is in the key, so projects never see each other's rows.
* The value is a packed row: 16 version bytes, a 4-byte schema fingerprint and the features as
  msgpack (``codec.py``), typically 40-60 bytes for 5 features.

Why string keys and ``MGET`` rather than one hash per entity holding a field per table:
a read of any number of tables for any number of entity rows is then a single ``MGET`` (split
into a few ``MGET`` commands sent back-to-back for very large reads): one round trip, one
command for Redis to execute, one flat reply for hiredis to parse. ``benchmarks/online_read.py``
measures the alternatives on the same data and payloads (``benchmarks/results/online_read.md``;
100 entity rows x 2 tables = 200 values, p50 over two runs): ``MGET`` of these keys 0.20-0.27 ms,
one Lua script running the ``HMGET`` calls over hashes 0.49-0.55 ms, pipelined ``HMGET`` over
hashes 1.08-1.21 ms; for one entity row all three take 0.03-0.04 ms. A hash per entity saves
memory only when several tables share an entity key (with one table: 152 B per value either
way). Per-table keys also expire exactly: with ``key_ttl_from_max_age: true`` a row expires
``max_age`` after its event time (``SET ... PXAT``), which a shared hash (one TTL per key, on
Redis 7.0) could not do. Rows of a table with aggregations never expire: they hold aggregates,
which ``max_age`` does not bound (their plain features still read OUTSIDE_MAX_AGE past it).

Writes go through a Lua script (``_WRITE_SCRIPT``), so the event-time guard runs atomically on
the server: for each key it compares the stored row's 16 version bytes with the new row's, byte
by byte, and ``SET``s only if the new one is not older. Keys are sent in chunks of
``_KEYS_PER_SCRIPT`` per script call and ``_CALLS_PER_ROUND_TRIP`` calls per round trip. In a
cluster, a script call only holds keys of one slot and names the script by SHA (``EVALSHA``,
loading it on every node on ``NOSCRIPT``). A failure part-way leaves every key either old or
new, never half-written, and re-running the batch is safe.

On a standalone server, reads and writes bypass redis-py's command layer: commands are packed
by hiredis and sent on a pooled connection directly (see :meth:`RedisStore._execute`). In a
cluster, redis-py's ``mget_nonatomic`` groups keys by slot and pipelines one ``MGET`` per slot
(one round trip per node).

Each write also keeps the table's freshness in one hash per project,
``pv:<project>:freshness``: field ``e:<table>`` holds the newest event time written (Unix
microseconds; raised only, by ``_FRESHNESS_SCRIPT``) and ``w:<table>`` when the last write
happened. On a standalone server that call travels in the batch's last round trip; ``HMGET``
reads any number of tables at once.

Connection errors and timeouts become :class:`~provender.errors.BackendError` with
``retryable=True``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar, Protocol, Self, cast
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa
import redis
import redis.cluster
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from redis.backoff import ExponentialBackoff
from redis.connection import SSLConnection, parse_url
from redis.retry import Retry

from provender.config import validate_backend_config
from provender.definitions import FeatureTable
from provender.errors import BackendError
from provender.online import redis_tiles
from provender.online.codec import StoredRow, codec_for, encode_batch
from provender.online.redis_async import AsyncRedis, RedisAddress
from provender.online.store import DEFAULT_PROJECT, ReadRequest, StoreCapabilities, TableFreshness, now_micros
from provender.online.tiles import TileAppended, TileAppends, TileLayout, TileMerge

_hiredis_pack: Callable[[tuple[bytes | str, ...]], bytes] | None
try:
    import hiredis

    # Its stub types the argument as a 1-tuple; it takes any tuple of arguments.
    _hiredis_pack = cast("Callable[[tuple[bytes | str, ...]], bytes]", hiredis.pack_command)
except ImportError:  # pragma: no cover - hiredis is part of the redis extra
    _hiredis_pack = None

# KEYS[i]: a row's key; ARGV[i]: its packed row; ARGV[n + i] (only when expiring): the absolute
# expiry time in Unix milliseconds. Returns how many keys were written.
_WRITE_SCRIPT = """
local n = #KEYS
local expire = #ARGV == 2 * n
local written = 0
for i = 1, n do
  local new = ARGV[i]
  local old = redis.call('GET', KEYS[i])
  local newer = true
  if old and #old >= 16 then  -- the versions' 16 bytes compared as four big-endian uint32 (exact)
    local n1, n2, n3, n4 = struct.unpack('>I4I4I4I4', new)
    local o1, o2, o3, o4 = struct.unpack('>I4I4I4I4', old)
    if n1 ~= o1 then
      newer = n1 > o1
    elseif n2 ~= o2 then
      newer = n2 > o2
    elseif n3 ~= o3 then
      newer = n3 > o3
    elseif n4 ~= o4 then
      newer = n4 > o4
    end
  end
  if newer then
    if expire then
      redis.call('SET', KEYS[i], new, 'PXAT', ARGV[n + i])
    else
      redis.call('SET', KEYS[i], new)
    end
    written = written + 1
  end
end
return written
"""
# KEYS[1]: the project's freshness hash; ARGV: e:<table>, the batch's newest event time (us),
# w:<table>, the write time (us). Returns 0 (so replies still sum to the keys written).
_FRESHNESS_SCRIPT = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if (not old) or tonumber(ARGV[2]) > tonumber(old) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
return 0
"""
_WRITE_SHA = hashlib.sha1(_WRITE_SCRIPT.encode(), usedforsecurity=False).hexdigest()
_KEYS_PER_SCRIPT = 256
_CALLS_PER_ROUND_TRIP = 32  # script calls sent together: 8192 keys per round trip
_KEYS_PER_MGET = 2048
_SCAN_COUNT = 1000


class _Connection(Protocol):
    """The typed part of ``redis.connection.Connection`` that :meth:`RedisStore._execute` uses."""

    def pack_command(self, *args: bytes | str) -> list[bytes]: ...

    def pack_commands(self, commands: Sequence[Sequence[bytes | str]]) -> list[bytes]: ...

    def send_packed_command(self, command: list[bytes], check_health: bool = True) -> None: ...

    def read_response(self) -> object: ...

    def disconnect(self) -> None: ...


class _Pipeline(Protocol):
    """The typed part of redis-py's ``ClusterPipeline`` used for cluster writes."""

    def execute_command(self, *args: bytes | str) -> object: ...

    def execute(self) -> list[object]: ...


class RedisConfig(BaseModel):
    """Options of ``online: {store: redis}``.

    Attributes:
        url: ``redis://[user:password@]host:port/db`` or ``rediss://`` for TLS. For a cluster,
            any node's URL (the others are discovered).
        username: ACL user, if not in the URL.
        password: password, if not in the URL (kept secret: never logged).
        ssl: use TLS (same as a ``rediss://`` URL).
        ssl_ca_certs: CA bundle to verify the server's certificate (relative to the config file).
        cluster: connect to a Redis Cluster.
        key_ttl_from_max_age: expire each row ``max_age`` after its event time (tables
            without ``max_age`` never expire, nor tables with aggregations: ``max_age`` does not
            apply to aggregates). Expired rows read as NOT_FOUND.
        key_prefix: first part of every key (``pv``).
        socket_timeout_seconds: how long a command may take before it fails.
        connect_timeout_seconds: how long connecting may take.
        retries: how often a command is retried after a connection error.
        max_connections: size of the connection pool (None: unbounded).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    url: str = "redis://localhost:6379/0"
    username: str | None = None
    password: SecretStr | None = None
    ssl: bool = False
    ssl_ca_certs: str | None = None
    cluster: bool = False
    key_ttl_from_max_age: bool = False
    key_prefix: str = Field(default="pv", pattern=r"^[A-Za-z0-9_.-]+$")
    socket_timeout_seconds: float = Field(default=5.0, gt=0)
    connect_timeout_seconds: float = Field(default=2.0, gt=0)
    retries: int = Field(default=2, ge=0)
    max_connections: int | None = Field(default=None, gt=0)


class RedisStore:
    """Online rows in Redis; see the module docstring for the key layout and the guard."""

    config_model: ClassVar[type[BaseModel]] = RedisConfig

    def __init__(self, config: RedisConfig, *, base_dir: Path, project: str = DEFAULT_PROJECT) -> None:
        self.config = config
        self.project = project
        self._prefix = f"{config.key_prefix}:{project}:{{".encode()
        self._freshness_key = f"{config.key_prefix}:{project}:freshness".encode()
        self._where = _redacted(config.url)
        kwargs: dict[str, object] = {
            "socket_timeout": config.socket_timeout_seconds,
            "socket_connect_timeout": config.connect_timeout_seconds,
            "retry": Retry(ExponentialBackoff(cap=0.2, base=0.02), config.retries),
        }
        if config.username is not None:
            kwargs["username"] = config.username
        if config.password is not None:
            kwargs["password"] = config.password.get_secret_value()
        url = config.url
        if config.ssl and urlsplit(url).scheme == "redis":
            url = urlunsplit(urlsplit(url)._replace(scheme="rediss"))
        if config.ssl_ca_certs is not None:
            ca_path = Path(config.ssl_ca_certs).expanduser()
            kwargs["ssl_ca_certs"] = str(ca_path if ca_path.is_absolute() else base_dir / ca_path)
        if config.max_connections is not None:
            kwargs["max_connections"] = config.max_connections
        self._address = None if config.cluster else _async_address(url, config)
        self._async: AsyncRedis | None = None
        self.capabilities = StoreCapabilities(
            is_shared=True,
            is_persistent=True,
            reachable_from_executors=True,
            supports_key_expiry=config.key_ttl_from_max_age,
            async_reads=self._address is not None,
        )
        with self._errors("connect"):
            if config.cluster:
                self._cluster: redis.cluster.RedisCluster | None = _cluster_client(url, kwargs)
                self._redis: redis.Redis | None = None
            else:
                self._cluster = None
                self._redis = redis.Redis.from_url(url, **kwargs)

    @classmethod
    def from_options(cls, options: Mapping[str, object], *, base_dir: Path, project: str = DEFAULT_PROJECT) -> Self:
        """Connect to the Redis server or cluster at ``url`` (lazily: nothing is sent yet)."""
        config = validate_backend_config(RedisConfig, "online", {k: v for k, v in options.items() if k != "store"})
        assert isinstance(config, RedisConfig)
        return cls(config, base_dir=base_dir, project=project)

    # -- keys

    def key_of(self, table: FeatureTable, entity_key: bytes) -> bytes:
        """Return the Redis key of ``table``'s row for an encoded entity key."""
        return self._prefix + entity_key + b"}:" + table.name.encode()

    def _suffix(self, table: FeatureTable) -> bytes:
        return b"}:" + table.name.encode()

    # -- write

    def write(self, table: FeatureTable, rows: pa.Table) -> int:
        """Store the newest row per key under the event-time guard (a Lua script, pipelined)."""
        batch = encode_batch(table, rows)
        if not batch.keys:
            return 0
        prefix, suffix = self._prefix, self._suffix(table)
        keys = [prefix + key + suffix for key in batch.keys]
        expiries: list[bytes] | None = None
        if self.config.key_ttl_from_max_age and table.max_age is not None and not table.aggregations:
            max_age_ms = int(table.max_age.total_seconds() * 1000)
            expiries = [b"%d" % max(1, event // 1000 + max_age_ms) for event in batch.event_us]
        name = table.name.encode()
        freshness = (self._freshness_key, b"e:" + name, b"%d" % max(batch.event_us), b"w:" + name,
                     b"%d" % now_micros())  # fmt: skip
        with self._errors(f"write to feature table {table.name!r}"):
            if self._cluster is not None:
                written = self._write_cluster(keys, batch.rows, expiries)
                self._cluster.eval(_FRESHNESS_SCRIPT, 1, *freshness)
                return written
            commands = _script_calls([list(range(len(keys)))], keys, batch.rows, expiries)
            commands.append(("EVAL", _FRESHNESS_SCRIPT, b"1", *freshness))  # replies 0: the sum is unchanged
            written = 0
            for start in range(0, len(commands), _CALLS_PER_ROUND_TRIP):
                replies = self._execute(commands[start : start + _CALLS_PER_ROUND_TRIP])
                written += sum(cast(list[int], replies))
            return written

    def _write_cluster(self, keys: list[bytes], rows: list[bytes], expiries: list[bytes] | None) -> int:
        """Group keys by slot (a script call may only touch one slot) and pipeline the calls."""
        assert self._cluster is not None
        by_slot: dict[int, list[int]] = defaultdict(list)
        keyslot = cast("Callable[[bytes], int]", self._cluster.keyslot)
        for index, key in enumerate(keys):
            by_slot[keyslot(key)].append(index)
        # Slots hold few keys of a batch, so calls are small: send the script's SHA, not its body.
        commands = [
            ("EVALSHA", _WRITE_SHA, *command[2:])
            for command in _script_calls(list(by_slot.values()), keys, rows, expiries)
        ]
        pipeline = cast("Callable[..., _Pipeline]", self._cluster.pipeline)
        written = 0
        for start in range(0, len(commands), _CALLS_PER_ROUND_TRIP):
            for attempt in range(2):
                pipe = pipeline(transaction=False)
                for command in commands[start : start + _CALLS_PER_ROUND_TRIP]:
                    pipe.execute_command(*command)
                try:
                    written += sum(cast(list[int], pipe.execute()))
                    break
                except redis.exceptions.NoScriptError:
                    if attempt:
                        raise
                    # A node without the script (new, restarted or failed over): load it
                    # everywhere and resend; the calls are idempotent under the guard.
                    self._cluster.script_load(_WRITE_SCRIPT)
        return written

    # -- read

    def read(self, requests: Sequence[ReadRequest]) -> list[list[StoredRow | None]]:
        """Read every request's keys with one ``MGET`` round trip."""
        keys = self._keys(requests)
        if not keys:
            return [[] for _ in requests]
        with self._errors("read"):
            if self._cluster is not None:
                values = cast(list[bytes | None], self._cluster.mget_nonatomic(keys))
            else:
                values = _joined(self._execute(_mget_commands(keys)))
        return _decoded(requests, values)

    async def read_async(self, requests: Sequence[ReadRequest]) -> list[list[StoredRow | None]]:
        """:meth:`read`, awaited on the running event loop (``capabilities.async_reads``; see ``redis_async.py``).

        Raises:
            BackendError: the store failed (retryable for connection errors and timeouts).
            TypeError: this store cannot read asynchronously (TLS or Cluster).
        """
        keys = self._keys(requests)
        if not keys:
            return [[] for _ in requests]
        try:
            replies = await self._async_client().execute(_mget_commands(keys))
        except redis.RedisError as exc:
            with self._errors("read"):  # the same BackendError as the blocking read (no context manager per read)
                raise exc from None
        return _decoded(requests, _joined(replies))

    def _keys(self, requests: Sequence[ReadRequest]) -> list[bytes]:
        keys: list[bytes] = []
        prefix = self._prefix
        for request in requests:
            suffix = self._suffix(request.table)
            keys += [prefix + key + suffix for key in request.keys]
        return keys

    def _async_client(self) -> AsyncRedis:
        """The client of the running loop (a store used from another loop gets another one)."""
        loop = asyncio.get_running_loop()
        client = self._async
        if client is None or client.loop is not loop:
            if self._address is None:
                raise TypeError("this Redis store cannot read asynchronously (TLS or Cluster)")
            if client is not None:
                client.close()
            client = self._async = AsyncRedis(self._address, loop)
        return client

    def _execute(self, commands: list[tuple[bytes | str, ...]]) -> list[object]:
        """Send ``commands`` back-to-back on one pooled connection and return their replies.

        This bypasses redis-py's command and pipeline layers, which re-check every argument in
        Python: packing with hiredis directly saves about 15 us per 100-key read and a third of
        the client time of a write. Every command sent here is idempotent (reads, and writes
        under the event-time guard), so a dead pooled connection (e.g. after a server restart)
        is retried once on a new one.
        """
        assert self._redis is not None
        pool = self._redis.connection_pool
        for attempt in range(2):
            pooled = pool.get_connection()
            connection = cast(_Connection, pooled)
            try:
                if len(commands) == 1:
                    connection.send_packed_command(self._pack(connection, commands[0]), check_health=False)
                    return [connection.read_response()]
                packed = b"".join(b"".join(self._pack(connection, command)) for command in commands)
                connection.send_packed_command([packed], check_health=False)
                return [connection.read_response() for _ in commands]
            except redis.ConnectionError:
                connection.disconnect()
                if attempt:
                    raise
            except BaseException:
                connection.disconnect()
                raise
            finally:
                pool.release(pooled)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _pack(connection: _Connection, command: tuple[bytes | str, ...]) -> list[bytes]:
        """Serialize a command; hiredis directly when present (redis-py's wrapper re-checks every argument)."""
        if _hiredis_pack is not None:
            return [_hiredis_pack(command)]
        return connection.pack_command(*command)

    def freshness(self, tables: Sequence[str]) -> dict[str, TableFreshness]:
        """Read the named tables' freshness with one ``HMGET``."""
        names = list(dict.fromkeys(tables))
        if not names:
            return {}
        fields = [prefix + name.encode() for name in names for prefix in (b"e:", b"w:")]
        with self._errors("read freshness"):
            client = self._cluster if self._cluster is not None else self._redis
            assert client is not None
            values = cast(list[bytes | None], client.hmget(self._freshness_key, fields))
        found: dict[str, TableFreshness] = {}
        for index, name in enumerate(names):
            newest, written = values[2 * index], values[2 * index + 1]
            if newest is not None and written is not None:
                found[name] = TableFreshness.from_micros(int(newest), int(written))
        return found

    # -- tiles (redis_tiles.py)

    def tile_key_of(self, table: FeatureTable, layout: TileLayout, entity_key: bytes) -> bytes:
        """Return the Redis key of ``table``'s tile record for an encoded entity key."""
        return self._prefix + entity_key + self._suffix(table) + b":t" + layout.id.encode()

    def read_tiles(
        self, table: FeatureTable, layout: TileLayout, keys: Sequence[bytes], fields: Sequence[bytes]
    ) -> list[list[bytes | None]]:
        """Per key, the values of ``fields`` of its tile record (one ``HMGET`` each, one round trip)."""
        records = [self.tile_key_of(table, layout, key) for key in keys]
        with self._errors(f"read the tiles of feature table {table.name!r}"):
            return redis_tiles.read(self._run, records, fields)

    def update_tiles(
        self,
        table: FeatureTable,
        layout: TileLayout,
        keys: Sequence[bytes],
        fields: Sequence[Sequence[bytes]],
        merge: TileMerge,
    ) -> None:
        """Read, merge and compare-and-set each key's tile record (``redis_tiles.py``)."""
        records = [self.tile_key_of(table, layout, key) for key in keys]
        with self._errors(f"write the tiles of feature table {table.name!r}"):
            run = self._loading(redis_tiles.CAS_SCRIPT)
            redis_tiles.update(run, records, fields, merge, group=lambda members: self._by_slot(records, members))

    def append_tiles(
        self, table: FeatureTable, layout: TileLayout, keys: Sequence[bytes], appends: TileAppends,
        lateness_us: int,
    ) -> list[TileAppended]:  # fmt: skip
        """Apply each key's folded batch without a read: one script call per chunk of keys (``redis_tiles.py``)."""
        if not keys:
            return []
        prefix, suffix = self._prefix, self._suffix(table) + b":t" + layout.id.encode()
        records = [prefix + key + suffix for key in keys]
        with self._errors(f"write the tiles of feature table {table.name!r}"):
            return redis_tiles.append(
                self._loading(redis_tiles.APPEND_SCRIPT), records, appends,
                reach_us=lateness_us + layout.longest_us, tile_us=layout.tile_us,
                group=lambda members: self._by_slot(records, members),
            )  # fmt: skip

    def _loading(self, script: str) -> redis_tiles.Run:
        """:meth:`_run`, with ``script`` loaded first (in the first round trip, on a standalone server)."""
        if self._cluster is not None:
            self._cluster.script_load(script)
            return self._run
        loaded = False

        def run(commands: list[tuple[bytes | str, ...]]) -> list[object]:
            nonlocal loaded
            if loaded:
                return self._run(commands)
            loaded = True
            return self._run([("SCRIPT", "LOAD", script), *commands])[1:]

        return run

    def _by_slot(self, records: Sequence[bytes], members: Sequence[int]) -> list[list[int]]:
        """Group record indexes by cluster slot (all together on a standalone server)."""
        if self._cluster is None:
            return [list(members)] if members else []
        keyslot = cast("Callable[[bytes], int]", self._cluster.keyslot)
        by_slot: dict[int, list[int]] = defaultdict(list)
        for index in members:
            by_slot[keyslot(records[index])].append(index)
        return list(by_slot.values())

    def _run(self, commands: list[tuple[bytes | str, ...]]) -> list[object]:
        """Send ``commands`` in one round trip (per node in a cluster) and return their replies."""
        if self._cluster is None:
            return self._execute(commands)
        pipe = cast("Callable[..., _Pipeline]", self._cluster.pipeline)(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return pipe.execute()

    # -- admin

    def ping(self) -> None:
        """Send ``PING`` (to every primary of a cluster)."""
        with self._errors("ping"):
            if self._cluster is not None:
                self._cluster.ping(target_nodes=redis.cluster.RedisCluster.PRIMARIES)
            else:
                assert self._redis is not None
                self._redis.ping()

    def server_version(self) -> str:
        """Return the server's ``redis_version`` (``INFO server``; for a cluster, one primary's)."""
        with self._errors("INFO server"):
            if self._cluster is not None:
                info = cast(
                    "dict[str, object]", self._cluster.info("server", target_nodes=redis.cluster.RedisCluster.RANDOM)
                )
            else:
                assert self._redis is not None
                info = cast("dict[str, object]", self._redis.info("server"))
        return str(info["redis_version"])

    def delete_table(self, table: FeatureTable) -> int:
        """Delete the table's keys and tile records in this project (``SCAN`` + ``UNLINK``); count the rows."""
        rows = self._prefix + b"*" + self._suffix(table)
        with self._errors(f"delete feature table {table.name!r}"):
            client = self._cluster if self._cluster is not None else self._redis
            assert client is not None
            deleted = self._delete_matching(client, rows)
            self._delete_matching(client, rows + b":t*")  # tile records (not counted: rows are)
            name = table.name.encode()
            client.hdel(self._freshness_key, b"e:" + name, b"w:" + name)
        return deleted

    def _delete_matching(self, client: redis.Redis | redis.cluster.RedisCluster, pattern: bytes) -> int:
        deleted = 0
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=_SCAN_COUNT):
            batch.append(key)
            if len(batch) >= _SCAN_COUNT:
                deleted += self._unlink(client, batch)
                batch = []
        if batch:
            deleted += self._unlink(client, batch)
        return deleted

    @staticmethod
    def _unlink(client: redis.Redis | redis.cluster.RedisCluster, keys: list[bytes]) -> int:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.unlink(key)
        return sum(cast(list[int], pipe.execute()))

    def close(self) -> None:
        """Close the connection pool(s) and the event loop's connection."""
        if self._async is not None:
            self._async.close()
            self._async = None
        if self._cluster is not None:
            # A cluster client made by from_url gives each node a pool that RedisCluster.close()
            # leaves open (redis-py 8), so disconnect them here (startup nodes included).
            manager = self._cluster.nodes_manager
            nodes = [*manager.nodes_cache.values(), *manager.startup_nodes.values()]
            self._cluster.close()
            for node in nodes:
                if node.redis_connection is not None:
                    node.redis_connection.connection_pool.disconnect()
        if self._redis is not None:
            self._redis.close()

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Turn redis-py errors into BackendError naming the server (never the password)."""
        try:
            yield
        except redis.AuthenticationError as exc:
            raise BackendError(f"Redis online store {self._where}: {what} failed: authentication: {exc}") from exc
        except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ClusterDownError) as exc:
            raise BackendError(
                f"Redis online store {self._where}: {what} failed: {type(exc).__name__}: {exc}. "
                "Check that the server is up and reachable; the operation is safe to retry.",
                retryable=True,
            ) from exc
        except redis.RedisError as exc:
            raise BackendError(f"Redis online store {self._where}: {what} failed: {exc}") from exc


def _cluster_client(url: str, options: dict[str, object]) -> redis.cluster.RedisCluster:
    """A cluster client from a node's URL, whose node clients own (and close) their pools.

    ``RedisCluster.from_url`` gives node clients shared-style pools that they never close, so
    their sockets outlive the client and are only reclaimed by the garbage collector.
    """
    params = dict(cast("Callable[[str], dict[str, object]]", parse_url)(url))
    if params.pop("connection_class", None) is SSLConnection:
        params["ssl"] = True
    params.pop("db", None)  # a cluster has only database 0
    params.update(options)
    return redis.cluster.RedisCluster(**params)  # type: ignore[arg-type]


def _mget_commands(keys: list[bytes]) -> list[tuple[bytes | str, ...]]:
    """``MGET`` in chunks of ``_KEYS_PER_MGET`` keys (sent in one round trip)."""
    return [("MGET", *keys[i : i + _KEYS_PER_MGET]) for i in range(0, len(keys), _KEYS_PER_MGET)]


def _joined(replies: list[object]) -> list[bytes | None]:
    if len(replies) == 1:
        return cast(list[bytes | None], replies[0])
    return [value for reply in replies for value in cast(list[bytes | None], reply)]


def _decoded(requests: Sequence[ReadRequest], values: list[bytes | None]) -> list[list[StoredRow | None]]:
    result, start = [], 0
    for request in requests:
        decode, end = codec_for(request.table).decode, start + len(request.keys)
        result.append([decode(value, key) for value, key in zip(values[start:end], request.keys, strict=True)])
        start = end
    return result


def _async_address(url: str, config: RedisConfig) -> RedisAddress | None:
    """Where the event-loop client connects, or None when it cannot (TLS)."""
    scheme = urlsplit(url).scheme
    if config.ssl or scheme not in ("redis", "unix"):
        return None
    params = cast("Callable[[str], dict[str, object]]", parse_url)(url)
    password = params.get("password")
    if config.password is not None:
        password = config.password.get_secret_value()
    username = config.username if config.username is not None else params.get("username")
    return RedisAddress(
        host=str(params.get("host", "localhost")),
        port=int(cast(int, params.get("port", 6379))),
        path=cast("str | None", params.get("path")),
        username=cast("str | None", username),
        password=cast("str | None", password),
        db=int(cast(int, params.get("db", 0))),
        connect_timeout=config.connect_timeout_seconds,
        command_timeout=config.socket_timeout_seconds,
    )


def _script_calls(
    groups: list[list[int]], keys: list[bytes], rows: list[bytes], expiries: list[bytes] | None
) -> list[tuple[bytes | str, ...]]:
    """One ``EVAL`` of the write script per chunk of each group of key indexes."""
    commands: list[tuple[bytes | str, ...]] = []
    for group in groups:
        for start in range(0, len(group), _KEYS_PER_SCRIPT):
            chunk = group[start : start + _KEYS_PER_SCRIPT]
            args = [keys[i] for i in chunk] + [rows[i] for i in chunk]
            if expiries is not None:
                args += [expiries[i] for i in chunk]
            commands.append(("EVAL", _WRITE_SCRIPT, b"%d" % len(chunk), *args))
    return commands


def _redacted(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))
