"""The Kubeflow example, compiled and run end to end with kfp.local on a real Redis online store.

kfp (2.17) needs protobuf < 7 and the serving extra protobuf >= 7, so they cannot share an
environment: ``make test-deps`` builds ``.venv-kfp`` with ``provender[redis,postgres,kfp]`` and
scikit-learn, and these tests run the example there, as separate processes.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.services import RedisServer, service_unavailable

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "kubeflow"
KFP_PYTHON = ROOT / ".venv-kfp" / "bin" / "python"
T = "2026-11-20T00:00:00+00:00"

pytestmark = pytest.mark.service


@pytest.fixture(scope="module")
def kfp_python() -> Path:
    if not KFP_PYTHON.exists():
        service_unavailable(f"{KFP_PYTHON} is missing (`make test-deps` builds it: kfp and provender[redis])")
    return KFP_PYTHON


def run(python: Path, *args: str, cwd: Path, timeout: float = 240) -> str:
    result = subprocess.run([str(python), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{args[0]} exited {result.returncode}:\n{result.stdout}\n{result.stderr[-6000:]}"
    return re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)  # kfp.local colours its log


def test_pipeline_compiles_to_yaml_naming_the_image_and_steps(kfp_python: Path, tmp_path: Path) -> None:
    run(kfp_python, str(EXAMPLE / "pipeline.py"), "compile", str(tmp_path / "pipeline.yaml"), cwd=tmp_path)
    spec = yaml.safe_load((tmp_path / "pipeline.yaml").read_text())
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"historical-retrieval", "train-model", "offline-to-online-ingestion", "consistency-check"}
    assert tasks["consistency-check"]["dependentTasks"] == ["historical-retrieval", "offline-to-online-ingestion"]
    images = {executor["container"]["image"] for executor in spec["deploymentSpec"]["executors"].values()}
    assert images == {"localhost/provender:0.1.0-kfp"}
    for executor in spec["deploymentSpec"]["executors"].values():  # nothing pip-installed when a step starts
        assert "pip install" not in " ".join(executor["container"]["command"])


@pytest.mark.slow  # about 30 s: five processes, each importing pandas (and scikit-learn)
def test_pipeline_runs_end_to_end_with_kfp_local(kfp_python: Path, redis_server: RedisServer, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    run(kfp_python, str(EXAMPLE / "prepare.py"), str(repo), "--online-url", redis_server.url, cwd=tmp_path)
    out = run(
        kfp_python, str(EXAMPLE / "pipeline.py"), "run", "--config", str(repo / "provender.yaml"),
        "--entities", str(repo / "entities.parquet"), "--start", "2026-11-01", "--at", T,
        "--pipeline-root", str(tmp_path / "root"), cwd=tmp_path,
    )  # fmt: skip
    assert "pipeline provender-training: SUCCEEDED" in out
    for step in ("historical-retrieval", "train-model", "offline-to-online-ingestion", "consistency-check"):
        assert f"Task '{step}' finished with status SUCCESS" in out, out[-4000:]
    datasets = list((tmp_path / "root").rglob("dataset"))
    assert len(datasets) == 1
    import pyarrow.parquet as pq

    training = pq.read_table(datasets[0])
    assert training.num_rows == 160  # 20 drivers x 8 times
    assert {"driver_stats__conv_rate", "driver_stats__avg_daily_trips", "label"} <= set(training.column_names)


def test_consistency_check_fails_naming_the_difference(
    kfp_python: Path, redis_server: RedisServer, tmp_path: Path
) -> None:
    """After the online store moves past T, the check fails and names the key and the column."""
    repo = tmp_path / "repo"
    run(kfp_python, str(EXAMPLE / "prepare.py"), str(repo), "--online-url", redis_server.url, cwd=tmp_path)
    script = f"""
import sys
from provender.kfp import ops
config = {str(repo / "provender.yaml")!r}
refs = ["driver_stats:conv_rate"]
ops.retrieve_to_parquet(refs, {str(repo / "entities.parquet")!r}, "train.parquet", config_path=config)
ops.ingest_to_online("driver_stats", "2026-11-01", "2026-11-25", config_path=config)  # past T: newer values
try:
    ops.check_consistency(refs, "train.parquet", {T!r}, config_path=config)
except Exception as exc:
    print(type(exc).__name__, exc)
    sys.exit(0)
sys.exit("no error")
"""
    out = run(kfp_python, "-c", script, cwd=tmp_path)
    assert "DataError Online values differ from the training set at" in out
    assert "{'driver_id': 1001} driver_stats__conv_rate: training" in out
