"""``make deploy-test``: the Helm chart's pods, for real, under ``podman kube play``.

PostgreSQL (the registry), Redis (the online store), a Kafka-protocol broker (noida-db) and an S3
server (moto) run on the host, on its own address so that the pods can reach them. The batch
sources are in the S3 bucket (a Parquet file and a Delta table); the chart is rendered with values
pointing at them all, the S3 keys in a Secret (``storage.s3.existingSecret``). Its core, serving
and stream-ingestion Deployments run as pods (image ``localhost/provender:<version>``,
``imagePullPolicy: Never``, ports published on 127.0.0.1); its migration Job and two batch-ingestion
CronJobs run their pod templates as pods. From the host the test applies definitions through the
core service, reads features over HTTP and gRPC, checks ``/metrics``, checks that the S3 secret is
in no pod's log, and tears everything down. One line per step; a failing step prints its logs.

Run as root after ``make image``:  ``.venv/bin/python scripts/deploy_test.py``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "provender"
PGBIN = Path("/usr/lib/postgresql/15/bin")
PREFIX = "deploytest-"  # of every pod this test plays (a left-over one is removed before the run)
RELEASE = "provender"  # Services provender-core/-serving: Kubernetes would inject PROVENDER_CORE_SERVICE_HOST...
POD_UID = 10001
START_TIMEOUT = 120.0
BUCKET = "features"
S3_SECRET = PREFIX + "s3"  # the Secret named by storage.s3.existingSecret (a podman secret)
# moto enforces IAM authentication after its first IAM_SETUP requests (creating the user, its policy
# and its key pair), so only the key pair in the Secret can read the bucket.
IAM_SETUP = 3


class StepFailed(Exception):
    """A step failed; ``logs`` says why."""

    def __init__(self, message: str, logs: str = "") -> None:
        super().__init__(message)
        self.logs = logs


def run(argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    if result.returncode != 0:
        raise StepFailed(f"{' '.join(argv[:4])}... exited {result.returncode}", result.stdout + result.stderr)
    return result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def host_address() -> str:
    """The host's own address: pods reach services on the host through it."""
    out = subprocess.run(["ip", "-4", "route", "get", "192.0.2.123"], capture_output=True, text=True, check=False)
    words = out.stdout.split()
    if "src" in words:
        return words[words.index("src") + 1]
    return subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=True).stdout.split()[0]


def wait_for(what: str, check: Callable[[], bool], timeout: float, logs: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.25)
    raise StepFailed(f"{what}: not within {timeout:.0f} s", logs())


