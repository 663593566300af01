"""What an offline-to-online ingestion reads: Delta versions pinned, incremental reads, lineage recorded.

An ingestion of a Delta source reads one version, pinned before the job starts (the latest, unless
the definition pins one), and records it in the job's lineage with the job's window and features.
An incremental ingestion then finds the newest succeeded ingestion of the same table, source and
features, and skips the files of the version it read, except those whose statistics can hold rows
outside its window (:func:`provender.offline.delta.open_delta`): only what was committed since is
read. A table whose history since is not append-only (a delete, an overwrite, a compaction) is
read whole, and the lineage's ``note`` says why.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path

from provender.config import StorageSection
from provender.definitions import DeltaSource
from provender.errors import DataError
from provender.offline.delta import latest_version
from provender.offline.lineage import PreviousRead, SourceInput, from_json, to_json
from provender.offline.plan import LatestPlan, TableJoin
from provender.registry.jobs import JobKind, JobRecord, JobStatus
from provender.registry.store import RegistryStore


def pin_source(
    join: TableJoin,
    *,
    incremental: bool,
    registry: RegistryStore,
    project: str,
    base_dir: Path,
    storage: StorageSection | None,
) -> TableJoin:
    """``join`` with its Delta source pinned to the version read now, and, if ``incremental``, what was read before.

    Raises:
        DataError: ``incremental`` for a source that is not a Delta table, or the table cannot
            be opened (naming the feature table).
    """
    source = join.source
    if not isinstance(source, DeltaSource):
        if incremental:
            raise DataError(
                f"Feature table {join.name!r}: incremental ingestion reads Delta tables' change history; "
                f"its batch source {source.path} is files (ingest a window instead)."
            )
        return join
    if source.version is None and source.timestamp is None:
        what = f"Feature table {join.name!r} (batch source {source.path})"
        source = replace(source, version=latest_version(source, what=what, base_dir=base_dir, storage=storage))
        join = replace(join, source=source)
    if incremental:
        join = replace(join, delta_since=previous_read(registry, project, join))
    return join


def previous_read(registry: RegistryStore, project: str, join: TableJoin) -> PreviousRead | None:
    """What the newest succeeded ingestion of ``join``'s table read of the same source, with the same features."""
    features = [f.name for f in join.table.features]
    for record in registry.list_jobs(project, table=join.name, include_finished=True):  # newest first
        if record.kind is not JobKind.OFFLINE_TO_ONLINE or record.status is not JobStatus.SUCCEEDED:
            continue
        found = _read_in(record, join.source.path, features)
        if found is not None:
            return found
    return None


def _read_in(record: JobRecord, path: str, features: list[str]) -> PreviousRead | None:
    lineage = record.lineage
    if lineage is None or lineage.get("features") != features or not isinstance(lineage.get("window"), dict):
        return None
    window = lineage["window"]
    assert isinstance(window, dict)
    for read in from_json(lineage):
        if read.path == path and read.delta_version is not None:
            return PreviousRead(
                version=read.delta_version,
                start=datetime.fromisoformat(str(window["start"])),
                end=datetime.fromisoformat(str(window["end"])),
            )
    return None


def ingestion_lineage(plan: LatestPlan) -> dict[str, object]:
    """The lineage an ingestion job records: what its engine read, its window and features."""
    inputs: list[SourceInput] = list(dict.fromkeys(plan.inputs))  # a source re-read (validation) once
    return to_json(inputs, window=(plan.start, plan.end), features=[f.name for f in plan.join.table.features])
