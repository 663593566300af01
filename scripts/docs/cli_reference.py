"""Generate the CLI reference from the commands' own ``--help`` (``docs`` site; ``make docs``).

Walks the ``provender`` click group and renders every command's help, exactly as
``provender ... --help`` prints it, so the page cannot drift from the code.

Run alone to print the page: ``python scripts/docs/cli_reference.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import click
from click.testing import CliRunner

from provender.cli.main import cli

_WIDTH = 100


def _commands(group: click.Group, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name in sorted(group.commands):
        command = group.commands[name]
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))


def help_text(path: tuple[str, ...]) -> str:
    """What ``provender <path> --help`` prints."""
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="provender", terminal_width=_WIDTH)
    if result.exit_code != 0:
        raise RuntimeError(f"provender {' '.join(path)} --help exited {result.exit_code}: {result.output}")
    return result.output.rstrip()


def render() -> str:
    """Return the CLI reference page (Markdown)."""
    lines = [
        "# CLI reference",
        "",
        "Generated from `provender ... --help` when the site is built. Global options (`--config`,",
        "`--project`, `--debug`) go before the command: `provender --project fraud tables list`.",
        "",
        "## provender",
        "",
        "```text",
        help_text(()),
        "```",
    ]
    for path, command in _commands(cli, ()):
        lines += ["", f"{'#' * min(len(path) + 1, 4)} provender {' '.join(path)}", ""]
        if command.short_help or command.help:
            lines += [command.get_short_help_str(limit=200), ""]
        lines += ["```text", help_text(path), "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render())
