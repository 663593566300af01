"""No command, template or README step writes with pyarrow's dataset writer in a process that can exit
right after it.

``pq.write_to_dataset`` / ``pyarrow.dataset.write_dataset`` can leave a writer thread running into
interpreter exit, which then aborts the process ('terminate called without an active exception',
exit -6; apache/arrow#36980): the README quickstart failed so once in CI under load (the init
template's ``generate_data.py``). Files are written with ``pq.write_table`` / ``pq.ParquetWriter``
instead, synchronously. The one use left is listed below with why its process cannot end right after.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WRITERS = {"write_to_dataset", "write_dataset"}
# path -> why the process goes on after the write (it never ends right after it)
ALLOWED = {
    "src/provender/offline/spark/sources.py": "stages a source for Spark, which then reads it in the same process",
}


def writer_calls(source: str) -> list[int]:
    """Line numbers of calls (or imports) of the dataset writer in ``source``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in WRITERS:
                lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and any(alias.name in WRITERS for alias in node.names):
            lines.append(node.lineno)
    return lines


def readme_python_blocks() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return "\n".join(re.findall(r"^```python\n(.*?)^```", text, re.DOTALL | re.MULTILINE))


def test_the_scan_finds_the_writer_however_it_is_called() -> None:
    source = (
        "import pyarrow.parquet as pq\nimport pyarrow.dataset as ds\nfrom pyarrow.dataset import write_dataset\n"
        "pq.write_to_dataset(t, 'out')\nds.write_dataset(t, 'out', format='parquet')\nwrite_dataset(t, 'x')\n"
        "pq.write_table(t, 'x.parquet')\n"
    )
    assert sorted(writer_calls(source)) == [3, 4, 5, 6]


def test_no_dataset_writer_where_a_process_can_exit_right_after() -> None:
    files = sorted({*ROOT.glob("src/provender/**/*.py"), *ROOT.glob("examples/**/*.py"), *ROOT.glob("scripts/*.py")})
    assert any(path.name == "generate_data.py" for path in files)  # the init templates are among them
    found = {
        path.relative_to(ROOT).as_posix(): lines
        for path in files
        if (lines := writer_calls(path.read_text(encoding="utf-8")))
    }
    found.update({"README.md (python blocks)": lines} if (lines := writer_calls(readme_python_blocks())) else {})
    assert {path: lines for path, lines in found.items() if path not in ALLOWED} == {}
    assert set(ALLOWED) <= set(found), "an allowed use is gone: drop it from ALLOWED"
