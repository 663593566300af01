"""The deprecation helper, and the rule that a deprecated name is removed on time."""

from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path

import pytest

import provender
from provender._deprecation import deprecated, deprecated_alias

SRC = Path(provender.__file__).parent


def _old_api() -> int:
    deprecated("old_api", removed_in="0.9", use_instead="new_api")
    return 1


def test_warns_with_the_removal_version_and_the_replacement_at_the_callers_line() -> None:
    expected = r"^old_api is deprecated and will be removed in Provender 0\.9; use new_api instead\.$"
    with pytest.warns(DeprecationWarning, match=expected) as caught:
        assert _old_api() == 1
    assert caught[0].filename == __file__


def test_without_a_replacement_the_message_ends_at_the_version() -> None:
    with pytest.warns(DeprecationWarning, match=r"removed in Provender 1\.0\.$"):
        deprecated("online.ttl", removed_in="1.0")


def test_removed_in_must_be_a_release_number() -> None:
    with pytest.raises(ValueError, match="removed_in='soon'"):
        deprecated("x", removed_in="soon")


def test_an_alias_keeps_working_and_warns_on_every_call() -> None:
    def new_name(value: int, *, twice: bool = False) -> int:
        return value * 2 if twice else value

    old_name = deprecated_alias(new_name, old_name="Client.old_name", removed_in="0.9", use_instead="Client.new_name")
    assert old_name.__name__ == "old_name"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert old_name(3, twice=True) == 6
        assert old_name(4) == 4
    assert [str(w.message) for w in caught] == [
        "Client.old_name is deprecated and will be removed in Provender 0.9; use Client.new_name instead."
    ] * 2
    assert all(w.filename == __file__ for w in caught)


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def _removals_in_source() -> list[tuple[str, str]]:
    """Every ``removed_in="X"`` passed to the helpers in the package, with where it is."""
    found = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.keyword) and node.arg == "removed_in" and isinstance(node.value, ast.Constant):
                found.append((f"{path.relative_to(SRC)}:{node.value.lineno}", str(node.value.value)))
    return found


def test_no_deprecated_name_outlives_its_removal_version() -> None:
    current = _release(provender.__version__)
    overdue = [(where, removed_in) for where, removed_in in _removals_in_source() if _release(removed_in) <= current]
    assert not overdue, f"remove these deprecated names (version {provender.__version__}): {overdue}"
