"""The S3 side shared by ``sources.py`` and ``sql_sources.py``: an S3-compatible server (moto, on
loopback), a byte-counting proxy in front of it, the driver table laid out locally, in S3 and as
an S3 Delta table, and a Provender client that reaches the server through the proxy.

Both benchmarks import it with their own directory on ``sys.path``: ``from _s3 import ...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from _data import SCENARIO_DAYS, SCENARIO_START, ScenarioFiles
from _services import free_port

if TYPE_CHECKING:
    from multiprocessing.sharedctypes import Synchronized

    import provender as pv

KEY, SECRET, BUCKET = "AKIABENCHMARK0000001", "benchmark-secret-key", "bench"
END = SCENARIO_START + timedelta(days=SCENARIO_DAYS)
INGEST_START = END - timedelta(days=7)


@contextlib.contextmanager
def moto(directory: Path) -> Iterator[tuple[str, int]]:
    """Run moto's S3 server (this interpreter's) on a free loopback port; yield its URL and pid."""
    binary = Path(sys.executable).parent / "moto_server"
    if not binary.exists():
        sys.exit("moto_server not found beside this python: pip install 'moto[server]' (make test-deps)")
    port = free_port()
    with (directory / "moto.log").open("wb") as log:
        proc = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                break
            time.sleep(0.05)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


def _proxy(listen: int, target: int, counter: Synchronized[int]) -> None:
    """Forward 127.0.0.1:listen to 127.0.0.1:target, adding the bytes the target answers to ``counter``."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: bool) -> None:
        try:
            while data := await reader.read(1 << 16):
                if count:
                    with counter.get_lock():
                        counter.value += len(data)
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(pipe(client_reader, server_writer, False), pipe(server_reader, client_writer, True))

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", listen)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


@contextlib.contextmanager
def counting_proxy(target_url: str) -> Iterator[tuple[str, Synchronized[int], int]]:
    """A byte-counting proxy (its own process) in front of ``target_url``; yield its URL, its counter and its pid."""
    context = multiprocessing.get_context("spawn")
    counter = context.Value("q", 0)
    port = free_port()
    target = int(target_url.rsplit(":", 1)[1])
    proc = context.Process(target=_proxy, args=(port, target, counter), daemon=True)
    proc.start()
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1):
                break
            time.sleep(0.05)
        assert proc.pid is not None
        yield f"http://127.0.0.1:{port}", counter, proc.pid
    finally:
        proc.terminate()
        proc.join(10)


def storage_options(url: str) -> dict[str, str]:
    """deltalake's options for the server at ``url`` (writing the Delta tables)."""
    return {
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": url,
        "AWS_ALLOW_HTTP": "true",
        "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
    }


def with_dates(path: Path) -> pa.Table:
    """The Parquet file at ``path`` with a ``date`` column (``YYYY-MM-DD`` of its event time)."""
    table = pq.read_table(path)
    return table.append_column("date", pc.strftime(table["event_timestamp"], format="%Y-%m-%d"))


def prepare(files: ScenarioFiles, work: Path, url: str) -> dict[str, str]:
    """Lay the driver table out locally (hive), in S3 (the same files) and as an S3 Delta table."""
    import deltalake

    rows = with_dates(files.driver_stats)
    local = work / "driver_parquet"
    ds.write_dataset(rows, local, format="parquet", partitioning=["date"], partitioning_flavor="hive")
    fs = pafs.S3FileSystem(
        endpoint_override=url.removeprefix("http://"), scheme="http", access_key=KEY, secret_key=SECRET,
        region="us-east-1", allow_bucket_creation=True,
    )  # fmt: skip
    fs.create_dir(BUCKET)
    pafs.copy_files(str(local), f"{BUCKET}/driver_parquet", destination_filesystem=fs)
    deltalake.write_deltalake(
        f"s3://{BUCKET}/driver_delta", rows, partition_by=["date"], storage_options=storage_options(url)
    )
    return {
        "local": str(local),
        "s3-parquet": f"s3://{BUCKET}/driver_parquet",
        "s3-parquet-pyarrow": f"s3://{BUCKET}/driver_parquet",
        "s3-delta": f"s3://{BUCKET}/driver_delta",
    }


def s3_client(project: Path, url: str, sections: Mapping[str, object] | None = None) -> pv.Client:
    """A client of a new project in ``project`` (SQLite registry) whose ``storage.s3`` reaches ``url``.

    ``sections``: more top-level settings (``offline``, ``online``), written to ``provender.yaml``.
    """
    import provender as pv
    from provender.config import load_settings

    project.mkdir(parents=True, exist_ok=True)
    lines = [
        "registry: sqlite:///registry.db",
        *(f"{name}: {json.dumps(value)}" for name, value in (sections or {}).items()),
    ]
    (project / "provender.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    storage = {"s3": {"endpoint_url": url, "region": "us-east-1", "access_key_id": KEY, "secret_access_key": SECRET}}
    return pv.Client(settings=load_settings(project / "provender.yaml", environ={}, overrides={"storage": storage}))


def driver_source(path: str, kind: str) -> pv.FileSource | pv.DeltaSource:
    """The driver table's batch source at ``path`` (``prepare``'s): Delta for ``s3-delta``, else hive partitions."""
    import provender as pv

    if kind == "s3-delta":
        return pv.DeltaSource(path=path, event_timestamp_column="event_timestamp", created_timestamp_column="created")
    return pv.FileSource(
        path=path, event_timestamp_column="event_timestamp", created_timestamp_column="created",
        date_partition_column="date",
    )  # fmt: skip
