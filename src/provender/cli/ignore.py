"""``.provenderignore``: which files under a folder ``provender apply`` does not import.

``provender apply PATH`` imports (executes) every ``.py`` file under PATH to find its Entity and
FeatureTable objects. Files and folders matching the built-in defaults (virtualenvs, hidden
folders, caches, build output) or a pattern of ``PATH/.provenderignore`` are not imported.

The file uses gitignore's syntax: one pattern per line, ``#`` comments, ``*``, ``?`` and ``**``
wildcards, a trailing ``/`` for folders only, a ``/`` inside (or leading) to anchor the pattern at
PATH, and ``!`` to re-include what an earlier pattern (or a default) excluded.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

IGNORE_FILE_NAME = ".provenderignore"
DEFAULT_PATTERNS = (
    ".*",  # hidden files and folders: .git, .venv, .provender, .mypy_cache, ...
    "__pycache__/",
    "venv/",
    "env/",
    "site-packages/",
    "node_modules/",
    "build/",
    "dist/",
    "*.egg-info/",
)


@dataclass(frozen=True, slots=True)
class _Rule:
    regex: re.Pattern[str]
    negated: bool
    folders_only: bool


def _compile(pattern: str) -> _Rule | None:
    text = pattern.strip()
    if not text or text.startswith("#"):
        return None
    negated = text.startswith("!")
    text = text.removeprefix("!")
    folders_only = text.endswith("/")
    text = text.rstrip("/")
    anchored = "/" in text
    text = text.lstrip("/")
    regex = ""
    i = 0
    while i < len(text):
        if text.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif text.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif text[i] == "*":
            regex, i = regex + "[^/]*", i + 1
        elif text[i] == "?":
            regex, i = regex + "[^/]", i + 1
        else:
            regex, i = regex + re.escape(text[i]), i + 1
    prefix = "" if anchored else "(?:.*/)?"
    return _Rule(re.compile(f"{prefix}{regex}"), negated, folders_only)


class IgnoreRules:
    """The defaults plus a folder's ``.provenderignore``; the last matching pattern decides.

    Examples:
        >>> rules = IgnoreRules(["generate_data.py", "scratch/", "!.keep.py"])
        >>> [rules.is_ignored(p, is_folder=False) for p in ("generate_data.py", "repo.py", ".keep.py")]
        [True, False, False]
        >>> rules.is_ignored("scratch", is_folder=True), rules.is_ignored(".venv", is_folder=True)
        (True, True)
    """

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        compiled = (_compile(p) for p in (*DEFAULT_PATTERNS, *patterns))
        self._rules = [rule for rule in compiled if rule is not None]

    @classmethod
    def for_folder(cls, folder: Path) -> IgnoreRules:
        """The rules for ``folder``: the defaults and ``folder/.provenderignore`` if there is one."""
        path = folder / IGNORE_FILE_NAME
        return cls(path.read_text(encoding="utf-8").splitlines() if path.is_file() else ())

    def is_ignored(self, relative: str, *, is_folder: bool) -> bool:
        """Whether the file or folder at ``relative`` (a ``/``-separated path under the folder) is ignored."""
        ignored = False
        for rule in self._rules:
            if (is_folder or not rule.folders_only) and rule.regex.fullmatch(relative):
                ignored = not rule.negated
        return ignored


def python_files(folder: Path) -> list[Path]:
    """Return the ``.py`` files under ``folder`` that are not ignored, sorted.

    A file inside an ignored folder is ignored (as in git, it cannot be re-included).
    """
    rules = IgnoreRules.for_folder(folder)
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        base = Path(root).relative_to(folder).as_posix()
        prefix = "" if base == "." else f"{base}/"
        dirs[:] = [d for d in dirs if not rules.is_ignored(prefix + d, is_folder=True)]
        found.extend(
            Path(root) / name
            for name in files
            if name.endswith(".py") and not rules.is_ignored(prefix + name, is_folder=False)
        )
    return sorted(found)
