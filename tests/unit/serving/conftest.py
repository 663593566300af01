"""A served project on the embedded stores (SQLite registry and online store) and an ASGI caller."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

import provender as pv
from provender.config import Settings, load_settings
from provender.runtime import Runtime
from provender.serving.http import ServingApp, create_app
from provender.serving.service import FeatureService
from tests.support.online import DRIVER, DRIVER_STATS, SOURCE, at, batch
from tests.support.registries import registry_url

TAG = pv.Entity(name="tag", value_type=pv.ValueType.BYTES)
TAGGED = pv.FeatureTable(
    name="tagged",
    entities=["tag"],
    features=[pv.Feature("score", pv.ValueType.DOUBLE)],
    batch_source=SOURCE,
)


def project_settings(
    tmp_path: Path, serving: Mapping[str, object] | None = None, *, sqlite_registry: bool = False
) -> Settings:
    """Settings of a project under ``tmp_path`` with the given ``serving:`` section.

    The registry is the test's (``PROVENDER_TEST_REGISTRY``), or ``registry.db`` in ``tmp_path``
    with ``sqlite_registry``.
    """
    registry = f"sqlite:///{tmp_path / 'registry.db'}"
    return load_settings(
        environ={},
        overrides={
            "registry": registry if sqlite_registry else registry_url(tmp_path, registry),
            "online": {"store": "sqlite", "path": str(tmp_path / "online.db")},
            "serving": dict(serving or {}),
        },
    )


def seed(settings: Settings) -> None:
    """Register driver_stats and tagged, and store a few rows."""
    with pv.Client(settings=settings) as client:
        client.apply([DRIVER, TAG, DRIVER_STATS, TAGGED])
        store = client._online_store
        store.write(
            DRIVER_STATS,
            batch(
                DRIVER_STATS,
                [
                    {
                        "driver_id": 1001,
                        "conv_rate": 0.5,
                        "acc_rate": float("nan"),
                        "trips": 7,
                        "event_timestamp": at(0),
                    },
                    {"driver_id": 1002, "conv_rate": 0.25, "acc_rate": 1.0, "trips": None, "event_timestamp": at(0)},
                ],
                entities={"driver_id": DRIVER},
            ),
        )
        store.write(TAGGED, batch(TAGGED, [{"tag": b"\x00\xff", "score": 2.5}], entities={"tag": TAG}))


@dataclass
class Answer:
    """An HTTP answer from the ASGI app."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        """The body as JSON."""
        data = orjson.loads(self.body)
        assert isinstance(data, dict)
        return data


def call(
    app: ServingApp, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
) -> Answer:
    """Call the ASGI app once, as uvicorn would."""
    messages: list[Mapping[str, object]] = []
    sent = False

    async def receive() -> dict[str, object]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: Mapping[str, object]) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    start, end = messages
    raw = start["headers"]
    assert isinstance(raw, list)
    status = start["status"]
    payload = end["body"]
    assert isinstance(status, int) and isinstance(payload, bytes)
    return Answer(status, {k.decode(): v.decode() for k, v in raw}, payload)


def post(app: ServingApp, payload: object, headers: Mapping[str, str] | None = None) -> Answer:
    """POST ``payload`` as JSON to /v1/online-features."""
    return call(app, "POST", "/v1/online-features", orjson.dumps(payload), headers)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[FeatureService, ServingApp]]:
    """A started service (auth off) over the seeded project, and its app."""
    settings = project_settings(tmp_path, {"max_entity_rows": 10, "registry_refresh_seconds": 0.1})
    seed(settings)
    service = FeatureService(Runtime(settings))
    service.start()
    try:
        yield service, create_app(service)
    finally:
        service.close()
