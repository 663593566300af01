"""``provender version`` asks the configured Redis server for its version."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from provender.cli.main import cli
from tests.support.services import RedisCluster, RedisServer

pytestmark = pytest.mark.service


def _server_version(redis_server_binary: str) -> str:
    out = subprocess.run([redis_server_binary, "--version"], check=True, capture_output=True, text=True).stdout
    return out.split("v=")[1].split()[0]


@pytest.mark.parametrize("cluster", [False, True], ids=["standalone", "cluster"])
def test_version_reports_the_redis_servers_version(
    cluster: bool, redis_server: RedisServer, redis_cluster: RedisCluster, tmp_path: Path
) -> None:
    url = redis_cluster.url if cluster else redis_server.url
    config = tmp_path / "provender.yaml"
    config.write_text(yaml.safe_dump({"online": {"store": "redis", "url": url, "cluster": cluster}}))
    result = CliRunner().invoke(cli, ["--config", str(config), "version", "--json"])
    assert result.exit_code == 0, result.output
    server = json.loads(result.output)["servers"]["online_store"]
    assert server == {"backend": "redis", "version": _server_version(redis_server.argv[0]), "error": None}
