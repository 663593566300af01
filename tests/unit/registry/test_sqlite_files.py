"""The SQLite registry refuses a 0-byte file (usually a broken copy) and says why it cannot open one."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from provender.errors import BackendError
from provender.registry.sqlite import SQLiteRegistry


@pytest.mark.parametrize("age_seconds", [60, 3600, 86_400 * 30])
def test_an_old_empty_file_is_refused(tmp_path: Path, age_seconds: int) -> None:
    path = tmp_path / "registry.db"
    path.touch()
    then = time.time() - age_seconds
    os.utime(path, (then, then))
    with pytest.raises(BackendError, match=r"empty \(0-byte\) file.*restore it"):
        SQLiteRegistry(path)
    assert path.stat().st_size == 0  # untouched


@pytest.mark.parametrize("existing", [False, True])
def test_new_and_just_created_files_open(tmp_path: Path, existing: bool) -> None:
    path = tmp_path / "state" / "registry.db"
    if existing:  # another process has just created it
        path.parent.mkdir()
        path.touch()
    registry = SQLiteRegistry(path)
    try:
        assert registry.list_projects() is not None
    finally:
        registry.close()
    assert path.stat().st_size > 0


def test_a_path_that_cannot_be_opened_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(BackendError, match=r"cannot open the SQLite registry at .*not-a-folder"):
        SQLiteRegistry(blocker / "registry.db")
