"""Concurrent applies from several OS processes to one SQLite registry: none is lost.

Each process owns one feature table and applies it (with the shared entity) round after round,
changing its labels every round and then re-applying the same definitions once more. Every
process starts at the same moment (a barrier), on a registry file that does not exist yet, so
opening, schema creation and the read-decide-write of every apply all race.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import traceback
from pathlib import Path

import pytest

from provender import Client, Entity, FeatureTable, Settings
from provender.registry.diff import Action
from tests.unit.registry.definitions import driver, driver_statistics

PROCESSES = 4
ROUNDS = 25


def table_name(worker: int) -> str:
    return f"driver_stats_{worker}"


def apply_rounds(worker: int, registry_url: str, base_dir: str, barrier: object, errors: object) -> None:
    """Run in a child process: ROUNDS effective applies, each followed by an unchanged re-apply."""
    try:
        barrier.wait(timeout=60)  # type: ignore[attr-defined]
        with Client(settings=Settings(registry=registry_url, base_dir=Path(base_dir))) as client:
            for round_number in range(ROUNDS):
                definitions: list[Entity | FeatureTable] = [
                    driver(),
                    driver_statistics(name=table_name(worker), labels={"round": str(round_number)}),
                ]
                plan = client.apply(definitions)
                expected = Action.ADDED if round_number == 0 else Action.CHANGED
                assert plan.items[1].action is expected, plan.items
                assert plan.items[0].action in (
                    {Action.ADDED, Action.UNCHANGED} if round_number == 0 else {Action.UNCHANGED}
                )
                again = client.apply(definitions)
                assert [item.action for item in again.items] == [Action.UNCHANGED, Action.UNCHANGED], again.items
    except BaseException:
        errors.put(f"worker {worker}:\n{traceback.format_exc()}")  # type: ignore[attr-defined]
        raise


@pytest.mark.timeout(120)
def test_concurrent_applies_from_processes_lose_nothing(tmp_path: Path) -> None:
    registry_url = f"sqlite:///{tmp_path}/registry.db"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    errors = context.Queue()
    workers = [
        context.Process(target=apply_rounds, args=(n, registry_url, str(tmp_path), barrier, errors), daemon=True)
        for n in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=90)
    alive = [worker for worker in workers if worker.is_alive()]
    for worker in alive:
        worker.kill()
        worker.join()
    reported = []
    while not errors.empty():
        reported.append(errors.get())
    errors.close()
    errors.join_thread()
    assert not alive, f"{len(alive)} workers did not finish"
    assert not reported, "\n".join(reported)
    assert [worker.exitcode for worker in workers] == [0] * PROCESSES

    with Client(settings=Settings(registry=registry_url, base_dir=tmp_path)) as client:
        assert client.list_entities() == [driver()]
        tables = {table.name: table for table in client.list_feature_tables()}
        assert sorted(tables) == sorted(table_name(n) for n in range(PROCESSES))
        for n in range(PROCESSES):
            assert tables[table_name(n)] == driver_statistics(name=table_name(n), labels={"round": str(ROUNDS - 1)})
        # The entity is added together with the first table that wins the race (no version of its own),
        # every round changes one table's labels (one version each), and re-applies change nothing.
        assert client.registry_version() == PROCESSES * ROUNDS

    with sqlite3.connect(tmp_path / "registry.db") as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM changes ORDER BY version")]
    conn.close()
    assert versions == list(range(1, PROCESSES * ROUNDS + 1))
