"""Spark on Kubernetes: driver and executor pod settings from ``offline.kubernetes``.

With ``master: k8s://https://<api-server>``, the process that runs the job is the Spark driver
(client mode: a serving, ingestion or Kubeflow pod) and Spark starts the executors as pods:

.. code-block:: yaml

    offline:
      engine: spark
      master: k8s://https://kubernetes.default.svc
      kubernetes:
        image: registry.example.com/provender:0.1.0-spark   # `make image-spark`
        namespace: features
        service_account: provender-spark                    # may create pods (the chart's Role)
        executor_instances: 4
        executor: {cores: 2, memory: 4g}
        driver_host: 10.1.2.3       # the driver pod's IP (the chart sets it from status.podIP)
        driver_pod_name: jobs-7f9c  # executors are owned by the driver pod (metadata.name)

:func:`kubernetes_conf` turns that into Spark's own settings; ``offline.conf`` may override any
of them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Fixed ports, so that a NetworkPolicy or a headless Service can name them.
DRIVER_PORT = 7078
BLOCK_MANAGER_PORT = 7079


class PodResources(BaseModel):
    """Cores and memory of the driver or of each executor.

    Attributes:
        cores: CPU cores (also the pod's CPU request).
        memory: JVM heap, Spark's notation (``512m``, ``4g``); the pod gets it plus overhead.
        memory_overhead: non-heap memory added to the pod's request (None: Spark's default).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    cores: int = Field(default=1, ge=1, le=256)
    memory: str = Field(default="2g", pattern=r"^[0-9]+[kmgt]$")
    memory_overhead: str | None = Field(default=None, pattern=r"^[0-9]+[kmgt]$")


class KubernetesPods(BaseModel):
    """``offline.kubernetes``: where and how Spark runs its pods (master ``k8s://...`` only).

    Attributes:
        image: the executors' image (the Spark variant of the Provender image).
        namespace: where executor pods are created.
        service_account: the service account the driver uses to create executor pods.
        image_pull_policy: ``Always``, ``IfNotPresent`` or ``Never``.
        executor_instances: how many executors.
        driver: the driver's cores and memory.
        executor: each executor's cores and memory.
        driver_host: the address executors reach the driver at (the driver pod's IP or a headless
            Service name); None: Spark's guess, which is wrong inside most pods.
        driver_pod_name: the driver's pod name; executors are then owned by it and deleted with it.
        labels: labels put on the executor pods.
        node_selector: node labels the executor pods must match.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    image: str = Field(min_length=1)
    namespace: str = "default"
    service_account: str = "default"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    executor_instances: int = Field(default=2, ge=1, le=10_000)
    driver: PodResources = Field(default_factory=PodResources)
    executor: PodResources = Field(default_factory=lambda: PodResources(cores=1, memory="4g"))
    driver_host: str | None = None
    driver_pod_name: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    node_selector: dict[str, str] = Field(default_factory=dict)


def kubernetes_conf(pods: KubernetesPods) -> dict[str, str]:
    """Return the Spark settings that run executors as pods as ``pods`` describes."""
    conf = {
        "spark.kubernetes.container.image": pods.image,
        "spark.kubernetes.container.image.pullPolicy": pods.image_pull_policy,
        "spark.kubernetes.namespace": pods.namespace,
        "spark.kubernetes.authenticate.driver.serviceAccountName": pods.service_account,
        "spark.executor.instances": str(pods.executor_instances),
        "spark.driver.cores": str(pods.driver.cores),
        "spark.driver.memory": pods.driver.memory,
        "spark.executor.cores": str(pods.executor.cores),
        "spark.executor.memory": pods.executor.memory,
        "spark.kubernetes.executor.request.cores": str(pods.executor.cores),
        "spark.driver.port": str(DRIVER_PORT),
        "spark.blockManager.port": str(BLOCK_MANAGER_PORT),
        "spark.driver.bindAddress": "0.0.0.0",  # noqa: S104 - executors in other pods connect to the driver
        "spark.kubernetes.executor.label.app.kubernetes.io/name": "provender",
        "spark.kubernetes.executor.label.app.kubernetes.io/component": "spark-executor",
    }
    if pods.driver.memory_overhead:
        conf["spark.driver.memoryOverhead"] = pods.driver.memory_overhead
    if pods.executor.memory_overhead:
        conf["spark.executor.memoryOverhead"] = pods.executor.memory_overhead
    if pods.driver_host:
        conf["spark.driver.host"] = pods.driver_host
    if pods.driver_pod_name:
        conf["spark.kubernetes.driver.pod.name"] = pods.driver_pod_name
    conf |= {f"spark.kubernetes.executor.label.{key}": value for key, value in pods.labels.items()}
    conf |= {f"spark.kubernetes.node.selector.{key}": value for key, value in pods.node_selector.items()}
    return conf
