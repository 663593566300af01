"""Regenerate the checked-in gRPC code from ``protos/`` (a development tool; needs grpcio-tools).

Run from a source checkout::

    python -m provender.wire._proto.regenerate          # rewrite the files
    python -m provender.wire._proto.regenerate --check  # exit 1 if they are stale

``protoc`` names imports after the ``.proto`` path (``provender.serving.v1``); they are
rewritten to this package, where the generated modules live.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTOS = HERE.parents[3] / "protos"
PROTO = "provender/serving/v1/serving.proto"
GENERATED = ("serving_pb2.py", "serving_pb2.pyi", "serving_pb2_grpc.py")
_HEADER = "# Generated from protos/{proto} by `python -m provender.wire._proto.regenerate`. Do not edit.\n"


def generate() -> dict[str, str]:
    """Run protoc on ``serving.proto`` and return ``{file name: text}`` of the generated modules.

    Raises:
        RuntimeError: protoc failed, or grpcio-tools is not installed.
    """
    try:
        from grpc_tools import protoc
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("regenerating the gRPC code needs grpcio-tools: pip install grpcio-tools") from exc
    include = Path(protoc.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as out:
        argv = [
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            f"-I{include}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            str(PROTOS / PROTO),
        ]
        if protoc.main(argv) != 0:
            raise RuntimeError(f"protoc failed on {PROTOS / PROTO}")
        produced = Path(out) / Path(PROTO).parent
        files = {}
        for name in GENERATED:
            text = (produced / name).read_text(encoding="utf-8")
            text = text.replace("from provender.serving.v1 import", "from provender.wire._proto import")
            files[name] = _HEADER.format(proto=PROTO) + text
        return files


def main(argv: list[str]) -> int:
    """Write the generated files next to this module, or with ``--check`` compare them."""
    check = "--check" in argv
    stale = []
    for name, text in generate().items():
        path = HERE / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(name)
        if not check:
            path.write_text(text, encoding="utf-8")
    if check and stale:
        sys.stderr.write(f"stale generated gRPC code: {', '.join(stale)}; run this without --check\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
