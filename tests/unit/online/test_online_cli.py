"""``provender online get``: parse typed entity rows, print values with statuses, or JSON."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

import provender as pv
from provender.cli.main import cli
from tests.support.online import CUSTOMER, DRIVER, SOURCE, batch
from tests.support.registries import registry_url

NOW = datetime.now(UTC).replace(microsecond=0)
USER = pv.Entity(name="user", value_type=pv.ValueType.STRING)
STATS = pv.FeatureTable(
    name="driver_stats",
    entities=["driver_id"],
    features=[
        pv.Feature("conv_rate", pv.ValueType.DOUBLE),
        pv.Feature("seen", pv.ValueType.UNIX_TIMESTAMP),
        pv.Feature("blob", pv.ValueType.BYTES),
    ],
    batch_source=SOURCE,
    max_age=timedelta(days=1),
)
USERS = pv.FeatureTable(
    name="users",
    entities=["user", "driver_id"],
    features=[pv.Feature("likes", pv.ValueType.INT64)],
    batch_source=SOURCE,
)


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("PROVENDER_"):
            monkeypatch.delenv(name)
    path = tmp_path / "provender.yaml"
    path.write_text(yaml.safe_dump({"registry": registry_url(tmp_path), "online": {"store": "sqlite"}}))
    with pv.Client(config=path) as client:
        client.apply([DRIVER, CUSTOMER, USER, STATS, USERS])
        client._online_store.write(
            STATS,
            batch(
                STATS,
                [
                    {"driver_id": 1001, "conv_rate": 0.5, "seen": NOW, "blob": b"\x00\x01", "event_timestamp": NOW},
                    {"driver_id": 1002, "conv_rate": 0.25, "event_timestamp": NOW - timedelta(days=3)},
                ],
            ),
        )
        entities = {"user": USER, "driver_id": DRIVER}
        client._online_store.write(
            USERS, batch(USERS, [{"user": "a,b", "driver_id": 1001, "likes": 3}], entities=entities)
        )
    return path


def run(config: Path, *args: str, exit_code: int = 0) -> Result:
    result = CliRunner().invoke(cli, ["--config", str(config), "online", "get", *args])
    assert result.exit_code == exit_code, result.output
    return result


def test_json_output(config: Path) -> None:
    result = run(
        config, "-f", "driver_stats", "-e", "driver_id=1001", "-e", "driver_id=1002", "-e", "driver_id=7", "--json"
    )
    assert json.loads(result.output) == {
        "columns": {
            "driver_id": [1001, 1002, 7],
            "driver_stats__conv_rate": [0.5, None, None],
            "driver_stats__seen": [NOW.isoformat(), None, None],
            "driver_stats__blob": ["AAE=", None, None],
        },
        "statuses": {
            name: ["PRESENT", "OUTSIDE_MAX_AGE", "NOT_FOUND"]
            for name in ("driver_stats__conv_rate", "driver_stats__seen", "driver_stats__blob")
        },
    }


def test_text_output_shows_statuses(config: Path) -> None:
    output = run(
        config,
        "--features",
        "driver_stats:conv_rate,driver_stats:blob",
        "--entity",
        "driver_id=1001",
        "--entity",
        "driver_id=1002",
    ).output
    lines = output.splitlines()
    assert lines[0].split() == ["FEATURE", "driver_id=1001", "driver_id=1002"]
    assert lines[2].split() == ["driver_stats__conv_rate", "0.5", "null", "(OUTSIDE_MAX_AGE)"]
    assert lines[3].split()[:2] == ["driver_stats__blob", "b'\\x00\\x01'"]


def test_composite_keys_are_typed_per_entity_and_strings_may_hold_commas(config: Path) -> None:
    result = run(config, "-f", "users:likes", "-e", "driver_id=1001,user=a,b", "--json")
    assert json.loads(result.output)["columns"] == {"driver_id": [1001], "user": ["a,b"], "users__likes": [3]}


def test_bad_entities_are_reported(config: Path) -> None:
    assert (
        "'abc' is not a valid INT64 value"
        in run(config, "-f", "driver_stats", "-e", "driver_id=abc", exit_code=2).output
    )
    assert "Did you mean 'driver_id'" in run(config, "-f", "driver_stats", "-e", "driverid=1", exit_code=1).output
    assert "is not name=value" in run(config, "-f", "driver_stats", "-e", "1001", exit_code=2).output
    assert "Did you mean 'driver_stats'" in run(config, "-f", "driver_stat", "-e", "driver_id=1", exit_code=1).output


def test_help_has_an_example_with_the_init_projects_table() -> None:
    result = CliRunner().invoke(cli, ["online", "get", "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output
    template = (resources.files("provender.cli") / "templates" / "driver_repo.py").read_text(encoding="utf-8")
    examples = [line.split() for line in result.output.splitlines() if line.strip().startswith("provender online get")]
    assert examples
    for words in examples:
        table = words[words.index("-f") + 1].split(":")[0]
        assert f'name="{table}"' in template
