"""The Kubeflow example, compiled and run end to end with kfp.local on a real Redis online store.

kfp (2.17) needs protobuf < 7 and the serving extra protobuf >= 7, so they cannot share an
environment: ``make test-deps`` builds ``.venv-kfp`` with ``provender[redis,postgres,kfp]``,
scikit-learn and docker (the Docker API client), and these tests run the example there, as separate
processes: each step a local process (kfp.local's SubprocessRunner), and, marked ``image``, each step
a container of the built ``-kfp`` image (the DockerRunner through podman's API socket), which
``make deploy-test`` runs after building the image (tests/deploy/conftest.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.services import RedisServer, require_binary, service_unavailable

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "kubeflow"
KFP_PYTHON = ROOT / ".venv-kfp" / "bin" / "python"
T = "2026-11-20T00:00:00+00:00"
STEPS = ("historical-retrieval", "train-model", "offline-to-online-ingestion", "consistency-check")
IMAGE_UID = 10001  # the image's user (scripts/image.sh)
CONTAINERS_CONF = ROOT / "deploy" / "podman" / "containers.conf"

pytestmark = pytest.mark.service


@pytest.fixture(scope="module")
def kfp_python() -> Path:
    if not KFP_PYTHON.exists():
        service_unavailable(f"{KFP_PYTHON} is missing (`make test-deps` builds it: kfp and provender[redis])")
    return KFP_PYTHON


def run(python: Path, *args: str, cwd: Path, timeout: float = 240, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(python), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False, env=env
    )
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
    out = run(kfp_python, *run_args(repo, tmp_path / "root"), cwd=tmp_path)
    check_run(out, tmp_path / "root", kfp_python)


def run_args(repo: Path, root: Path, *more: str) -> list[str]:
    """``pipeline.py run`` over the prepared repository, artifacts under ``root``."""
    return [
        str(EXAMPLE / "pipeline.py"), "run", "--config", str(repo / "provender.yaml"),
        "--entities", str(repo / "entities.parquet"), "--start", "2026-11-01", "--at", T,
        "--pipeline-root", str(root), *more,
    ]  # fmt: skip


def check_run(out: str, root: Path, kfp_python: Path) -> list[Path]:
    """Every step succeeded: the training set, the ingestion and check over Redis, the model; its artifacts."""
    assert "pipeline provender-training: SUCCEEDED" in out
    for step in STEPS:
        assert f"Task '{step}' finished with status SUCCESS" in out, out[-4000:]
    outputs = dict(re.findall(r"Task '([a-z-]+)' outputs:\n\s+Output: (\S+)", out))
    # 20 drivers x 8 times; the latest row of each of the 20 drivers written to Redis; the 20 rows
    # stamped T read back from Redis equal to the training set's; an accuracy.
    assert outputs.get("historical-retrieval") == "160", out[-4000:]
    assert outputs.get("offline-to-online-ingestion") == "20", out[-4000:]
    assert outputs.get("consistency-check") == "20", out[-4000:]
    assert 0.0 <= float(outputs["train-model"]) <= 1.0
    datasets = list(root.rglob("dataset"))
    assert len(datasets) == 1
    import pyarrow.parquet as pq

    training = pq.read_table(datasets[0])
    assert training.num_rows == 160
    assert {"driver_stats__conv_rate", "driver_stats__avg_daily_trips", "label"} <= set(training.column_names)
    models = list(root.rglob("train-model/model"))
    assert len(models) == 1
    script = (
        "import pickle, sys; m = pickle.load(open(sys.argv[1], 'rb'));"
        "print(type(m['model']).__name__, sorted(m['columns']))"
    )
    assert run(kfp_python, "-c", script, str(models[0]), cwd=root) == (
        "LogisticRegression ['driver_stats__acc_rate', 'driver_stats__avg_daily_trips', 'driver_stats__conv_rate']\n"
    )
    return [*datasets, *models]


@pytest.fixture(scope="module")
def kfp_image() -> str:
    """The steps' image, ``make image-kfp``'s tag (it must exist: ``make deploy-test`` builds it first)."""
    require_binary("podman", "podman")
    if os.geteuid() != 0:
        service_unavailable("the image test runs podman as root")
    from provender import __version__

    image = f"localhost/provender:{__version__}-kfp"
    found = subprocess.run(["podman", "image", "exists", image], env=podman_env(), check=False)
    if found.returncode != 0:
        service_unavailable(f"no image {image} (`make image-kfp` builds it)")
    return image


def podman_env() -> dict[str, str]:
    return dict(os.environ, CONTAINERS_CONF=str(CONTAINERS_CONF))


@pytest.fixture
def podman_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """podman's Docker-compatible API on a socket of its own (``podman system service``), as DOCKER_HOST."""
    folder = tmp_path_factory.mktemp("podman")
    socket = folder / "podman.sock"
    with (folder / "service.log").open("wb") as log:
        service = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{socket}"], stdout=log, stderr=log, env=podman_env()
        )
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            if service.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"podman system service did not start: {(folder / 'service.log').read_text()[-3000:]}")
            time.sleep(0.05)
        yield f"unix://{socket}"
    finally:
        service.terminate()
        try:
            service.wait(10)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()


