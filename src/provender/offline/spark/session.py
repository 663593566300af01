"""The Spark engine's settings (``offline: {engine: spark, ...}``) and the session they start."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from provender.errors import ConfigError
from provender.offline.spark.kubernetes import KubernetesPods, kubernetes_conf

# Settings the engine relies on: results are read back as UTC microseconds.
FIXED_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.legacy.parquet.nanosAsLong": "true",  # else Spark refuses nanosecond Parquet columns
    "spark.sql.caseSensitive": "true",  # column names are exact: "Driver_Id" is not "driver_id"
}


class SparkConfig(BaseModel):
    """``offline: {engine: spark, ...}`` options.

    Attributes:
        master: where jobs run: ``local[N]``, ``spark://host:7077``, ``k8s://https://...``, ``yarn``.
        conf: Spark settings (``spark.executor.memory: 4g``...), applied when the session starts.
        staging_path: where entity rows and results are staged; relative paths are resolved
            against the project; on a cluster, a URL every executor and the driver can reach.
        app_name: the Spark application's name.
        kubernetes: the driver and executor pods when ``master`` is ``k8s://...`` (required then).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    engine: str = "spark"
    master: str = "local[2]"
    conf: dict[str, str] = Field(default_factory=dict)
    staging_path: str = ".provender/spark_staging"
    app_name: str = "provender"
    kubernetes: KubernetesPods | None = None

    @field_validator("conf", mode="before")
    @classmethod
    def _stringify(cls, value: object) -> object:
        """Accept YAML scalars (``4``, ``true``) as Spark's strings."""
        if isinstance(value, Mapping):
            return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _check_kubernetes(self) -> SparkConfig:
        """``kubernetes`` goes with a ``k8s://`` master, and only with it."""
        if self.master.startswith("k8s://") and self.kubernetes is None:
            raise ValueError("a k8s:// master needs the 'kubernetes' section (at least kubernetes.image)")
        if self.kubernetes is not None and not self.master.startswith("k8s://"):
            raise ValueError(f"the 'kubernetes' section only applies to a k8s:// master, not {self.master!r}")
        return self


def session_conf(config: SparkConfig) -> dict[str, str]:
    """Return the settings the session starts with: defaults, then ``conf``, then the fixed ones.

    Raises:
        ConfigError: ``conf`` changes a setting the engine relies on.
    """
    local = config.master.startswith("local")
    conf = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"}
    if local or any(host in config.master for host in ("//127.0.0.1:", "//localhost:")):
        conf |= {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}
    if local:
        conf["spark.sql.shuffle.partitions"] = "4"
    if config.kubernetes is not None:
        conf |= kubernetes_conf(config.kubernetes)
    for key, value in config.conf.items():
        if key in FIXED_CONF and value != FIXED_CONF[key]:
            raise ConfigError(f"offline.conf.{key}", f"must be {FIXED_CONF[key]!r} for Provender, got {value!r}")
        conf[key] = value
    return conf | FIXED_CONF
