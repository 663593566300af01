"""Throw-away servers for the benchmarks (loopback only, stopped by pid)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import redis


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """Run a redis-server on a free loopback port (no persistence); yield its URL; stop it."""
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server not found: apt-get install redis-server")
    port = free_port()
    argv = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(directory),
    ]
    with (directory / "redis.log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with redis.Redis.from_url(url) as probe:
                    probe.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.02)
        yield url
    finally:
        process.terminate()
        process.wait(10)


PG_BINDIR = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(argv: list[str]) -> list[str]:
    """Run as the ``postgres`` user when we are root (PostgreSQL refuses to run as root)."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@contextlib.contextmanager
def postgres_server(directory: Path) -> Iterator[str]:
    """Run a throw-away PostgreSQL 15 (trust auth, fsync off) on a free port; yield its admin URL; stop it.

    The URL names the ``postgres`` database; create a database per run with :func:`create_database`.
    """
    initdb, pg_ctl = PG_BINDIR / "initdb", PG_BINDIR / "pg_ctl"
    if not initdb.exists():
        sys.exit("PostgreSQL 15 not found: apt-get install postgresql-15 (or make system-deps)")
    base = directory / "pg"
    base.mkdir()
    directory.chmod(0o755)
    base.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    data, log, port = base / "data", base / "postgres.log", free_port()
    quiet = {"stdout": subprocess.DEVNULL, "check": True}
    subprocess.run(_as_postgres([str(initdb), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"]), **quiet)  # type: ignore[call-overload]
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {base} -c fsync=off -c synchronous_commit=off"
    subprocess.run(_as_postgres([str(pg_ctl), "-D", str(data), "-l", str(log), "-w", "-o", options, "start"]), **quiet)  # type: ignore[call-overload]
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres([str(pg_ctl), "-D", str(data), "-m", "fast", "-w", "stop"]), **quiet)  # type: ignore[call-overload]


def create_database(admin_url: str, name: str) -> str:
    """Create database ``name`` on the server of ``admin_url``; return its URL."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"'.encode())
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


@contextlib.contextmanager
def provender_process(config: Path, *args: str, ready_path: str = "/v1/ready", port: int) -> Iterator[str]:
    """Run ``provender --config CONFIG ARGS...`` (a service on ``port``); yield its URL once ready; SIGTERM it."""
    import urllib.error
    import urllib.request

    log = config.parent / f"{args[0]}-{port}.log"
    argv = [sys.executable, "-c", "from provender.cli.main import main; main()", "--config", str(config), *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVENDER_")}
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                sys.exit(f"provender {args[0]} exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(url + ready_path, timeout=2) as answer:
                    if answer.status == 200:
                        break
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                sys.exit(f"provender {args[0]} not ready after 60 s: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
