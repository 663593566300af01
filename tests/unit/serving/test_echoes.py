"""Nothing of a token is echoed into 401 bodies or request logs; long bad values are shortened.

Tokens of several shapes carry a marker in their header fields and claims; the marker must
appear neither in the answer nor in the request log. Long client values in refs and entity
columns come back shortened, in the message and the fields alike.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import jwt
import pytest
from pydantic import SecretStr

from provender.runtime import Runtime
from provender.serving.http import create_app
from provender.serving.service import FeatureService
from provender.wire.errors import MAX_ECHO_CHARS
from tests.unit.serving.conftest import post, project_settings, seed

SECRET = "s3cret-shared-key-of-at-least-32-bytes!"
MARK = "ECHOMARKER"


def b64(data: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def signed(claims: dict[str, object], headers: dict[str, object] | None = None, key: str = SECRET) -> str:
    return jwt.encode(claims, key, algorithm="HS256", headers=headers)


FUTURE = int(time.time()) + 3600
TOKENS = {
    "alg in header": f"{b64({'alg': MARK, 'typ': 'JWT'})}.{b64({'projects': ['default']})}.c2ln",
    "kid in header, bad signature": signed(
        {"projects": ["default"], "exp": FUTURE, "sub": MARK}, {"kid": MARK}, key="x" * 40
    ),
    "typ in header, no exp": signed({"projects": [MARK], "sub": MARK}, {"typ": MARK}),
    "garbage header": f"{MARK}.{b64({'projects': ['default']})}.c2ln",
    "header not json": f"{base64.urlsafe_b64encode(MARK.encode()).decode()}.e30.c2ln",
    "expired with marker": signed({"projects": ["default"], "exp": 1, "iss": MARK}, {"kid": MARK}),
    "claims not json": f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{base64.urlsafe_b64encode(MARK.encode()).decode()}.c2ln",
}


@pytest.fixture
def app_and_log(tmp_path: Path):  # type: ignore[no-untyped-def]
    log = tmp_path / "requests.jsonl"
    settings = project_settings(
        tmp_path,
        {
            "auth": {"mode": "jwt", "jwt_secret": SECRET},
            "request_log": {"enabled": True, "path": str(log)},
        },
    )
    seed(settings)
    service = FeatureService(Runtime(settings))
    service.start()
    try:
        yield create_app(service), service, log
    finally:
        service.close()


@pytest.mark.parametrize("token", TOKENS.values(), ids=TOKENS.keys())
def test_no_part_of_a_token_is_echoed(app_and_log, token: str) -> None:  # type: ignore[no-untyped-def]
    app, service, log = app_and_log
    answer = post(
        app, {"features": ["driver_stats:trips"], "entities": {"driver_id": [1]}}, {"authorization": f"Bearer {token}"}
    )
    assert answer.status == 401, answer.body
    assert MARK.encode() not in answer.body
    assert MARK not in json.dumps(answer.headers)
    service.request_log.close()
    text = log.read_text()
    assert '"status":"401"' in text.replace(" ", "") and MARK not in text


def test_exp_is_required_by_default_and_configurable(tmp_path: Path) -> None:
    from provender.auth import Authenticator
    from provender.config import AuthSection
    from provender.errors import AuthenticationError

    token = signed({"projects": ["default"]})
    with pytest.raises(AuthenticationError, match="no 'exp' claim"):
        Authenticator(AuthSection(mode="jwt", jwt_secret=SecretStr(SECRET))).check(f"Bearer {token}", "default")
    Authenticator(AuthSection(mode="jwt", jwt_secret=SecretStr(SECRET), jwt_require_exp=False)).check(
        f"Bearer {token}", "default"
    )


@pytest.mark.parametrize("size", [5_000, 200_000, 3_000_000])
def test_long_bad_values_are_shortened_in_400_answers(tmp_path: Path, size: int) -> None:
    settings = project_settings(tmp_path, {"max_request_bytes": 16 * 1024 * 1024})
    seed(settings)
    service = FeatureService(Runtime(settings))
    service.start()
    try:
        app = create_app(service)
        for payload in (
            {"features": ["driver_stats:" + "r" * size], "entities": {"driver_id": [1]}},
            {"features": ["t" * size], "entities": {"driver_id": [1]}},
            {"features": ["driver_stats:trips"], "entities": {"driver_id": ["9" * size]}},
        ):
            answer = post(app, payload)
            assert answer.status == 400, answer.body[:300]
            assert len(answer.body) < 4 * MAX_ECHO_CHARS + 1000, len(answer.body)
            assert b"chars]" in answer.body
    finally:
        service.close()