def http(url: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Deployment:
    """Everything the test starts, and how to stop it."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.data = work / "data"
        self.host = host_address()
        self.ports = {name: free_port() for name in ("pg", "redis", "kafka", "s3", "core", "http", "grpc")}
        init = (ROOT / "src" / "provender" / "__init__.py").read_text()
        self.version = re.search(r'^__version__ = "(.+)"$', init, re.MULTILINE).group(1)  # type: ignore[union-attr]
        self.image = f"localhost/provender:{self.version}"
        self.env = dict(os.environ, CONTAINERS_CONF=str(ROOT / "deploy" / "podman" / "containers.conf"))
        self.processes: list[subprocess.Popen[bytes]] = []
        self.played: list[Path] = []
        self.pods: list[str] = []
        self.has_core = _has_core_command()

    # -- services on the host
    def remove_leftovers(self) -> None:
        """Remove the pods an interrupted earlier run left behind (they hold the names)."""
        out = run(["podman", "pod", "ps", "--filter", f"name=^{PREFIX}", "--format", "{{.Name}}"], env=self.env)
        for pod in out.split():
            run(["podman", "pod", "rm", "-f", pod], env=self.env)
        subprocess.run(["podman", "secret", "rm", S3_SECRET], capture_output=True, env=self.env, check=False)

    def start_services(self) -> str:
        self.remove_leftovers()
        pg = self.work / "pg"
        pg.mkdir()
        shutil.chown(pg, "postgres", "postgres")
        as_pg = ["runuser", "-u", "postgres", "--"]
        run([*as_pg, str(PGBIN / "initdb"), "-D", str(pg / "data"), "-U", "postgres", "-A", "trust", "--no-sync"])
        # The pods connect from the podman network: trust the host's own subnets (a test database).
        with (pg / "data" / "pg_hba.conf").open("a") as hba:
            hba.write("host all all samenet trust\n")
        options = (
            f"-p {self.ports['pg']} -c listen_addresses={self.host} -k {pg} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        run(
            [*as_pg, str(PGBIN / "pg_ctl"), "-D", str(pg / "data"), "-l", str(pg / "log"), "-w", "-o", options, "start"]
        )
        run(["psql", "-h", self.host, "-p", str(self.ports["pg"]), "-U", "postgres", "-c", "create database features"])
        redis = self.work / "redis"
        redis.mkdir()
        run(
            [
                "redis-server",
                "--port",
                str(self.ports["redis"]),
                "--bind",
                self.host,
                "--protected-mode",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "yes",
                "--dir",
                str(redis),
                "--pidfile",
                str(redis / "redis.pid"),
                "--logfile",
                str(redis / "redis.log"),
            ]
        )
        import noida_db  # the bundled broker binary; its console script would orphan it

        binary = Path(noida_db.__file__).parent / "noida-db"
        log = (self.work / "kafka.log").open("wb")
        argv = [str(binary), "start", "--only", "kafka", "--host", self.host, "--kafka-port", str(self.ports["kafka"])]
        self.processes.append(subprocess.Popen([*argv, "--data-dir", str(self.work / "kafka")], stdout=log, stderr=log))
        # moto's S3 server (in memory), the one installed beside this interpreter (tests/support/objectstore.py).
        self.s3_log = self.work / "moto.log"
        moto = [str(Path(sys.executable).parent / "moto_server"), "-H", self.host, "-p", str(self.ports["s3"])]
        env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT=str(IAM_SETUP))
        with self.s3_log.open("wb") as out:
            self.processes.append(subprocess.Popen(moto, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env))
        for port in ("pg", "redis", "kafka", "s3"):
            wait_for(f"{port} on {self.host}", lambda p=port: _port_open(self.host, self.ports[p]), 30)
        return (
            f"PostgreSQL :{self.ports['pg']}, Redis :{self.ports['redis']}, Kafka :{self.ports['kafka']}, "
            f"S3 :{self.ports['s3']} on {self.host}"
        )

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.host}:{self.ports['s3']}"

    def stop_services(self) -> None:
        with contextlib.suppress(Exception):
            pg = self.work / "pg" / "data"
            if (pg / "postmaster.pid").exists():
                run(
                    [
                        "runuser",
                        "-u",
                        "postgres",
                        "--",
                        str(PGBIN / "pg_ctl"),
                        "-D",
                        str(pg),
                        "-m",
                        "fast",
                        "-w",
                        "stop",
                    ]
                )
        pidfile = self.work / "redis" / "redis.pid"
        with contextlib.suppress(Exception):
            os.kill(int(pidfile.read_text()), 15)
        for process in self.processes:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)

    # -- data and definitions
    def write_definitions(self) -> str:
        import boto3
        import pandas as pd
        import pyarrow as pa
        from deltalake import write_deltalake

        self.data.mkdir()
        now = datetime.now(UTC).replace(microsecond=0)
        self.now = now
        stats = pd.DataFrame(
            {
                "driver_id": [1001, 1001, 1002, 1003],
                "datetime": [
                    now - timedelta(hours=3),
                    now - timedelta(hours=1),
                    now - timedelta(hours=2),
                    now - timedelta(days=3),
                ],
                "conv_rate": [0.1, 0.25, 0.5, 0.9],
                "trips": [10, 12, 20, 30],
            }
        )
        profile = pa.table(
            {
                "driver_id": pa.array([1001, 1002, 1003], pa.int64()),
                "datetime": pa.array(
                    [now - timedelta(hours=5), now - timedelta(hours=4), now - timedelta(days=2)],
                    pa.timestamp("us", tz="UTC"),
                ),
                "rating": [4.5, 4.75, 3.0],
            }
        )
        # The batch sources exist only in the bucket: the ingestion pods can read them nowhere else.
        staging = self.work / "staging"
        staging.mkdir()
        stats.to_parquet(staging / "driver_stats.parquet")
        write_deltalake(str(staging / "driver_profile"), profile)
        aws = {"endpoint_url": self.s3_endpoint, "region_name": "us-east-1"}
        iam = boto3.client("iam", aws_access_key_id="setup", aws_secret_access_key="setup", **aws)
        iam.create_user(UserName="provender")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="provender", PolicyName="s3", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="provender")["AccessKey"]  # the last request without auth
        self.access_key, self.secret_key = key["AccessKeyId"], key["SecretAccessKey"]
        s3 = boto3.client("s3", aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key, **aws)
        s3.create_bucket(Bucket=BUCKET)
        files = sorted(path for path in staging.rglob("*") if path.is_file())
        for path in files:
            s3.upload_file(str(path), BUCKET, path.relative_to(staging).as_posix())
        shutil.rmtree(staging)
        stranger = boto3.client("s3", aws_access_key_id="AKIANOTTHEKEY", aws_secret_access_key="wrong", **aws)
        try:
            stranger.head_object(Bucket=BUCKET, Key="driver_stats.parquet")
        except stranger.exceptions.ClientError as exc:
            if exc.response["ResponseMetadata"]["HTTPStatusCode"] != 403:
                raise
        else:
            raise StepFailed("the S3 server accepts any key pair: the test could not tell whether the Secret is used")
        (self.data / "definitions.py").write_text(
            DEFINITIONS.format(data=self.data, bucket=BUCKET, kafka=f"{self.host}:{self.ports['kafka']}"),
            encoding="utf-8",
        )
        for path in [self.data, *self.data.iterdir()]:
            os.chown(path, POD_UID, POD_UID)
        # The Secret the chart's storage.s3.existingSecret names. podman 4.3 reads a secretKeyRef's
        # secret as a JSON object of base64 values (the data of a Kubernetes Secret).
        keys = {"access_key_id": self.access_key, "secret_access_key": self.secret_key}
        secret = json.dumps({key: base64.b64encode(value.encode()).decode() for key, value in keys.items()})
        created = subprocess.run(
            ["podman", "secret", "create", S3_SECRET, "-"], input=secret, capture_output=True, text=True, env=self.env
        )
        if created.returncode != 0:
            raise StepFailed("podman secret create failed", created.stderr)
        self.secret_created = True
        return (
            f"3 tables; s3://{BUCKET}/: driver_stats.parquet (4 rows, 1003's outside the 1-day window), "
            f"Delta driver_profile ({len(files) - 1} files; 1003's row outside the window); "
            f"Secret {S3_SECRET} with the only key pair the S3 server accepts"
        )

    # -- the chart
    def values(self) -> dict[str, Any]:
        injected = {  # what Kubernetes injects for the chart's Services (enableServiceLinks would)
            "PROVENDER_CORE_SERVICE_HOST": "10.96.0.10",
            "PROVENDER_CORE_PORT": "tcp://10.96.0.10:6565",
            "PROVENDER_SERVING_SERVICE_PORT_GRPC": "6567",
            "PROVENDER_SERVING_PORT_6566_TCP_ADDR": "10.96.0.11",
        }
        return {
            "image": {"repository": "localhost/provender", "tag": self.version, "pullPolicy": "Never"},
            "registry": {"url": f"postgresql://postgres@{self.host}:{self.ports['pg']}/features"},
            "redis": {"url": f"redis://{self.host}:{self.ports['redis']}/0"},
            "kafka": {"bootstrapServers": f"{self.host}:{self.ports['kafka']}"},
            "storage": {"s3": {"endpointUrl": self.s3_endpoint, "region": "us-east-1", "existingSecret": S3_SECRET}},
            "config": {"serving": {"registry_refresh_seconds": 1}, "stream": {"linger_ms": 50}},
            "extraEnv": [{"name": name, "value": value} for name, value in injected.items()],
            "extraVolumes": [{"name": "data", "hostPath": {"path": str(self.data), "type": "Directory"}}],
            "extraVolumeMounts": [{"name": "data", "mountPath": str(self.data)}],
            # The other pods reach the core service by its Service name: no Service routing under
            # podman, so the name points at the host, which publishes the port on its own address.
            "hostAliases": [{"ip": self.host, "hostnames": [f"{RELEASE}-core"]}],
            "core": {
                "enabled": self.has_core,
                "port": self.ports["core"],
                "hostPort": self.ports["core"],
                "hostIP": self.host,
            },
            "serving": {
                "replicas": 1,
                "autoscaling": {"enabled": False},
                "hostPort": {"http": self.ports["http"], "grpc": self.ports["grpc"]},
                "hostIP": "127.0.0.1",
            },
            "streamIngestion": {"enabled": True, "tables": [{"table": "driver_trips"}]},
            "batchIngestion": {
                "enabled": True,
                "tables": [
                    {"table": "driver_stats", "schedule": "*/5 * * * *", "window": "1d"},
                    {"table": "driver_profile", "schedule": "0 * * * *", "window": "1d"},
                ],
            },
        }

    def render(self) -> str:
        values = self.work / "values.yaml"
        values.write_text(yaml.safe_dump(self.values()), encoding="utf-8")
        helm_home = self.work / "helm"
        env = dict(os.environ) | {f"HELM_{k}_HOME": str(helm_home / k.lower()) for k in ("CACHE", "CONFIG", "DATA")}
        rendered = run(["helm", "template", RELEASE, str(CHART), "-f", str(values)], env=env)
        self.docs = [doc for doc in yaml.safe_load_all(rendered) if doc]
        (self.work / "rendered.yaml").write_text(rendered, encoding="utf-8")
        kinds = sorted(f"{doc['kind']}/{doc['metadata']['name']}" for doc in self.docs)
        return f"{len(kinds)} resources" + ("" if self.has_core else " (no `provender core` on this branch: core off)")

    def _config_maps(self) -> list[dict[str, Any]]:
        return [doc for doc in self.docs if doc["kind"] == "ConfigMap"]

    def _pod(self, name: str, template: dict[str, Any], restart: str) -> dict[str, Any]:
        spec = dict(template["spec"], restartPolicy=restart)
        for container in spec["containers"]:
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                container.pop(probe, None)  # podman turns them into in-image curl checks; the test probes from the host
        metadata = {"name": PREFIX + name, **template["metadata"]}
        return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}

    def play(self, name: str, docs: list[dict[str, Any]]) -> None:
        path = self.work / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all([*self._config_maps(), *docs]), encoding="utf-8")
        self.played.append(path)
        run(["podman", "kube", "play", str(path)], env=self.env, timeout=120)
        self.pods.extend(doc["metadata"]["name"] for doc in docs)

    def run_to_completion(self, name: str, template: dict[str, Any], timeout: float = 120) -> str:
        """Run a Job's (or CronJob's) pod template as a pod; return its log once it exited 0."""
        return self.run_all_to_completion(name, {name: template}, timeout)[name]

    def run_all_to_completion(
        self, play: str, templates: dict[str, dict[str, Any]], timeout: float = 120
    ) -> dict[str, str]:
        """Run pod templates as pods side by side; return each one's log once all exited 0."""
        self.play(play, [self._pod(name, template, "Never") for name, template in templates.items()])
        containers = {name: f"{PREFIX}{name}-{t['spec']['containers'][0]['name']}" for name, t in templates.items()}

        def state(name: str) -> list[str]:
            argv = ["podman", "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", containers[name]]
            return run(argv, env=self.env).split()

        pods = [PREFIX + name for name in templates]

        def done() -> bool:
            return all(state(name)[0] == "exited" for name in templates)

        wait_for(f"pods {', '.join(templates)}", done, timeout, lambda: self.logs(*pods))
        logs = {name: self.logs(PREFIX + name) for name in templates}
        for name in templates:
            if state(name)[1] != "0":
                raise StepFailed(f"pod {name} exited {state(name)[1]}", logs[name])
        return logs

    def logs(self, *pods: str, tail: int = 60) -> str:
        out = []
        for pod in pods or self.pods:
            names = subprocess.run(
                ["podman", "ps", "-a", "--filter", f"pod={pod}", "--format", "{{.Names}}"],
                capture_output=True,
                text=True,
                env=self.env,
                check=False,
            ).stdout.split()
            for name in names:
                if name.endswith("-infra"):
                    continue
                log = subprocess.run(
                    ["podman", "logs", "--tail", str(tail), name],
                    capture_output=True,
                    text=True,
                    env=self.env,
                    check=False,
                )
                out.append(f"--- {name}\n{log.stdout}{log.stderr}")
        return "\n".join(out)

    def deployment(self, component: str) -> dict[str, Any]:
        name = f"{RELEASE}-{component}"
        return next(doc for doc in self.docs if doc["kind"] == "Deployment" and doc["metadata"]["name"] == name)

    def teardown(self) -> None:
        for path in reversed(self.played):
            subprocess.run(["podman", "kube", "down", str(path)], capture_output=True, env=self.env, check=False)
        # podman keeps a volume per ConfigMap after `kube down`: remove them, so no run sees another's.
        names = [doc["metadata"]["name"] for doc in self._config_maps()] if hasattr(self, "docs") else []
        if names:
            subprocess.run(["podman", "volume", "rm", "-f", *names], capture_output=True, env=self.env, check=False)
        if getattr(self, "secret_created", False):
            subprocess.run(["podman", "secret", "rm", S3_SECRET], capture_output=True, env=self.env, check=False)
        self.stop_services()


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _has_core_command() -> bool:
    from provender.cli.main import cli

    return "core" in cli.commands


