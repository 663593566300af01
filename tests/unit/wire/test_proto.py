"""The checked-in gRPC code is what protoc makes of protos/ today."""

from __future__ import annotations

import pytest

from provender.wire._proto import regenerate


def test_generated_code_is_current() -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (a dev dependency) regenerates the code")
    for name, text in regenerate.generate().items():
        checked_in = (regenerate.HERE / name).read_text(encoding="utf-8")
        assert checked_in == text, f"{name} is stale: run python -m provender.wire._proto.regenerate"
