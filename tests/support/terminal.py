"""Run the installed ``provender`` console script in a real process, optionally under a pseudo-terminal.

Output that only appears when a stream is a terminal (progress lines) is invisible to click's
CliRunner and to ``subprocess.run(capture_output=True)``; :func:`run_in_terminal` gives the
process a pty as stdin, stdout and stderr, as an interactive shell would.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

CONSOLE_SCRIPT = Path(sys.executable).parent / "provender"


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment without ``PROVENDER_*`` variables, plus ``extra``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PROVENDER_")}
    env.update(extra or {})
    return env


def run_script(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``provender ARGS`` with captured (non-terminal) output."""
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *args],
        cwd=cwd,
        env=clean_environment(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass(frozen=True)
class TerminalRun:
    """What a process wrote to its terminal (stdout and stderr interleaved) and its exit code."""

    returncode: int
    output: str


def run_in_terminal(*args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 120) -> TerminalRun:
    """Run ``provender ARGS`` with a pseudo-terminal as stdin, stdout and stderr.

    Raises:
        TimeoutError: the process ran longer than ``timeout`` seconds (it is killed).
    """
    return run_program_in_terminal([str(CONSOLE_SCRIPT), *args], cwd=cwd, env=env, timeout=timeout)


def run_program_in_terminal(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 120
) -> TerminalRun:
    """Run ``argv`` with a pseudo-terminal as stdin, stdout and stderr, as an interactive shell would.

    Raises:
        TimeoutError: the process ran longer than ``timeout`` seconds (it is killed).
    """
    args = list(argv)
    master, slave = os.openpty()
    try:
        process = subprocess.Popen(
            args,
            cwd=cwd,
            env=clean_environment({"TERM": "xterm", "COLUMNS": "120", **(env or {})}),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            close_fds=True,
        )
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                process.kill()
                process.wait()
                raise TimeoutError(f"{' '.join(args)} ran longer than {timeout} s")
            ready, _, _ = select.select([master], [], [], min(remaining, 0.5))
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every holder of the terminal's other end has closed it
                break
            if not data:
                break
            chunks.append(data)
        returncode = process.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        os.close(master)
    return TerminalRun(returncode, b"".join(chunks).decode("utf-8", errors="replace"))


def init_project(directory: Path, *, generate: bool = True, apply: bool = True) -> Path:
    """Write a project with ``provender init`` (then generate its sample data and apply it)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    created = run_script("init", str(directory), cwd=directory.parent)
    assert created.returncode == 0, created.stderr
    if generate:
        generated = subprocess.run(
            [sys.executable, "generate_data.py"],
            cwd=directory,
            env=clean_environment(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert generated.returncode == 0, generated.stderr
    if apply:
        applied = run_script("apply", ".", cwd=directory)
        assert applied.returncode == 0, applied.stderr
    return directory
