"""Print pip constraints pinning the oldest allowed versions of the core libraries (``make test-oldest``).

The lower bounds are read from ``pyproject.toml`` itself, so the job tests the bounds that are
declared, not a copy of them. numpy is pinned with the others: pyarrow and pandas of that age are
built against numpy 1.x and do not load under numpy 2.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PINNED = ("pyarrow", "pandas", "duckdb", "numpy")
_LOWER = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)(\[[^]]*\])?\s*>=\s*(?P<version>[0-9][0-9A-Za-z.]*)")


def oldest_constraints(pyproject: Path) -> list[str]:
    """Return ``name==lower bound`` for each of :data:`PINNED` in the project's dependencies.

    Raises:
        SystemExit: a pinned library has no ``>=`` lower bound in ``[project].dependencies``.
    """
    dependencies = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    bounds = {}
    for requirement in dependencies:
        match = _LOWER.match(requirement)
        if match:
            bounds[match["name"].lower()] = match["version"]
    missing = [name for name in PINNED if name not in bounds]
    if missing:
        raise SystemExit(f"no '>=' lower bound in pyproject.toml for: {', '.join(missing)}")
    return [f"{name}=={_full(bounds[name])}" for name in PINNED]


def _full(version: str) -> str:
    """``15`` -> ``15.0.0`` (pip's ``==15`` matches 15.0.0 anyway; this reads better in the log)."""
    parts = version.split(".")
    return ".".join(parts + ["0"] * (3 - len(parts)))


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    sys.stdout.write("\n".join(oldest_constraints(root / "pyproject.toml")) + "\n")
