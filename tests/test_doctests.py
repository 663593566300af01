"""Every example in a docstring of ``src/provender`` runs, and shows what it prints.

Examples are documentation that cannot drift: each module's examples run here as one test. An
example that needs files or servers it cannot set up cheaply is marked ``# doctest: +SKIP``.
"""

from __future__ import annotations

import doctest
import importlib
import io
import pkgutil

import pytest

import provender

# Project templates copied by `provender init`: user code, not library modules.
_NOT_MODULES = ("provender.cli.templates",)


def _module_names() -> list[str]:
    names = ["provender"]
    for info in pkgutil.walk_packages(provender.__path__, "provender."):
        if not info.name.startswith(_NOT_MODULES):
            names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _module_names())
def test_docstring_examples_run(name: str) -> None:
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:  # an optional extra (e.g. kfp) that this environment lacks
        if (exc.name or "").split(".")[0] == "provender":
            raise
        pytest.skip(f"{name} needs {exc.name}, which is not installed")
    tests = doctest.DocTestFinder(exclude_empty=True).find(module, name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    out = io.StringIO()
    for test in tests:
        if test.examples:
            runner.run(test, out=out.write)
    assert runner.failures == 0, out.getvalue()