DEFINITIONS = '''"""Definitions applied by the deployment test."""
import provender as pv

driver = pv.Entity(name="driver_id", value_type=pv.ValueType.INT64)
driver_stats = pv.FeatureTable(
    name="driver_stats",
    entities=["driver_id"],
    features=[pv.Feature("conv_rate", pv.ValueType.DOUBLE), pv.Feature("trips", pv.ValueType.INT64)],
    batch_source=pv.FileSource(path="s3://{bucket}/driver_stats.parquet", file_format=pv.ParquetFormat(),
                               event_timestamp_column="datetime"),
)
driver_profile = pv.FeatureTable(
    name="driver_profile",
    entities=["driver_id"],
    features=[pv.Feature("rating", pv.ValueType.DOUBLE)],
    batch_source=pv.DeltaSource(path="s3://{bucket}/driver_profile", event_timestamp_column="datetime"),
)
driver_trips = pv.FeatureTable(
    name="driver_trips",
    entities=["driver_id"],
    features=[pv.Feature("last_trip_km", pv.ValueType.DOUBLE)],
    batch_source=pv.FileSource(path="{data}/driver_trips", file_format=pv.ParquetFormat(),
                               event_timestamp_column="datetime"),
    stream_source=pv.KafkaSource(bootstrap_servers="{kafka}", topic="driver_trips",
                                 message_format=pv.JsonFormat(), event_timestamp_column="datetime"),
)
'''

