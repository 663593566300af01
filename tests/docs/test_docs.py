"""The documentation checks itself: links resolve, every ``provender ...`` command line parses.

Covers every Markdown file in the repository (README.md, docs/, benchmarks/, deploy/, ...) and
the ``Example:`` blocks of every command's ``--help``. A command line with placeholders (a
synopsis such as ``provender apply PATH [--dry-run]``) must name an existing command and only
its options; a concrete one must parse with click exactly as ``provender`` would parse it
(types, ranges, required options), without running it.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from provender.cli.main import cli

REPO = Path(__file__).resolve().parents[2]
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)
_SPAN = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)")
_SHELL_BLOCKS = {"bash", "sh", "shell", "console", ""}
_PLACEHOLDER = re.compile(r"\[|\.\.\.|\b[A-Z][A-Z_]*\b")
_INTERNAL_WORDS = re.compile(r"issue anchor|\bissue \d|the issue's|\bissues? #?\d", re.IGNORECASE)


def markdown_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.md"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.split()
    return sorted(REPO / name for name in listed if (REPO / name).is_file())


@dataclass(frozen=True)
class CommandLine:
    where: str
    words: tuple[str, ...]

    @property
    def is_synopsis(self) -> bool:
        return any(_PLACEHOLDER.search(word) for word in self.words)


def provender_commands(text: str, where: str) -> Iterator[CommandLine]:
    """The ``provender ...`` invocations in a shell text (several per line with ``&&``, ``;``, ``|``)."""
    text = text.replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip().removeprefix("$ ")
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        segment: list[str] = []
        for word in [*words, "&&"]:
            if word in ("&&", "||", ";", "|"):
                while segment and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", segment[0]):
                    segment.pop(0)  # VAR=value before the command
                if segment and segment[0] == "provender":
                    yield CommandLine(where, tuple(segment[1:]))
                segment = []
            else:
                segment.append(word)


def documented_commands() -> list[CommandLine]:
    found: list[CommandLine] = []
    for path in markdown_files():
        text = path.read_text(encoding="utf-8")
        name = str(path.relative_to(REPO))
        for language, body in _FENCE.findall(text):
            if language in _SHELL_BLOCKS:
                found.extend(provender_commands(body, f"{name} ({language or 'plain'} block)"))
        prose = _FENCE.sub("", text)
        for span in _SPAN.findall(prose):
            found.extend(provender_commands(span, f"{name} (`{span}`)"))
    return found


def every_command(
    group: click.Group = cli, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from every_command(command, (*path, name))


def help_examples() -> list[CommandLine]:
    found = list(provender_commands(cli.help or "", "provender --help"))
    for path, command in every_command():
        found.extend(provender_commands(command.help or "", f"provender {' '.join(path)} --help"))
    return found


def _options(command: click.Command) -> dict[str, click.Option]:
    return {
        name: param
        for param in command.params
        if isinstance(param, click.Option)
        for name in (*param.opts, *param.secondary_opts)
    }


def check(line: CommandLine) -> None:
    """Parse ``line`` as ``provender`` would; raise click.UsageError (or AssertionError) if it does not."""
    words = [w for w in line.words if w not in ("[", "]")]
    words = [w.strip("[]") for w in words]
    command: click.Command = cli
    name, ctx = "provender", None
    while isinstance(command, click.Group):
        options, i = _options(command), 0
        while i < len(words) and words[i].startswith("-"):
            option = words[i].split("=", 1)[0]
            if option in ("--help", "-h", "--version"):
                return
            if option not in options:
                raise click.UsageError(f"{name} has no option {option}")
            i += 1 if options[option].is_flag or "=" in words[i] else 2
        if i >= len(words):
            if not words:
                return  # `provender` or `provender tables`: the command named in prose
            raise click.UsageError(f"{name} needs a command")
        if not line.is_synopsis:
            ctx = command.make_context(name, words[: i + 1], parent=ctx)
        sub = command.get_command(ctx or click.Context(command), words[i])
        if sub is None:
            raise click.UsageError(f"{name} has no command {words[i]!r}")
        name, command, words = words[i], sub, words[i + 1 :]
    if not words:
        return  # `provender serve`: the command named in prose
    if line.is_synopsis:
        options = _options(command)
        unknown = [w for w in words if w.startswith("-") and w.split("=", 1)[0] not in (*options, "--help", "-h")]
        if unknown:
            raise click.UsageError(f"{name} has no option {', '.join(unknown)}")
        return
    with command.make_context(name, words, parent=ctx):
        pass


DOCUMENTED = documented_commands()
EXAMPLES = help_examples()


def test_the_docs_hold_command_lines_to_check() -> None:
    assert len(DOCUMENTED) >= 15
    assert any(line.is_synopsis for line in DOCUMENTED)
    assert any(not line.is_synopsis for line in DOCUMENTED)
    assert len(EXAMPLES) >= 10


@pytest.mark.parametrize("line", DOCUMENTED + EXAMPLES, ids=lambda line: " ".join(line.words)[:60])
def test_every_documented_command_line_parses(line: CommandLine) -> None:
    try:
        check(line)
    except click.UsageError as exc:
        pytest.fail(f"{line.where}: `provender {' '.join(line.words)}` does not parse: {exc.format_message()}")


def test_the_checker_refuses_what_provender_refuses() -> None:
    for words in (
        ("tables", "lst"),
        ("apply", ".", "--dry"),
        ("ingest", "--start", "now"),
        ("serve", "--http-port", "99999"),
        ("--projet", "x", "tables", "list"),
        ("online", "get", "--features", "t"),
    ):
        with pytest.raises(click.UsageError):
            check(CommandLine("test", words))
    with pytest.raises(click.UsageError):
        check(CommandLine("test", ("apply", "PATH", "[--dry-run]", "[--purge]")))
    check(CommandLine("test", ("apply", "PATH", "[--dry-run]", "[--prune]")))


@pytest.mark.parametrize("path", [path for path, _ in every_command()], ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert f"Usage: cli {' '.join(path)}" in result.output or "Usage:" in result.output


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(path: Path) -> None:
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    broken = []
    for target in _LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):
            continue  # https:, mailto:, ...
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.exists():
            broken.append(f"{target} (no {resolved})")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target} (no heading #{anchor} in {resolved.name})")
    assert not broken, f"{path.relative_to(REPO)}: broken links: {broken}"


def _anchors(path: Path) -> set[str]:
    headings = re.findall(r"^#+\s+(.*)$", _FENCE.sub("", path.read_text(encoding="utf-8")), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_user_docs_hold_no_internal_words(path: Path) -> None:
    found = _INTERNAL_WORDS.findall(path.read_text(encoding="utf-8"))
    assert not found, f"{path.relative_to(REPO)}: {found}"


def test_benchmarks_readme_lists_every_benchmark() -> None:
    readme = (REPO / "benchmarks" / "README.md").read_text(encoding="utf-8")
    scripts = [p.name for p in (REPO / "benchmarks").glob("*.py") if not p.name.startswith(("_", "peer_"))]
    assert scripts
    missing = [name for name in scripts if f"`{name}`" not in readme]
    assert not missing, f"benchmarks/README.md does not describe {missing}"


def test_readme_throughput_figures_are_the_recorded_ones() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    results = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "benchmarks" / "results").glob("*.md"))
    figures = re.findall(r"([\d,]+) req/s", readme)
    assert figures
    stale = [figure for figure in figures if f"| {figure} |" not in results and f"{figure} req/s" not in results]
    assert not stale, f"README req/s figures not in benchmarks/results/*.md: {stale}"
