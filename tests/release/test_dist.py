"""The built artefacts work alone: the wheel, installed in a fresh virtualenv outside the repository.

The module builds the sdist, the wheel from that sdist (as ``make dist`` and ``pip install`` of
an sdist do) and a wheel straight from the tree, then installs the sdist's wheel with
``[all]`` into a new virtualenv (no system site-packages, no editable install, the repository
on no path; pip's cache makes it quick) and runs the user's loop from a temporary folder with
the installed ``provender`` command: ``init``, ``apply``, ``retrieve``, ``ingest``,
``online get`` and ``serve`` answering HTTP. Anything the package reads at run time that the
wheel lacks (templates, the generated gRPC modules, ...) fails one of those steps.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

import provender
from tests.support.services import free_port, on_free_ports, wait_serving

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "provender"
EXTRAS = "all"
INSTALL_TIMEOUT_SECONDS = 900
STEP_TIMEOUT_SECONDS = 180
SERVE_TIMEOUT_SECONDS = 60
VERSION = provender.__version__


def _run(argv: Sequence[str | Path], *, cwd: Path, env: dict[str, str] | None = None, timeout: float) -> str:
    proc = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{' '.join(map(str, argv))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@dataclass(frozen=True)
class Built:
    """The artefacts of one build."""

    sdist: Path
    wheel: Path  # built from the sdist
    tree_wheel: Path  # built from the source tree


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("dist")
    # python -m build: the sdist, then the wheel from the unpacked sdist. The build backend
    # (hatchling, a dev dependency) is this interpreter's, so no network is needed.
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out / "sdist", ROOT], cwd=out, timeout=300)
    _run(
        [sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", out / "tree", ROOT],
        cwd=out,
        timeout=300,
    )
    (sdist,) = (out / "sdist").glob("provender-*.tar.gz")
    (wheel,) = (out / "sdist").glob("provender-*.whl")
    (tree_wheel,) = (out / "tree").glob("provender-*.whl")
    return Built(sdist=sdist, wheel=wheel, tree_wheel=tree_wheel)


def _contents(wheel: Path) -> dict[str, str]:
    with zipfile.ZipFile(wheel) as archive:
        return {name: hashlib.sha256(archive.read(name)).hexdigest() for name in archive.namelist()}


def test_artefacts_carry_the_package_version(built: Built) -> None:
    assert built.sdist.name == f"provender-{VERSION}.tar.gz"
    assert built.wheel.name == f"provender-{VERSION}-py3-none-any.whl"


def test_the_sdist_builds_a_wheel_identical_in_contents(built: Built) -> None:
    from_sdist, from_tree = _contents(built.wheel), _contents(built.tree_wheel)
    assert sorted(from_sdist) == sorted(from_tree)
    differing = [name for name in from_sdist if from_sdist[name] != from_tree[name]]
    assert not differing, f"files whose bytes differ: {differing}"


def test_the_wheel_holds_every_file_of_the_package(built: Built) -> None:
    names = set(_contents(built.wheel))
    source = {
        f"provender/{path.relative_to(PACKAGE).as_posix()}"
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    assert source - names == set(), "files of src/provender missing from the wheel"
    dist_info = f"provender-{VERSION}.dist-info"
    for required in (
        "provender/py.typed",
        "provender/cli/templates/provender.yaml",
        "provender/cli/templates/driver_repo.py",
        "provender/cli/templates/generate_data.py",
        "provender/wire/_proto/serving_pb2.py",
        "provender/wire/_proto/serving_pb2_grpc.py",
        "provender/wire/_proto/serving_pb2.pyi",
        "provender/wire/_proto/serving.proto",
        f"{dist_info}/licenses/LICENSE",
        f"{dist_info}/entry_points.txt",
    ):
        assert required in names
    assert not [name for name in names if name.startswith(("tests/", "benchmarks/", "deploy/"))]
    with zipfile.ZipFile(built.wheel) as archive:
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
        metadata = archive.read(f"{dist_info}/METADATA").decode()
    for group in ("provender.registries", "provender.offline_engines", "provender.online_stores", "console_scripts"):
        assert f"[{group}]" in entry_points
    assert "License-Expression: Apache-2.0" in metadata
    assert f"Version: {VERSION}" in metadata


def test_the_sdist_holds_what_building_and_testing_need(built: Built) -> None:
    with tarfile.open(built.sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    proto = "protos/provender/serving/v1/serving.proto"
    for required in ("pyproject.toml", "LICENSE", "README.md", "CHANGELOG.md", proto):
        assert required in names
    assert any(name.startswith("tests/unit/") for name in names)
    assert not any(name.startswith((".ci/", ".venv")) for name in names)


# -- the wheel in a fresh virtualenv ---------------------------------------------------------------


@dataclass(frozen=True)
class Installed:
    """A virtualenv holding the wheel, and the environment to run its commands in."""

    venv: Path
    env: dict[str, str]
    work: Path

    def run(self, *argv: str | Path, cwd: Path | None = None) -> str:
        return _run(argv, cwd=cwd or self.work, env=self.env, timeout=STEP_TIMEOUT_SECONDS)

    def provender(self, *args: str | Path, cwd: Path | None = None) -> str:
        return self.run(self.venv / "bin" / "provender", *args, cwd=cwd)

    def python(self, code: str, cwd: Path | None = None) -> str:
        return self.run(self.venv / "bin" / "python", "-c", code, cwd=cwd)


@pytest.fixture(scope="module")
def installed(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("fresh")
    venv, work = base / "venv", base / "work"
    work.mkdir()
    # The interpreter this suite runs on, but none of its packages.
    python = getattr(sys, "_base_executable", sys.executable)
    _run([python, "-m", "venv", venv], cwd=base, timeout=120)
    # --no-compile: byte-compiling every module of every dependency (pyspark alone has thousands)
    # costs more than the install; the few modules the commands import compile when imported.
    pip: list[str | Path] = [
        venv / "bin/python",
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
        "--no-compile",
    ]
    started = time.perf_counter()
    _run([*pip, f"{built.wheel}[{EXTRAS}]"], cwd=base, timeout=INSTALL_TIMEOUT_SECONDS)
    print(f"\ninstalling the wheel with [{EXTRAS}] took {time.perf_counter() - started:.1f} s")  # noqa: T201
    path = [entry for entry in os.environ.get("PATH", "").split(os.pathsep) if not entry.startswith(str(ROOT))]
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PROVENDER_", "PYTHON", "VIRTUAL_ENV", "PYSPARK"))
    }
    env["PATH"] = os.pathsep.join([str(venv / "bin"), *path])
    return Installed(venv=venv, env=env, work=work)


def test_the_installed_package_is_the_wheels_not_the_repositorys(installed: Installed) -> None:
    out = installed.python("import json, sys, provender; print(json.dumps([provender.__file__, sys.path]))")
    module_file, path = json.loads(out)
    assert module_file.startswith(str(installed.venv))
    assert not [entry for entry in path if entry.startswith(str(ROOT))]
    assert installed.provender("--version").splitlines()[0] == f"provender {VERSION}"
    report = json.loads(installed.provender("version", "--json"))
    assert report["provender"] == VERSION
    assert report["libraries"]["duckdb"] is not None


@pytest.fixture(scope="module")
def project(installed: Installed) -> Path:
    """``provender init`` + the generated data + ``apply``, all from the wheel."""
    installed.provender("init", "demo")
    project = installed.work / "demo"
    installed.run(installed.venv / "bin" / "python", "generate_data.py", cwd=project)
    out = installed.provender("apply", ".", cwd=project)
    assert "driver_statistics" in out
    return project


def test_retrieve_builds_a_training_set(installed: Installed, project: Path) -> None:
    installed.python(
        "import pandas as pd\n"
        "now = pd.Timestamp.now(tz='UTC').floor('h')\n"
        "pd.DataFrame({'driver_id': [1001, 1002, 999999], 'event_timestamp': [now, now, now]})"
        ".to_parquet('rows.parquet')",
        cwd=project,
    )
    installed.provender(
        "retrieve", "-f", "driver_statistics:conv_rate", "--entities", "rows.parquet", "--out", "training.parquet",
        cwd=project,
    )  # fmt: skip
    out = installed.python(
        "import pyarrow.parquet as pq; t = pq.read_table('training.parquet');"
        "print(t.num_rows, t.column('driver_statistics__conv_rate').null_count)",
        cwd=project,
    )
    assert out.split() == ["3", "1"]  # the unknown driver has no value; the others do


@pytest.fixture(scope="module")
def ingested(installed: Installed, project: Path) -> dict[str, object]:
    """``provender ingest`` then ``provender online get --json`` for driver 1001."""
    out = installed.provender("ingest", "--table", "driver_statistics", "--start", "now-8d", cwd=project)
    assert "Ingested driver_statistics" in out
    got = json.loads(
        installed.provender(
            "online", "get", "-f", "driver_statistics:conv_rate", "-e", "driver_id=1001", "--json", cwd=project
        )
    )
    return dict(got)


def test_ingest_then_online_get(ingested: dict[str, object]) -> None:
    values, statuses = ingested["columns"], ingested["statuses"]
    assert isinstance(values, dict) and isinstance(statuses, dict)
    assert statuses["driver_statistics__conv_rate"] == ["PRESENT"]
    assert isinstance(values["driver_statistics__conv_rate"][0], float)


@pytest.fixture
def served(installed: Installed, project: Path) -> Iterator[int]:
    log = project / "serve.log"

    def start() -> tuple[subprocess.Popen[bytes], int]:
        http_port, grpc_port = free_port(), free_port()
        with log.open("wb") as out:
            argv: list[str | Path] = [installed.venv / "bin" / "provender", "serve", "--http-port", str(http_port)]
            proc = subprocess.Popen(
                [*argv, "--grpc-port", str(grpc_port)],
                cwd=project,
                env=installed.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_serving(
                lambda: _request(http_port, "GET", "/v1/ready", None)[0] == 200, "provender serve", log,
                pid=proc.pid, ports=[http_port], optional_ports=[grpc_port], timeout=SERVE_TIMEOUT_SECONDS,
                alive=lambda: proc.poll() is None,
            )  # fmt: skip
        except RuntimeError:
            proc.kill()
            proc.wait()
            raise
        return proc, http_port

    proc, http_port = on_free_ports(start)
    try:
        yield http_port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _request(port: int, method: str, path: str, body: object) -> tuple[int, object]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        payload = None if body is None else json.dumps(body)
        connection.request(method, path, body=payload, headers={"content-type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    except OSError:
        return 0, None
    finally:
        connection.close()


def test_serve_answers_http_with_the_ingested_values(served: int, ingested: dict[str, object]) -> None:
    assert _request(served, "GET", "/v1/health", None) == (200, {"status": "ok", "version": VERSION})
    status, answer = _request(
        served,
        "POST",
        "/v1/online-features",
        {"features": ["driver_statistics:conv_rate"], "entities": {"driver_id": [1001]}, "include_statuses": True},
    )
    assert status == 200, answer
    assert isinstance(answer, dict)
    values = ingested["columns"]
    assert isinstance(values, dict)
    assert answer["columns"]["driver_statistics__conv_rate"] == values["driver_statistics__conv_rate"]
    assert answer["statuses"]["driver_statistics__conv_rate"] == ["PRESENT"]