# --------------------------------------------------------------------------- the steps


def host_config(d: Deployment) -> Path:
    """provender.yaml of the host-side client: the registry through the core service (or directly)."""
    registry = (
        f"http://{d.host}:{d.ports['core']}"
        if d.has_core
        else f"postgresql://postgres@{d.host}:{d.ports['pg']}/features"
    )
    path = d.work / "host" / "provender.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(
        yaml.safe_dump(
            {"registry": registry, "online": {"store": "redis", "url": f"redis://{d.host}:{d.ports['redis']}/0"}}
        ),
        encoding="utf-8",
    )
    return path


def step_migration(d: Deployment) -> str:
    job = next(doc for doc in d.docs if doc["kind"] == "Job" and doc["metadata"]["name"] == f"{RELEASE}-migration")
    d.run_to_completion("migration", job["spec"]["template"])
    return "the migration Job's pod opened (and created) the PostgreSQL registry"


def step_pods_up(d: Deployment) -> str:
    components = ["core", "serving"] if d.has_core else ["serving"]
    pods = [d._pod(component, d.deployment(component)["spec"]["template"], "Always") for component in components]
    d.play("services", pods)
    if d.has_core:
        wait_for(
            "core /v1/ready",
            lambda: http(f"http://{d.host}:{d.ports['core']}/v1/ready")[0] == 200,
            START_TIMEOUT,
            d.logs,
        )
    wait_for(
        "serving /v1/ready",
        lambda: http(f"http://127.0.0.1:{d.ports['http']}/v1/ready")[0] == 200,
        START_TIMEOUT,
        d.logs,
    )
    user = run(["podman", "exec", f"{PREFIX}serving-serving", "id", "-u"], env=d.env).strip()
    if user != str(POD_UID):
        raise StepFailed(f"the serving container runs as uid {user}")
    argv = ["podman", "exec", f"{PREFIX}serving-serving", "touch", "/opt/provender/x"]
    write = subprocess.run(argv, capture_output=True, text=True, env=d.env, check=False)
    if write.returncode == 0 or "Read-only file system" not in write.stderr:
        raise StepFailed("the serving container's root filesystem is writable", write.stderr)
    injected = run(["podman", "exec", f"{PREFIX}serving-serving", "printenv", "PROVENDER_CORE_SERVICE_HOST"], env=d.env)
    if injected.strip() != "10.96.0.10":
        raise StepFailed("the Kubernetes-style service variables are not in the serving container", injected)
    return (
        f"{', '.join(components)} ready (uid {user}, read-only root filesystem, "
        "PROVENDER_CORE_SERVICE_HOST and the like in the environment)"
    )


