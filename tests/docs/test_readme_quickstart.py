"""The README's quickstart, executed as written, on whatever day the suite runs.

Takes the section "From zero to a served feature in five minutes" of README.md: runs its shell
block (but the ``pip install`` line: the suite runs in an environment where Provender is
installed) in an empty folder, then its Python blocks as one program in the folder the shell
block ``cd``-ed into, then the ``provender ...`` commands its prose gives, each in a pseudo-terminal
as a user's shell would (so progress lines are drawn). Everything must
succeed, and every value the README shows must be there: no null in any DataFrame, every online
value ``PRESENT``, no ``null`` in the command line's lookups and training file.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.support.terminal import run_program_in_terminal

REPO = Path(__file__).resolve().parents[2]
SECTION = "## From zero to a served feature in five minutes"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)

# Appended to the README's Python: what it computed, for the assertions below.
REPORT = """
import json as _json
_report = {"dataframes": {}, "online": {}}
for _name, _value in list(globals().items()):
    if isinstance(_value, pd.DataFrame):
        _report["dataframes"][_name] = {"rows": len(_value), "nulls": int(_value.isna().sum().sum())}
    if callable(getattr(_value, "statuses", None)) and callable(getattr(_value, "to_dict", None)):
        _report["online"][_name] = {
            "statuses": sorted({str(s) for column in _value.statuses().values() for s in column}),
            "nulls": sum(v is None for column in _value.to_dict().values() for v in column),
        }
print("REPORT " + _json.dumps(_report))
"""


def quickstart() -> tuple[list[str], list[str], list[list[str]]]:
    """The section's shell blocks, Python blocks and inline ``provender ...`` commands, in order."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    section = text[start:end]
    shell = [body for language, body in _FENCE.findall(section) if language == "bash"]
    python = [body for language, body in _FENCE.findall(section) if language == "python"]
    prose = _FENCE.sub("", section)
    commands = [shlex.split(span) for span in re.findall(r"`(provender [^`]+)`", prose)]
    return shell, python, commands


def environment() -> dict[str, str]:
    return {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # python, provender


def run(args: list[str], cwd: Path) -> str:
    """Run ``args`` in a terminal (as a user would: progress lines are drawn); return what it printed."""
    done = run_program_in_terminal(args, cwd=cwd, env=environment(), timeout=300)
    assert done.returncode == 0, f"{shlex.join(args)} failed:\n{done.output}"
    assert "Traceback" not in done.output
    return done.output


@pytest.mark.slow
def test_readme_quickstart_runs_and_shows_values(tmp_path: Path) -> None:
    shell, python, commands = quickstart()
    assert shell and python and commands, "the quickstart section lost its code"

    lines = [line for block in shell for line in block.splitlines() if not line.strip().startswith("pip install")]
    script = "set -euo pipefail\n" + "\n".join(lines) + '\npwd > "$QUICKSTART_CWD"\n'
    cwd_file = tmp_path / "cwd"
    (tmp_path / "quickstart.sh").write_text(script.replace("$QUICKSTART_CWD", str(cwd_file)), encoding="utf-8")
    assert "Applied: 2 added" in run(["bash", "quickstart.sh"], cwd=tmp_path)
    project = Path(cwd_file.read_text(encoding="utf-8").strip())
    assert project != tmp_path

    # outside the project folder: `provender apply .` (in the prose) would import it
    (tmp_path / "quickstart.py").write_text("\n".join(python) + REPORT, encoding="utf-8")
    program = run([sys.executable, str(tmp_path / "quickstart.py")], cwd=project)
    report = json.loads(program.split("REPORT ", 1)[1].splitlines()[0])
    assert report["dataframes"], "the quickstart builds no DataFrame"
    for name, frame in report["dataframes"].items():
        assert frame["rows"] > 0, name
        assert frame["nulls"] == 0, f"{name} holds nulls where the README shows values: {frame}"
    assert report["online"], "the quickstart reads nothing online"
    for name, online in report["online"].items():
        assert online == {"statuses": ["PRESENT"], "nulls": 0}, name

    for command in commands:
        output = run(command, cwd=project)
        assert "null" not in output, f"{shlex.join(command)}:\n{output}"
        if command[1] == "retrieve":
            training = pq.read_table(project / command[command.index("--out") + 1])
            assert training.num_rows > 0
            assert all(column.null_count == 0 for column in training.columns)
    assert any(c[1] == "online" for c in commands) and any(c[1] == "retrieve" for c in commands)
