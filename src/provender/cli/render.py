"""Rendering for the CLI: aligned text tables for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Sequence

import click


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print rows as an aligned text table (or a note when there are none)."""
    if not rows:
        click.echo("(none)")
        return
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            click.echo("  ".join("-" * width for width in widths))


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