def step_apply(d: Deployment) -> str:
    out = run(["provender", "-c", str(host_config(d)), "apply", str(d.data)])
    tables = run(["provender", "-c", str(host_config(d)), "tables", "list"])
    if "driver_stats" not in tables or "driver_trips" not in tables:
        raise StepFailed("applied tables are not listed", out + tables)
    return "through the core service" if d.has_core else "straight to PostgreSQL (no core service yet)"


def step_stream_pod(d: Deployment) -> str:
    template = d.deployment("stream-driver-trips")["spec"]["template"]
    d.play("stream", [d._pod("stream-driver-trips", template, "Always")])
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": f"{d.host}:{d.ports['kafka']}"})
    for driver, km in ((1001, 12.5), (1002, 3.25)):
        message = {"driver_id": driver, "last_trip_km": km, "datetime": d.now.isoformat()}
        producer.produce("driver_trips", json.dumps(message).encode())
    if producer.flush(10):
        raise StepFailed("messages not delivered to the broker")
    return "2 JSON messages produced to topic driver_trips"


def step_batch_ingestion(d: Deployment) -> str:
    templates = {}
    for table in ("driver_stats", "driver_profile"):
        name = f"ingest-{table.replace('_', '-')}"
        cron = next(
            doc for doc in d.docs if doc["kind"] == "CronJob" and doc["metadata"]["name"] == f"{RELEASE}-{name}"
        )
        template = cron["spec"]["jobTemplate"]["spec"]["template"]
        container = template["spec"]["containers"][0]
        container["args"] = ["--debug", *container["args"]]  # debug logs too: the secret must be in none of them
        templates[name] = template
    since = d.s3_log.stat().st_size
    logs = d.run_all_to_completion("ingest", templates)
    for name, log in logs.items():
        line = next((line for line in log.splitlines() if line.startswith("Ingested")), "")
        if "2 entity keys" not in line:
            raise StepFailed(f"{name}: the ingestion did not write the 2 keys of the window", log)
    with d.s3_log.open("rb") as handle:
        handle.seek(since)
        requests = handle.read().decode("utf-8", "replace")
    for key in ("driver_stats.parquet", "driver_profile/"):
        if f" /{BUCKET}/{key}" not in requests:
            raise StepFailed(f"the S3 server saw no request for s3://{BUCKET}/{key}", requests[-3000:])
    served = sum(1 for line in requests.splitlines() if f" /{BUCKET}" in line and '" 20' in line)
    return (
        f"2 keys each of driver_stats (Parquet) and driver_profile (Delta), read from s3://{BUCKET} "
        f"({served} requests signed with the Secret's keys)"
    )


