"""Spark for the test suite: one local-mode session per run, and a standalone cluster on loopback.

Registered as a pytest plugin from ``tests/conftest.py``. A Spark session costs about 12 s to
start, so every local-mode test shares the ``spark_engine`` fixture's session; a client opened
with ``offline=spark_options`` joins that same session (Spark allows one per process).

``Services``-style cleanup: the standalone master and worker (``start_standalone``) are plain
``java`` processes from the pyspark package's jars, stopped by pid at session end.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.services import (
    HOST,
    Services,
    free_port,
    on_free_ports,
    popen_stop,
    port_open,
    read_log,
    require_binary,
    require_module,
    wait_serving,
    wait_until,
)

LOCAL_MASTER = "local[2]"
SPARK_START_TIMEOUT = 300.0  # a master and a worker JVM, started under CI's load
WORKER_CORES = 1
WORKER_MEMORY = "1g"
EXECUTOR_MEMORY = "512m"


def spark_home() -> Path:
    """The pyspark package directory, which holds Spark's jars (``SPARK_HOME``)."""
    pyspark = require_module("pyspark", "pyspark")
    assert pyspark.__file__ is not None  # a package installed from files
    return Path(pyspark.__file__).resolve().parent


def offline_options(master: str, staging: Path, **conf: str) -> dict[str, object]:
    """An ``offline:`` section for the Spark engine (small shuffles, driver on loopback)."""
    return {
        "engine": "spark",
        "master": master,
        "staging_path": str(staging),
        "conf": {"spark.sql.shuffle.partitions": "4", "spark.driver.memory": "1g", **conf},
    }


@pytest.fixture(scope="session")
def spark_options(services: Services) -> dict[str, object]:
    """The ``offline:`` section every local-mode Spark test uses (so they share one session)."""
    spark_home()
    require_binary("java", "openjdk-17-jre-headless")
    return offline_options(LOCAL_MASTER, services.make_dir("spark-staging"))


@pytest.fixture(scope="session")
def spark_engine(spark_options: dict[str, object], services: Services) -> Iterator[object]:
    """A SparkEngine on ``local[2]``, started once per test session and stopped at its end."""
    from provender.offline.spark import SparkEngine

    engine = SparkEngine.from_options(spark_options, base_dir=services.make_dir("spark-base"))
    try:
        yield engine
    finally:
        engine.close()


@dataclass(frozen=True)
class SparkStandalone:
    """A standalone master and one worker, on loopback."""

    master_url: str
    master_pid: int
    worker_pid: int
    spark_home: Path


def start_standalone(services: Services) -> SparkStandalone:
    """Start a Spark standalone master and a 1-core worker on free loopback ports.

    Uses ``java -cp $SPARK_HOME/jars/*`` directly: the pyspark wheel has the classes but not
    always the ``sbin`` scripts. ``SPARK_SCALA_VERSION`` lets the worker's launcher find the
    wheel's jars when it starts executors. Both are stopped by pid when ``services`` closes.
    """
    java = require_binary("java", "openjdk-17-jre-headless")
    home = spark_home()
    base = services.make_dir("spark-standalone")
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": HOST, "SPARK_SCALA_VERSION": _scala_version(home)}
    jvm = [java, "-Xmx512m", "-Dspark.master.rest.enabled=false", "-cp", f"{home}/jars/*"]
    master_log, worker_log = base / "master.log", base / "worker.log"

    def start_master() -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        master_args = ["--host", HOST, "--port", str(port), "--webui-port", str(free_port())]
        master = _spawn([*jvm, "org.apache.spark.deploy.master.Master", *master_args], master_log, env)
        services.add_cleanup(f"stop spark master (pid {master.pid})", lambda: popen_stop(master))
        wait_serving(
            lambda: port_open(port), f"spark master on port {port}", master_log, pid=master.pid, ports=[port],
            timeout=SPARK_START_TIMEOUT, alive=lambda: master.poll() is None,
        )  # fmt: skip
        return master, port

    master, port = on_free_ports(start_master)
    url = f"spark://{HOST}:{port}"
    worker_args = ["--host", HOST, "--cores", str(WORKER_CORES), "--memory", WORKER_MEMORY]
    worker_args += ["--webui-port", str(free_port()), "--work-dir", str(base / "work")]
    worker = _spawn([*jvm, "org.apache.spark.deploy.worker.Worker", url, *worker_args], worker_log, env)
    services.add_cleanup(f"stop spark worker (pid {worker.pid})", lambda: popen_stop(worker))
    wait_until(
        lambda: "Successfully registered with master" in read_log(worker_log), "spark worker registration",
        worker_log, SPARK_START_TIMEOUT, lambda: worker.poll() is None,
    )  # fmt: skip
    return SparkStandalone(master_url=url, master_pid=master.pid, worker_pid=worker.pid, spark_home=home)


def _scala_version(pyspark: Path) -> str:
    """The Scala version of the wheel's jars (``spark-core_2.13-...jar`` -> ``2.13``)."""
    core = next(pyspark.glob("jars/spark-core_*.jar"))
    return core.name.removeprefix("spark-core_").split("-", 1)[0]


def _spawn(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


@pytest.fixture(scope="session")
def spark_standalone(services: Services) -> SparkStandalone:
    """A Spark standalone cluster (master + one worker) on loopback, for the session."""
    return start_standalone(services)


def run_on_cluster(spec: dict[str, object]) -> dict[str, object]:
    """Run a retrieval and an ingestion through a project's client (in a process of its own).

    Spark allows one session per process and the test session holds a local one, so the
    standalone-cluster test calls this through ``python -m tests.support.spark SPEC_JSON``.
    """
    from datetime import datetime

    import provender as pv
    from provender.config import load_settings

    offline = dict(spec["offline"])  # type: ignore[call-overload]
    settings = load_settings(str(spec["config"]), environ={}, overrides={"offline": offline})
    with pv.Client(settings=settings) as client:
        engine = client._offline_engine()  # private, to report the application id
        job = client.get_historical_features(list(spec["refs"]), str(spec["entities"]))  # type: ignore[call-overload]
        rows = job.to_parquet(str(spec["out"]))
        ingestion = client.start_offline_to_online_ingestion(
            str(spec["table"]),
            start=datetime.fromisoformat(str(spec["start"])),
            end=datetime.fromisoformat(str(spec["end"])),
        ).wait(timeout_seconds=300)
        return {
            "rows": rows,
            "rows_written": ingestion.rows_written,
            "application_id": getattr(engine, "application_id", None),
            "master": client.settings.offline.model_dump()["master"],
        }


if __name__ == "__main__":
    import json
    import sys

    print("@@RESULT " + json.dumps(run_on_cluster(json.loads(sys.argv[1]))), flush=True)  # noqa: T201
