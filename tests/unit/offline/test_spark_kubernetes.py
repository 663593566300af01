"""Spark on Kubernetes: ``offline: {engine: spark, master: k8s://..., kubernetes: ...}`` renders the pod settings.

There is no cluster here: the test renders the configuration a session would start with.
"""

from __future__ import annotations

from typing import Any

import pytest

from provender.config import validate_backend_config
from provender.errors import ConfigError
from provender.offline.spark.session import SparkConfig, session_conf

MASTER = "k8s://https://kubernetes.default.svc:443"


def spark_conf(options: dict[str, Any]) -> dict[str, str]:
    config = validate_backend_config(SparkConfig, "offline", {"engine": "spark", **options})
    assert isinstance(config, SparkConfig)
    return session_conf(config)


def test_driver_and_executor_pods_come_from_the_kubernetes_section() -> None:
    conf = spark_conf({
        "master": MASTER,
        "kubernetes": {
            "image": "registry.example.com/provender:0.1.0-spark", "namespace": "features",
            "service_account": "provender-spark", "image_pull_policy": "Always", "executor_instances": 4,
            "driver": {"cores": 2, "memory": "3g"}, "executor": {"cores": 3, "memory": "8g", "memory_overhead": "1g"},
            "driver_host": "10.1.2.3", "driver_pod_name": "provender-jobs-7f9c",
            "labels": {"team": "fraud"}, "node_selector": {"pool": "spark"},
        },
    })  # fmt: skip
    assert conf["spark.kubernetes.container.image"] == "registry.example.com/provender:0.1.0-spark"
    assert conf["spark.kubernetes.container.image.pullPolicy"] == "Always"
    assert conf["spark.kubernetes.namespace"] == "features"
    assert conf["spark.kubernetes.authenticate.driver.serviceAccountName"] == "provender-spark"
    assert conf["spark.executor.instances"] == "4"
    assert (conf["spark.driver.cores"], conf["spark.driver.memory"]) == ("2", "3g")
    assert (conf["spark.executor.cores"], conf["spark.executor.memory"]) == ("3", "8g")
    assert conf["spark.executor.memoryOverhead"] == "1g"
    assert conf["spark.kubernetes.executor.request.cores"] == "3"
    assert conf["spark.driver.host"] == "10.1.2.3"
    assert conf["spark.driver.bindAddress"] == "0.0.0.0"
    assert (conf["spark.driver.port"], conf["spark.blockManager.port"]) == ("7078", "7079")
    assert conf["spark.kubernetes.driver.pod.name"] == "provender-jobs-7f9c"
    assert conf["spark.kubernetes.executor.label.team"] == "fraud"
    assert conf["spark.kubernetes.node.selector.pool"] == "spark"
    assert conf["spark.sql.session.timeZone"] == "UTC"  # the engine's fixed settings still hold
    assert "spark.sql.shuffle.partitions" not in conf  # local-mode defaults stay local


def test_conf_overrides_the_rendered_pod_settings() -> None:
    conf = spark_conf({
        "master": MASTER, "kubernetes": {"image": "img:1"},
        "conf": {"spark.executor.instances": 16, "spark.kubernetes.namespace": "other"},
    })  # fmt: skip
    assert (conf["spark.executor.instances"], conf["spark.kubernetes.namespace"]) == ("16", "other")
    assert conf["spark.kubernetes.container.image"] == "img:1"


def test_defaults_leave_the_driver_host_to_spark() -> None:
    conf = spark_conf({"master": MASTER, "kubernetes": {"image": "img:1"}})
    assert conf["spark.kubernetes.namespace"] == "default"
    assert (conf["spark.executor.instances"], conf["spark.executor.memory"]) == ("2", "4g")
    assert "spark.driver.host" not in conf and "spark.kubernetes.driver.pod.name" not in conf


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"master": MASTER}, "a k8s:// master needs the 'kubernetes' section"),
        ({"master": "local[1]", "kubernetes": {"image": "img:1"}}, "only applies to a k8s:// master"),
        ({"master": MASTER, "kubernetes": {}}, "offline.kubernetes.image"),
        ({"master": MASTER, "kubernetes": {"image": "i", "executor": {"memory": "4GB"}}}, "kubernetes.executor.memory"),
        ({"master": MASTER, "kubernetes": {"image": "i", "image_pull_policy": "Sometimes"}}, "image_pull_policy"),
        ({"master": MASTER, "kubernetes": {"image": "i", "namespce": "x"}}, "kubernetes.namespce"),
    ],
)
def test_wrong_kubernetes_settings_are_refused_naming_the_key(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        spark_conf(options)