def read_online(d: Deployment, serving_url: str) -> dict[str, list[object]]:
    import provender as pv

    client = pv.Client(config=host_config(d), serving_url=serving_url)
    try:
        response = client.get_online_features(
            feature_refs=[
                "driver_stats:conv_rate",
                "driver_stats:trips",
                "driver_profile:rating",
                "driver_trips:last_trip_km",
            ],
            entity_rows=[{"driver_id": 1001}, {"driver_id": 1002}, {"driver_id": 1003}],
        )
        return response.to_dict()
    finally:
        client.close()


EXPECTED = {
    "driver_id": [1001, 1002, 1003],
    "driver_stats__conv_rate": [0.25, 0.5, None],
    "driver_stats__trips": [12, 20, None],
    "driver_profile__rating": [4.5, 4.75, None],
    "driver_trips__last_trip_km": [12.5, 3.25, None],
}


def _rounded(values: dict[str, list[object]]) -> dict[str, list[object]]:
    return {k: [round(v, 6) if isinstance(v, float) else v for v in column] for k, column in values.items()}


def step_read_http(d: Deployment) -> str:
    status, body = http(
        f"http://127.0.0.1:{d.ports['http']}/v1/online-features",
        {"features": ["driver_stats:conv_rate"], "entities": {"driver_id": [1001]}},
    )
    if status != 200 or b"0.25" not in body:
        raise StepFailed(f"POST /v1/online-features answered {status}", body.decode(errors="replace"))
    got: dict[str, list[object]] = {}

    def matches() -> bool:  # the stream pod writes its rows within a moment
        got.update(_rounded(read_online(d, f"http://127.0.0.1:{d.ports['http']}")))
        return got == EXPECTED

    wait_for("HTTP values (batch and stream)", matches, 60, lambda: f"got {got}\n" + d.logs())
    return "batch and stream values as expected, 1003 NOT_FOUND (outside the window)"


