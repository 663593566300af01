"""Rendering for the CLI: aligned text tables for people, JSON for scripts."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime, timedelta

import click
import numpy as np

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def echo_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], *, details: Sequence[Sequence[str]] | None = None
) -> None:
    """Print rows as an aligned text table (or a note when there are none).

    ``details``, when given, holds per row the lines printed under it, as they are (indent them).
    """
    if not rows:
        click.echo("(none)")
        return
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            click.echo("  ".join("-" * width for width in widths))
        elif details is not None:
            for line in details[n - 1]:
                click.echo(line)


def echo_json(value: object) -> None:
    """Print ``value`` as indented JSON."""
    click.echo(json.dumps(value, indent=2, sort_keys=False, default=str))


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    """Return ``"1 row"`` / ``"2 rows"``, with thousands separators.

    Examples:
        >>> plural(1, "row"), plural(1680, "row"), plural(2, "entity key")
        ('1 row', '1,680 rows', '2 entity keys')
    """
    word = noun if count == 1 else (plural_noun or f"{noun}s")
    return f"{count:,} {word}"


def format_duration(value: timedelta) -> str:
    """Return a duration the way people write it: ``1d``, ``24h``... in the largest whole units.

    Examples:
        >>> [format_duration(timedelta(**kw)) for kw in ({"days": 1}, {"hours": 36}, {"minutes": 90}, {"seconds": 1.5})]
        ['1d', '1d12h', '1h30m', '1.5s']
    """
    total = value.total_seconds()
    sign, total = ("-", -total) if total < 0 else ("", total)
    parts = []
    for unit, seconds in (("d", 86_400), ("h", 3_600), ("m", 60)):
        count, total = divmod(total, seconds)
        if count:
            parts.append(f"{int(count)}{unit}")
    if total or not parts:
        parts.append(f"{total:g}s")
    return sign + "".join(parts)


def format_value(value: object) -> str:
    """Return a feature value as text: floats as short as they can be and still read back the same.

    A value that is exactly a 32-bit float (a FLOAT feature) prints with float32's shortest form.

    Examples:
        >>> format_value(0.46260005235671997), format_value(0.1), format_value([1.5, None]), format_value("a")
        ('0.46260005', '0.1', '[1.5, null]', "'a'")
    """
    if isinstance(value, float):
        if not (math.isfinite(value) and abs(value) <= _FLOAT32_MAX):
            return repr(value)
        single = np.float32(value)
        return str(single) if float(single) == value else repr(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join("null" if item is None else format_value(item) for item in value) + "]"
    return repr(value) if isinstance(value, bytes | str) else str(value)
