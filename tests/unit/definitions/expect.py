"""A shared assertion for the definitions tests: a DefinitionError naming the object and field."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from provender.errors import DefinitionError


@contextmanager
def definition_error(obj: str, field: str) -> Iterator[pytest.ExceptionInfo[DefinitionError]]:
    """Expect a DefinitionError whose ``.obj`` contains ``obj`` and whose ``.field`` is ``field``.

    Yields the exception info, filled in once the block has raised.
    """
    with pytest.raises(DefinitionError) as excinfo:
        yield excinfo
    error = excinfo.value
    assert obj in error.obj, f"{error.obj!r} does not name {obj!r}"
    assert error.field == field
    assert error.problem
    assert str(error).startswith(f"{error.obj}: field {field!r}: ")
