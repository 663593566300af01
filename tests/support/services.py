"""Real local servers for the test suite: Redis, a Redis Cluster, PostgreSQL and a Kafka broker.

Registered as a pytest plugin from ``tests/conftest.py``.  Every server listens on a free
loopback port picked at run time, lives in its own temporary directory, and is stopped by
pid when the session ends.  Cleanup also runs from ``atexit`` and on SIGTERM, so an
interrupted session does not leave servers behind.

A missing binary or client module skips the tests that need it, naming what is missing;
with ``PROVENDER_REQUIRE_SERVICES=1`` (set by CI) it fails them instead.  A server that is
installed but does not come up is always an error, reported with the tail of its log.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import FrameType, ModuleType
from typing import NoReturn, TypeVar

import pytest

REQUIRE_ENV = "PROVENDER_REQUIRE_SERVICES"
INSTALL_HINT = "install with `make test-deps`"
HOST = "127.0.0.1"
PG_BINDIRS = ("/usr/lib/postgresql/15/bin",)
PG_DATABASE = "provender_test"
NOIDA_PIN = "noida-db==0.2.3"
# Readiness deadlines are generous: CI runs seven suites at once on two cores, where a JVM or
# PostgreSQL can take minutes to come up. A process that dies fails at once (``alive``).
START_TIMEOUT = 120.0
STOP_TIMEOUT = 10.0
POLL_INTERVAL = 0.02
LOG_TAIL_CHARS = 4000

_TIMINGS_KEY = pytest.StashKey[dict[str, float]]()
T = TypeVar("T")


# --------------------------------------------------------------------------- availability


def service_unavailable(reason: str) -> NoReturn:
    """Skip the requesting test because a service cannot run here, or fail it in strict mode.

    Strict mode (``PROVENDER_REQUIRE_SERVICES=1``) is for CI, where a silently skipped
    integration suite would hide a broken machine.
    """
    message = f"{reason}; {INSTALL_HINT}"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{message} ({REQUIRE_ENV}=1 turns this skip into a failure)", pytrace=False)
    pytest.skip(message)


def require_binary(name: str, package: str, search: Sequence[str] = ()) -> str:
    """Return the path of executable ``name`` (``search`` dirs first, then PATH) or skip/fail."""
    for directory in search:
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found is None:
        service_unavailable(f"`{name}` not found (Debian package {package})")
    return found


def require_module(name: str, pip_name: str) -> ModuleType:
    """Import and return module ``name`` or skip/fail naming the pip package that provides it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        error = exc
    service_unavailable(f"Python module `{name}` cannot be imported ({error}; pip package {pip_name})")


# --------------------------------------------------------------------------- small helpers


def free_port() -> int:
    """Return a TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int, host: str = HOST) -> bool:
    """Return True if a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class PortTakenError(RuntimeError):
    """Another process listens on a port a test server was given.

    :func:`free_port` only guesses: between its answer and our server's ``bind`` another
    test's server (the suite runs several groups at once) can take the port, and would
    then answer our readiness probe. Launchers retry on fresh ports when this is raised.
    """


def listening_pids(port: int) -> set[int]:
    """Return the pids of the processes holding a listening TCP socket on ``port`` (read from /proc)."""
    wanted: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()  # sl local_address rem_address st ... uid timeout inode
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                wanted.add(f"socket:[{fields[9]}]")
    pids: set[int] = set()
    if not wanted:
        return pids
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):  # the process went away, or is not ours to read
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                        pids.add(int(pid))
                        break
    return pids


def _lineage(pid: int) -> set[int]:
    """Return ``pid`` and its ancestors (up to, not including, init)."""
    lineage: set[int] = set()
    while pid > 1 and pid not in lineage:
        lineage.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return lineage


def foreign_listeners(pid: int, port: int) -> set[int]:
    """Return the pids listening on ``port`` that are neither ``pid`` nor descended from it."""
    return {listener for listener in listening_pids(port) if pid not in _lineage(listener)}


def serves_port(pid: int, port: int) -> bool:
    """Return True if process ``pid`` (or a child of it) listens on ``port`` and no other process does."""
    listeners = listening_pids(port)
    return bool(listeners) and all(pid in _lineage(listener) for listener in listeners)


