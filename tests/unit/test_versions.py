"""``provender version`` / ``--version``: the package, the libraries, and the configured servers."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import provender
from provender.cli.main import cli
from provender.versions import library_versions, render_text, version_report

ROOT = Path(__file__).resolve().parents[2]


def test_the_package_version_is_the_distributions() -> None:
    assert provender.__version__ == metadata.version("provender")


def test_the_chart_deploys_the_image_of_this_version() -> None:
    chart = yaml.safe_load((ROOT / "deploy/helm/provender/Chart.yaml").read_text())
    assert chart["appVersion"] == provender.__version__


def test_library_versions_come_from_the_installed_distributions() -> None:
    versions = library_versions()
    assert versions["duckdb"] == metadata.version("duckdb")
    assert versions["pyarrow"] == metadata.version("pyarrow")
    assert versions["sqlite"] == sqlite3.sqlite_version
    assert all(version is None or version[0].isdigit() for version in versions.values())


def test_spark_version_is_read_without_starting_a_jvm() -> None:
    code = (
        "import sys; from provender.versions import library_versions; v = library_versions()['spark'];"
        "assert 'pyspark' not in sys.modules, 'pyspark imported'; print(v)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    expected = metadata.version("pyspark") if _installed("pyspark") else "None"
    assert out == expected


def _installed(distribution: str) -> bool:
    try:
        metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def test_version_json_with_embedded_backends_lists_no_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["version", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["provender"] == provender.__version__
    assert report["libraries"]["duckdb"] == metadata.version("duckdb")
    assert report["servers"] == {} and report["config_error"] is None
    assert list(tmp_path.iterdir()) == [], "asking versions must not create the embedded stores' files"


def test_dash_dash_version_prints_the_same_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"provender {provender.__version__}"
    assert f"duckdb {metadata.version('duckdb')}" in result.output


def test_an_unreachable_redis_is_reported_not_raised(tmp_path: Path) -> None:
    config = tmp_path / "provender.yaml"
    config.write_text(yaml.safe_dump({"online": {"store": "redis", "url": "redis://127.0.0.1:1/0", "retries": 0}}))
    result = CliRunner().invoke(cli, ["--config", str(config), "version", "--json"])
    assert result.exit_code == 0, result.output
    server = json.loads(result.output)["servers"]["online_store"]
    assert server["backend"] == "redis" and server["version"] is None
    assert "redis://127.0.0.1:1/0" in server["error"]


def test_a_bad_configuration_is_reported_with_the_versions(tmp_path: Path) -> None:
    config = tmp_path / "provender.yaml"
    config.write_text(yaml.safe_dump({"online": {"store": "memcached"}}))
    report = version_report(config)
    assert report["provender"] == provender.__version__
    assert report["config_error"] is not None and "memcached" in report["config_error"]
    assert "servers not asked" in render_text(report)
