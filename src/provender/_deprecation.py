"""Deprecations: how a public name is renamed or removed without breaking users at once.

The policy (``docs/deprecations.md``): a deprecated name keeps working for at least one minor
release, warns with :class:`DeprecationWarning` naming the release that removes it and what to
use instead, and is listed under *Deprecated* in ``CHANGELOG.md``. The suite fails once the
package's version reaches a deprecation's ``removed_in`` (``tests/unit/test_deprecation.py``),
so a removal is never forgotten.

Examples:
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     deprecated("Client.old_name", removed_in="9.0", use_instead="Client.new_name")
    >>> print(caught[0].message)
    Client.old_name is deprecated and will be removed in Provender 9.0; use Client.new_name instead.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable
from typing import ParamSpec, TypeVar

_P = ParamSpec("_P")
_R = TypeVar("_R")
_VERSION = re.compile(r"^\d+\.\d+(\.\d+)?$")


def deprecated(name: str, *, removed_in: str, use_instead: str | None = None, stacklevel: int = 2) -> None:
    """Warn that ``name`` is deprecated: call this first thing in the deprecated code path.

    Args:
        name: what the caller used, as they wrote it (``"Client.get_features"``, ``"online.ttl"``).
        removed_in: the release that removes it (``"0.3"``): at least one minor release away.
        use_instead: what to use instead, if anything.
        stacklevel: as :func:`warnings.warn`; the default points at the caller of the function
            that calls this.

    Raises:
        ValueError: ``removed_in`` is not a release number.
    """
    if not _VERSION.match(removed_in):
        raise ValueError(f"removed_in={removed_in!r}: expected a release number such as '0.3'")
    message = f"{name} is deprecated and will be removed in Provender {removed_in}"
    message += f"; use {use_instead} instead." if use_instead else "."
    warnings.warn(message, DeprecationWarning, stacklevel=stacklevel + 1)


def deprecated_alias(
    function: Callable[_P, _R], *, old_name: str, removed_in: str, use_instead: str
) -> Callable[_P, _R]:
    """Return ``function`` under an old name that warns on every call (for a renamed function).

    Examples:
        >>> def new_name() -> int:
        ...     return 1
        >>> old_name = deprecated_alias(new_name, old_name="old_name", removed_in="9.0", use_instead="new_name")
    """

    @functools.wraps(function)
    def alias(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        deprecated(old_name, removed_in=removed_in, use_instead=use_instead, stacklevel=2)
        return function(*args, **kwargs)

    alias.__name__ = alias.__qualname__ = old_name.rpartition(".")[2]
    return alias