def pid_alive(pid: int) -> bool:
    """Return True if process ``pid`` exists and is not a zombie.

    Daemonised servers are re-parented to PID 1, which may not reap them, so a stopped
    server can linger as a zombie; that counts as dead.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False  # exited between the two checks
    except OSError:
        return True  # no /proc: trust os.kill
    return stat_line.rsplit(")", 1)[1].split()[0] != "Z"


def read_log(path: Path) -> str:
    """Return the last few KB of a server log, or a note that there is none."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<no log at {path}: {exc}>"
    return text[-LOG_TAIL_CHARS:]


def wait_until(
    ready: Callable[[], bool],
    what: str,
    log: Path,
    timeout: float = START_TIMEOUT,
    alive: Callable[[], bool] = lambda: True,
) -> None:
    """Poll ``ready`` until it returns True; raise with the server log if it never does."""
    deadline = time.monotonic() + timeout
    while not ready():
        if not alive():
            raise RuntimeError(f"{what} exited during startup; log {log}:\n{read_log(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout:.0f}s; log {log}:\n{read_log(log)}")
        time.sleep(POLL_INTERVAL)


def wait_serving(
    ready: Callable[[], bool],
    what: str,
    log: Path,
    *,
    pid: int,
    ports: Sequence[int],
    optional_ports: Sequence[int] = (),
    timeout: float = START_TIMEOUT,
    alive: Callable[[], bool] = lambda: True,
) -> None:
    """:func:`wait_until` ``ready`` and process ``pid`` (or its children) alone listening on ``ports``.

    A readiness probe alone can be answered by another test's server that took the port first.
    ``optional_ports`` are ports the server listens on only if so configured (a serving's gRPC
    port): no other process may listen there.

    Raises:
        PortTakenError: our server did not come up and another process listens on one of ``ports``.
        RuntimeError: it did not come up for another reason.
    """

    def up() -> bool:
        if not ready():
            return False
        for port in ports:
            listeners = listening_pids(port)
            ours = {listener for listener in listeners if pid in _lineage(listener)}
            if ours and listeners - ours:  # both bound it with SO_REUSEPORT: connections are shared
                raise PortTakenError(f"{what}: port {port} shared with other processes {sorted(listeners - ours)}")
            if not ours or listeners - ours:
                return False
        for port in optional_ports:
            if others := foreign_listeners(pid, port):
                raise PortTakenError(f"{what}: port {port} taken by other processes {sorted(others)}")
        return True

    try:
        wait_until(up, what, log, timeout, alive)
    except PortTakenError:
        raise
    except RuntimeError as exc:
        taken = {port: sorted(others) for port in ports if (others := foreign_listeners(pid, port))}
        if taken:
            raise PortTakenError(f"{what}: ports taken by other processes (port: pids) {taken}") from exc
        raise


def on_free_ports(start: Callable[[], T], attempts: int = 3) -> T:
    """Return ``start()``, called again (it picks new ports) while it raises :class:`PortTakenError`."""
    for _ in range(attempts - 1):
        with contextlib.suppress(PortTakenError):
            return start()
    return start()