def step_read_grpc(d: Deployment) -> str:
    got = _rounded(read_online(d, f"grpc://127.0.0.1:{d.ports['grpc']}"))
    if got != EXPECTED:
        raise StepFailed(f"gRPC read {got}, expected {EXPECTED}")
    return "same values over gRPC"


def step_metrics(d: Deployment) -> str:
    status, body = http(f"http://127.0.0.1:{d.ports['http']}/metrics")
    text = body.decode()
    wanted = [
        'provender_serving_requests_total{endpoint="/v1/online-features",protocol="http"',
        'protocol="grpc"',
        "provender_serving_lookups_total",
    ]
    missing = [w for w in wanted if w not in text]
    if status != 200 or missing:
        raise StepFailed(f"/metrics answered {status}, missing {missing}", text[-3000:])
    detail = f"serving: {len(text.splitlines())} lines, HTTP and gRPC request counters present"
    if d.has_core:
        status, body = http(f"http://{d.host}:{d.ports['core']}/metrics")
        if status != 200 or b"provender_" not in body:
            raise StepFailed(f"core /metrics answered {status}", body.decode(errors="replace")[-3000:])
        detail += f"; core: {len(body.splitlines())} lines"
    return detail


def step_no_secret(d: Deployment) -> str:
    """The S3 secret key reached the pods only as an environment variable: in no log, no ConfigMap."""
    logs = d.logs(tail=100_000)
    if "DEBUG " not in logs:  # the ingestion pods' debug logs were collected: the check below can fail
        raise StepFailed("no DEBUG line in the pods' logs", logs[-3000:])
    if d.secret_key in logs:
        raise StepFailed("the S3 secret key is in a pod's log", logs)
    if d.secret_key in (d.work / "rendered.yaml").read_text(encoding="utf-8"):
        raise StepFailed("the S3 secret key is in the rendered chart")
    containers = logs.count("--- ")
    return f"not in the {containers} containers' logs (ingestion at --debug) nor in the rendered chart"


STEPS: list[tuple[str, Callable[[Deployment], str]]] = [
    ("services on the host", Deployment.start_services),
    ("data and definitions", Deployment.write_definitions),
    ("helm template", Deployment.render),
    ("migration Job pod", step_migration),
    ("core and serving pods", step_pods_up),
    ("apply definitions", step_apply),
    ("stream ingestion pod", step_stream_pod),
    ("batch ingestion pod (CronJob)", step_batch_ingestion),
    ("read over HTTP", step_read_http),
    ("read over gRPC", step_read_grpc),
    ("serving /metrics", step_metrics),
    ("S3 secret in no log", step_no_secret),
]


def main() -> int:
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="provender-deploy-"))
    work.chmod(0o755)
    deployment = Deployment(work)
    try:
        for name, step in STEPS:
            began = time.monotonic()
            print(f"deploy-test: {name:<34}", end="", flush=True)
            try:
                detail = step(deployment)
            except StepFailed as exc:
                print(f"FAILED ({time.monotonic() - began:.1f} s): {exc}")
                print(exc.logs or deployment.logs(), file=sys.stderr)
                return 1
            except Exception as exc:  # noqa: BLE001 - any other error fails the step too, with the pods' logs
                print(f"FAILED ({time.monotonic() - began:.1f} s): {type(exc).__name__}: {exc}")
                print(deployment.logs(), file=sys.stderr)
                return 1
            print(f"ok ({time.monotonic() - began:.1f} s){': ' + detail if detail else ''}")
    finally:
        began = time.monotonic()
        deployment.teardown()
        shutil.rmtree(work, ignore_errors=True)
        print(f"deploy-test: {'teardown':<34}ok ({time.monotonic() - began:.1f} s)")
    print(f"deploy-test: passed in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