@pytest.mark.image
@pytest.mark.slow  # about 20 s: four containers, each importing pandas (and scikit-learn)
def test_pipeline_runs_with_each_step_in_a_container_of_the_kfp_image(
    kfp_python: Path, kfp_image: str, podman_socket: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    """kfp.local's DockerRunner: the steps run in the image as its user, on the host's Redis and files."""
    if subprocess.run([str(kfp_python), "-c", "import docker"], capture_output=True, check=False).returncode:
        service_unavailable(f"no docker module in {kfp_python} (`make test-deps` installs it)")
    repo, root = tmp_path / "repo", tmp_path / "root"
    run(kfp_python, str(EXAMPLE / "prepare.py"), str(repo), "--online-url", redis_server.url, cwd=tmp_path)
    root.mkdir()
    for folder in (repo, root):  # the steps run as the image's user: they write the registry's journal and artifacts
        for path in (folder, *folder.rglob("*")):
            shutil.chown(path, IMAGE_UID, IMAGE_UID)
    before = containers(kfp_image)
    env = dict(os.environ, DOCKER_HOST=podman_socket)
    out = run(kfp_python, *run_args(repo, root, "--runner", "docker"), cwd=tmp_path, env=env)
    artifacts = check_run(out, root, kfp_python)
    # Written inside the containers (the host runs as root): the steps ran in the image, as its user.
    assert {path.stat().st_uid for path in artifacts} == {IMAGE_UID}
    assert containers(kfp_image) == before, "the steps' containers were not removed"
    # Read from the host: Redis holds each driver's latest row before T, as the ingestion step wrote it.
    import pandas as pd

    stats = pd.read_parquet(repo / "data" / "driver_stats.parquet")
    latest = stats[stats["datetime"] < pd.Timestamp(T)].sort_values("datetime").groupby("driver_id").last()
    script = (
        "import json, sys, provender as pv\n"
        "with pv.Client(config=sys.argv[1]) as client:\n"
        "    rows = [{'driver_id': d} for d in json.loads(sys.argv[2])]\n"
        "    print(json.dumps(client.get_online_features(['driver_stats:conv_rate'], rows).to_dict()))\n"
    )
    drivers = [int(driver) for driver in latest.index]
    online = run(kfp_python, "-c", script, str(repo / "provender.yaml"), json.dumps(drivers), cwd=tmp_path)
    assert json.loads(online) == {"driver_id": drivers, "driver_stats__conv_rate": list(latest["conv_rate"])}


def containers(image: str) -> list[str]:
    argv = ["podman", "ps", "-a", "--filter", f"ancestor={image}", "--format", "{{.ID}}"]
    return subprocess.run(argv, capture_output=True, text=True, env=podman_env(), check=True).stdout.split()


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