def run_checked(argv: Sequence[str], what: str, log: Path | None = None) -> str:
    """Run a short command; on failure raise with its output (and a server log, if given)."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        details = f"{proc.stdout}{proc.stderr}"
        if log is not None:
            details += f"\nlog {log}:\n{read_log(log)}"
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {' '.join(argv)}\n{details}")
    return proc.stdout


def terminate(pid: int, timeout: float = STOP_TIMEOUT) -> None:
    """Send SIGTERM to ``pid`` and wait for it to die; SIGKILL it after ``timeout`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL)
        if not pid_alive(pid):
            return
    raise RuntimeError(f"process {pid} survived SIGKILL")


# --------------------------------------------------------------------------- Redis


def redis_ping(port: int) -> bool:
    """Return True if a Redis server on ``port`` answers PING with PONG."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass(frozen=True)
class RedisServer:
    """A redis-server process on a fixed port and data directory; it can be stopped and restarted.

    ``pid`` is read from the pid file, so it is the current pid even after a restart.
    The server runs with ``--save ''`` and no AOF: a restart comes back empty.
    """

    port: int
    data_dir: Path
    argv: tuple[str, ...]
    host: str = HOST

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pidfile(self) -> Path:
        """The pid file redis-server writes after daemonising."""
        return self.data_dir / "redis.pid"

    @property
    def logfile(self) -> Path:
        """The server's log file."""
        return self.data_dir / "redis.log"

    @property
    def pid(self) -> int:
        """The running server's pid; RuntimeError if it is stopped."""
        pid = self._pid_or_none()
        if pid is None:
            raise RuntimeError(f"redis-server on port {self.port} is not running")
        return pid

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._pid_or_none() is not None

    def start(self) -> None:
        """Start the server (again) on the same port and directory; wait until it answers PING.

        A no-op if it is already running.
        """
        if self.running:
            return
        what = f"redis-server on port {self.port}"
        run_checked(self.argv, what, self.logfile)
        wait_until(
            lambda: redis_ping(self.port) and self._pid_or_none() is not None, what, self.logfile, alive=self._bound
        )
        wait_serving(lambda: True, what, self.logfile, pid=self.pid, ports=[self.port])

    def _bound(self) -> bool:
        """True unless the (daemonised) server logged that it could not listen on its port.

        It exits then, before writing its pid file. The log file is shared by every start in its
        directory, so only the line naming this port counts.

        Raises:
            PortTakenError: it could not listen on its port.
        """
        log = read_log(self.logfile)
        if f"Failed listening on port {self.port} " in log:
            raise PortTakenError(f"redis-server on port {self.port}: {log}")
        return True

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and wait until the process is gone.

        A no-op if it is already stopped.
        """
        pid = self._pid_or_none()
        if pid is not None:
            terminate(pid)
        self.pidfile.unlink(missing_ok=True)

    def _pid_or_none(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None


@dataclass(frozen=True)
class RedisCluster:
    """A 3-master Redis Cluster (no replicas). ``url`` points at the first node."""

    nodes: tuple[RedisServer, ...]

    @property
    def url(self) -> str:
        """``redis://`` URL of the first node; cluster clients discover the others from it."""
        return self.nodes[0].url

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every node, e.g. for ``redis.cluster.ClusterNode``."""
        return [(node.host, node.port) for node in self.nodes]


def redis_argv(redis_server: str, port: int, directory: Path, extra: Sequence[str] = ()) -> tuple[str, ...]:
    """Command line for a daemonised, non-persistent redis-server on ``port`` in ``directory``."""
    return (
        redis_server,
        "--port", str(port),
        "--bind", HOST,
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "yes",
        "--pidfile", str(directory / "redis.pid"),
        "--logfile", str(directory / "redis.log"),
        "--dir", str(directory),
        *extra,
    )  # fmt: skip


def cluster_node_args() -> tuple[str, ...]:
    """Extra redis-server options for a cluster node; the bus port is picked freely too."""
    return (
        "--cluster-enabled", "yes",
        "--cluster-config-file", "nodes.conf",
        "--cluster-port", str(free_port()),
        "--cluster-node-timeout", "5000",
    )  # fmt: skip


def cluster_state_ok(redis_cli: str, port: int) -> bool:
    """Return True if the node on ``port`` reports ``cluster_state:ok``."""
    argv = [redis_cli, "-h", HOST, "-p", str(port), "cluster", "info"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    return "cluster_state:ok" in proc.stdout


# --------------------------------------------------------------------------- PostgreSQL


@dataclass(frozen=True)
class PostgresServer:
    """A throw-away PostgreSQL cluster with an empty ``provender_test`` database.

    ``stop()``/``start()`` simulate an outage (data is kept); ``create_database`` gives a test
    a database of its own.
    """

    port: int
    data_dir: Path
    database: str = PG_DATABASE
    user: str = "postgres"
    host: str = HOST
    pg_ctl: str = "pg_ctl"
    log: Path | None = None

    @property
    def dsn(self) -> str:
        """``postgresql://postgres@127.0.0.1:PORT/provender_test``."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        """``postgresql://postgres@127.0.0.1:PORT/<database>``."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    @property
    def pid(self) -> int:
        """The postmaster pid (first line of ``postmaster.pid``)."""
        return int((self.data_dir / "postmaster.pid").read_text().split()[0])

    @property
    def running(self) -> bool:
        """True while the postmaster is alive."""
        try:
            return pid_alive(self.pid)
        except (OSError, ValueError, IndexError):
            return False

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions are cut) and wait until it is gone."""
        pg_stop(self.pg_ctl, self.data_dir)

    def start(self) -> None:
        """Start the stopped server again on the same port and data; wait until it answers."""
        if self.running:
            return
        log = self.log or self.data_dir.parent / "postgres.log"
        pg_start(self.pg_ctl, self.data_dir, log, self.port, socket_dir=self.data_dir.parent)
        psycopg = require_module("psycopg", "psycopg[binary]")
        admin = f"host={self.host} port={self.port} user={self.user} dbname=postgres"
        wait_until(lambda: pg_select_one(psycopg, admin), f"postgres on port {self.port}", log)

    def create_database(self, name: str) -> str:
        """Create an empty database ``name`` and return its URL."""
        psycopg = require_module("psycopg", "psycopg[binary]")
        admin = f"host={self.host} port={self.port} user={self.user} dbname=postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'create database "{name}"')
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, cutting any session still connected to it."""
        psycopg = require_module("psycopg", "psycopg[binary]")
        admin = f"host={self.host} port={self.port} user={self.user} dbname=postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


def as_postgres(argv: Sequence[str]) -> list[str]:
    """Prefix ``argv`` with ``runuser -u postgres --`` when running as root (postgres refuses root)."""
    if os.geteuid() == 0:
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        return [runuser, "-u", "postgres", "--", *argv]
    return list(argv)


def _user_exists(name: str) -> bool:
    """True if the local user ``name`` exists."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def pg_select_one(psycopg: ModuleType, conninfo: str) -> bool:
    """Return True if ``select 1`` succeeds on ``conninfo``."""
    try:
        with psycopg.connect(conninfo, connect_timeout=2) as conn:
            return bool(conn.execute("select 1").fetchone() == (1,))
    except psycopg.Error:
        return False


def pg_initdb(initdb: str, data: Path) -> None:
    """Create a cluster in ``data``: superuser postgres, trust auth, UTF8, C locale, no fsync."""
    argv = [
        initdb,
        "-D",
        str(data),
        "-U",
        "postgres",
        "-A",
        "trust",
        "-E",
        "UTF8",
        "--no-locale",
        "--no-sync",
    ]
    run_checked(as_postgres(argv), "initdb")


def pg_start(pg_ctl: str, data: Path, log: Path, port: int, socket_dir: Path) -> None:
    """``pg_ctl start -w`` on 127.0.0.1:``port``, socket in ``socket_dir``, durability off."""
    options = (
        f"-p {port} -c listen_addresses={HOST} -k {socket_dir} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    argv = [pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options, "start"]
    run_checked(as_postgres(argv), f"pg_ctl start (port {port})", log)


def pg_stop(pg_ctl: str, data: Path) -> None:
    """``pg_ctl -m fast stop`` if the postmaster is still running."""
    if (data / "postmaster.pid").exists():
        argv = [pg_ctl, "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop"]
        run_checked(as_postgres(argv), "pg_ctl stop")


# --------------------------------------------------------------------------- Kafka (noida-db)


@dataclass(frozen=True)
class KafkaBroker:
    """A single-node Kafka-protocol broker (noida-db) with its data in ``data_dir``."""

    port: int
    pid: int
    data_dir: Path
    host: str = HOST

    @property
    def bootstrap_servers(self) -> str:
        """``127.0.0.1:PORT``, for the ``bootstrap.servers`` client setting."""
        return f"{self.host}:{self.port}"


def noida_binary() -> str:
    """Path of the broker binary bundled in the noida_db wheel (not its Python wrapper script).

    Killing the console-script wrapper would orphan the real broker, so we run the binary.
    """
    module = require_module("noida_db", NOIDA_PIN)
    module_file = module.__file__ or ""
    binary = os.path.join(os.path.dirname(module_file), "noida-db")
    if not os.path.isfile(binary):
        service_unavailable(f"noida_db is installed but has no bundled binary at {binary} ({NOIDA_PIN})")
    if not os.access(binary, os.X_OK):
        os.chmod(binary, os.stat(binary).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return binary


def noida_argv(binary: str, port: int, data: Path) -> list[str]:
    """Command line for a Kafka-only noida-db broker on 127.0.0.1:``port``."""
    return [
        binary, "start", "--only", "kafka",
        "--host", HOST,
        "--kafka-port", str(port),
        "--data-dir", str(data),
    ]  # fmt: skip


def spawn(argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    """Start a foreground server as a child process with stdout and stderr going to ``log``."""
    with log.open("wb") as log_file:
        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT)


def popen_stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM a child process, SIGKILL it after STOP_TIMEOUT seconds, and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def kafka_metadata_ok(confluent_kafka: ModuleType, bootstrap: str) -> bool:
    """Return True if an AdminClient gets cluster metadata listing at least one broker."""
    admin = confluent_kafka.admin.AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000})
    try:
        metadata = admin.list_topics(timeout=2)
    except confluent_kafka.KafkaException:
        return False
    return bool(metadata.brokers)


# --------------------------------------------------------------------------- lifecycle


class Services:
    """Starts servers for one test session and guarantees they are stopped.

    Cleanups run in reverse order from :meth:`close`, which the session fixture's
    finalizer, ``atexit`` and a SIGTERM handler all call; it is idempotent.
    """

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._cleanups: list[tuple[str, Callable[[], None]]] = []
        self._lock = threading.Lock()
        self._closed = False
        atexit.register(self.close)

    # -- bookkeeping

    def add_cleanup(self, what: str, cleanup: Callable[[], None]) -> None:
        """Register ``cleanup`` to run at :meth:`close` (last registered runs first)."""
        with self._lock:
            self._cleanups.append((what, cleanup))

    def make_dir(self, name: str) -> Path:
        """Create a world-traversable temporary directory that is deleted at :meth:`close`.

        Mode 0755 so that the ``postgres`` user can reach data directories inside it.
        """
        path = Path(tempfile.mkdtemp(prefix=f"provender-{name}-"))
        path.chmod(0o755)
        self.add_cleanup(f"remove {path}", lambda: shutil.rmtree(path, ignore_errors=True))
        return path

    def close(self) -> None:
        """Stop every server and remove every temporary directory; raise if a cleanup failed."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            cleanups, self._cleanups = self._cleanups[::-1], []
        atexit.unregister(self.close)
        errors = []
        for what, cleanup in cleanups:
            try:
                cleanup()
            except Exception as exc:  # noqa: BLE001 - keep stopping the others, report at the end
                errors.append(f"{what}: {exc}")
        if errors:
            raise RuntimeError("service cleanup failed:\n" + "\n".join(errors))

    def _timed(self, name: str, started: float) -> None:
        self.timings[name] = time.monotonic() - started

    # -- Redis

    def start_redis(self, name: str = "redis", extra_args: Sequence[str] = ()) -> RedisServer:
        """Start a standalone redis-server on a free port."""
        started = time.monotonic()
        binary = require_binary("redis-server", "redis-server")
        directory = self.make_dir(name)

        def start() -> RedisServer:
            port = free_port()
            server = RedisServer(port=port, data_dir=directory, argv=redis_argv(binary, port, directory, extra_args))
            self.add_cleanup(f"stop {name} (port {port})", server.stop)
            server.start()
            return server

        server = on_free_ports(start)
        self._timed(name, started)
        return server

    def start_redis_cluster(self, masters: int = 3) -> RedisCluster:
        """Start ``masters`` cluster-enabled redis-servers and join them into one cluster."""
        started = time.monotonic()
        redis_cli = require_binary("redis-cli", "redis-tools")
        nodes = tuple(self.start_redis(f"redis-cluster-{i}", cluster_node_args()) for i in range(masters))
        create = [redis_cli, "--cluster", "create", *(f"{HOST}:{n.port}" for n in nodes)]
        run_checked([*create, "--cluster-replicas", "0", "--cluster-yes"], "redis-cli --cluster create")
        for node in nodes:
            wait_until(partial(cluster_state_ok, redis_cli, node.port), "cluster_state:ok", node.logfile)
        self._timed("redis-cluster", started)
        return RedisCluster(nodes=nodes)

    # -- PostgreSQL

    def start_postgres(self) -> PostgresServer:
        """initdb a fresh cluster, start it on a free port and create ``provender_test``."""
        started = time.monotonic()
        psycopg = require_module("psycopg", "psycopg[binary]")
        initdb = require_binary("initdb", "postgresql-15", PG_BINDIRS)
        pg_ctl = require_binary("pg_ctl", "postgresql-15", PG_BINDIRS)
        if os.geteuid() == 0 and not _user_exists("postgres"):
            service_unavailable("running as root, but no `postgres` user exists (Debian package postgresql-15)")
        base = self.make_dir("pg")
        if os.geteuid() == 0:
            shutil.chown(base, "postgres", "postgres")
        data, log, port = base / "data", base / "postgres.log", free_port()
        pg_initdb(initdb, data)
        self.add_cleanup(f"stop postgres (port {port})", lambda: pg_stop(pg_ctl, data))
        pg_start(pg_ctl, data, log, port, socket_dir=base)
        admin = f"host={HOST} port={port} user=postgres dbname=postgres"
        wait_until(lambda: pg_select_one(psycopg, admin), f"postgres on port {port}", log)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"create database {PG_DATABASE}")
        self._timed("postgres", started)
        return PostgresServer(port=port, data_dir=data, pg_ctl=pg_ctl, log=log)

    # -- Kafka

    def start_kafka(self) -> KafkaBroker:
        """Start a noida-db Kafka-protocol broker on a free port; wait for metadata to be served."""
        started = time.monotonic()
        confluent_kafka = require_module("confluent_kafka", "confluent-kafka")
        importlib.import_module("confluent_kafka.admin")
        binary = noida_binary()
        base = self.make_dir("kafka")

        def start() -> KafkaBroker:
            data, log, port = base / f"data-{uuid.uuid4().hex[:6]}", base / "kafka.log", free_port()
            proc = spawn(noida_argv(binary, port, data), log)
            self.add_cleanup(f"stop kafka broker (pid {proc.pid})", lambda: popen_stop(proc))
            what, alive = f"noida-db kafka broker on port {port}", lambda: proc.poll() is None
            wait_serving(lambda: port_open(port), what, log, pid=proc.pid, ports=[port], alive=alive)
            wait_until(lambda: kafka_metadata_ok(confluent_kafka, f"{HOST}:{port}"), what, log, alive=alive)
            return KafkaBroker(port=port, pid=proc.pid, data_dir=data)

        broker = on_free_ports(start)
        self._timed("kafka", started)
        return broker


# --------------------------------------------------------------------------- signals


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt for the duration, so pytest tears fixtures down.

    Only installed from the main thread and only over the default handler.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def services(request: pytest.FixtureRequest) -> Iterator[Services]:
    """The session's :class:`Services`; stops everything it started at session end."""
    svc = Services()
    request.config.stash[_TIMINGS_KEY] = svc.timings
    with sigterm_interrupts():
        try:
            yield svc
        finally:
            svc.close()


@pytest.fixture(scope="session")
def redis_server(services: Services) -> RedisServer:
    """A standalone Redis 7 server; ``stop()``/``start()`` simulate an outage (data is lost)."""
    return services.start_redis()


@pytest.fixture(scope="session")
def redis_cluster(services: Services) -> RedisCluster:
    """A 3-master Redis Cluster with all 16384 slots assigned and ``cluster_state:ok``."""
    return services.start_redis_cluster()


@pytest.fixture(scope="session")
def postgres_server(services: Services) -> PostgresServer:
    """A PostgreSQL 15 server with an empty ``provender_test`` database (user postgres, trust)."""
    return services.start_postgres()


@pytest.fixture
def postgres_database(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh, empty database on the session's PostgreSQL server (dropped after the test)."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    url = postgres_server.create_database(name)
    yield url
    postgres_server.drop_database(name)


@pytest.fixture(scope="session")
def kafka_broker(services: Services) -> KafkaBroker:
    """A noida-db Kafka-protocol broker (single node; topics need replication factor 1)."""
    return services.start_kafka()


# --------------------------------------------------------------------------- reporting


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Print one line with how long each service took to start, if any were started."""
    timings = config.stash.get(_TIMINGS_KEY, {})
    if timings:
        parts = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in timings.items())
        terminalreporter.write_line(f"service startup: {parts}")
