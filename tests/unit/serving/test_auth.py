"""Bearer tokens and JWTs: 401 without or with a bad token, 403 for a project not granted."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from provender.auth import Authenticator
from provender.config import AuthSection, TokenSpec
from provender.errors import AuthenticationError, ConfigError, PermissionDeniedError
from provender.runtime import Runtime
from provender.serving.http import create_app
from provender.serving.service import FeatureService
from tests.unit.serving.conftest import post, project_settings, seed

SECRET = "s3cret-shared-key-of-at-least-32-bytes!"
TOKEN = "tok-abcdef-123456"


def rsa_keys() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def section(**values: object) -> AuthSection:
    return AuthSection.model_validate(values)


def bearer(token: str) -> str:
    return f"Bearer {token}"


def test_off_by_default_allows_everything() -> None:
    auth = Authenticator(AuthSection())
    assert not auth.is_enabled
    auth.check(None, "anything")


def test_static_tokens_grant_their_projects() -> None:
    auth = Authenticator(section(mode="token", tokens={TOKEN: ["default"], "admin": ["*"]}))
    auth.check(bearer(TOKEN), "default")
    auth.check(bearer("admin"), "fraud")
    with pytest.raises(PermissionDeniedError):
        auth.check(bearer(TOKEN), "fraud")
    for header in (None, "", "Bearer", "Basic abc", bearer("wrong")):
        with pytest.raises(AuthenticationError) as excinfo:
            auth.check(header, "default")
        assert TOKEN not in str(excinfo.value)


def test_tokens_can_come_from_the_environment_as_json() -> None:
    assert section(mode="token", tokens='{"t": "a,b"}').tokens == {"t": TokenSpec(grants=("a", "b"))}
    with pytest.raises(ValueError, match="needs at least one"):
        section(mode="token")


def claims(projects: object, **extra: object) -> dict[str, object]:
    return {"sub": "svc", "projects": projects, "exp": int(time.time()) + 300, **extra}


def test_hs256_jwt_grants_the_projects_of_its_claim() -> None:
    auth = Authenticator(section(mode="jwt", jwt_secret=SECRET))
    token = jwt.encode(claims(["default", "fraud"]), SECRET, algorithm="HS256")
    auth.check(bearer(token), "fraud")
    with pytest.raises(PermissionDeniedError):
        auth.check(bearer(token), "other")
    star = jwt.encode(claims("*"), SECRET, algorithm="HS256")
    auth.check(bearer(star), "other")
    forged = jwt.encode(claims(["default"]), "another-secret-of-at-least-32-bytes!!", algorithm="HS256")
    with pytest.raises(AuthenticationError):
        auth.check(bearer(forged), "default")


def test_expired_and_unsigned_jwts_are_refused() -> None:
    auth = Authenticator(section(mode="jwt", jwt_secret=SECRET))
    expired = jwt.encode(claims(["default"], exp=int(time.time()) - 10), SECRET, algorithm="HS256")
    with pytest.raises(AuthenticationError, match="expired"):
        auth.check(bearer(expired), "default")
    unsigned = jwt.encode(claims(["default"]), None, algorithm="none")  # type: ignore[arg-type]
    with pytest.raises(AuthenticationError, match="not accepted"):
        auth.check(bearer(unsigned), "default")
    with pytest.raises(AuthenticationError):
        auth.check(bearer("not.a.jwt"), "default")


def test_rs256_jwt_is_checked_with_the_public_key() -> None:
    private, public = rsa_keys()
    auth = Authenticator(section(mode="jwt", jwt_public_key=public, projects_claim="scopes", jwt_audience="pv"))
    token = jwt.encode({"scopes": "default,fraud", "aud": "pv", "exp": 2_000_000_000}, private, algorithm="RS256")
    auth.check(bearer(token), "fraud")
    wrong_audience = jwt.encode({"scopes": ["default"], "aud": "other"}, private, algorithm="RS256")
    with pytest.raises(AuthenticationError):
        auth.check(bearer(wrong_audience), "default")
    # An HS256 token "signed" with the public key must not pass (algorithm confusion).
    confused = jwt.encode({"scopes": ["default"], "aud": "pv"}, "x" * 40, algorithm="HS256")
    with pytest.raises(AuthenticationError):
        auth.check(bearer(confused), "default")


def test_verified_jwts_are_cached_until_they_expire() -> None:
    now = [1_000_000.0]
    auth = Authenticator(section(mode="jwt", jwt_secret=SECRET), clock=lambda: now[0])
    token = jwt.encode({"projects": ["default"], "exp": 2_000_000_000}, SECRET, algorithm="HS256")
    auth.check(bearer(token), "default")
    assert len(auth._cache) == 1  # keyed by the token's digest
    now[0] += 120  # past the cache lifetime: verified again (and still valid)
    auth.check(bearer(token), "default")


def test_jwt_mode_needs_a_key() -> None:
    with pytest.raises(ValueError, match="jwt_secret"):
        section(mode="jwt")


def test_http_answers_401_and_403_without_echoing_the_token(tmp_path: Path) -> None:
    settings = project_settings(tmp_path, {"auth": {"mode": "token", "tokens": {TOKEN: ["default"]}}})
    seed(settings)
    service = FeatureService(Runtime(settings))
    service.start()
    try:
        app = create_app(service)
        body: Mapping[str, object] = {"features": ["driver_stats"], "entities": {"driver_id": [1001]}}
        missing = post(app, body)
        assert missing.status == 401 and missing.headers["www-authenticate"].startswith("Bearer")
        wrong = post(app, body, {"Authorization": bearer(TOKEN + "x")})
        assert wrong.status == 401 and TOKEN.encode() not in wrong.body
        other = post(app, {**body, "project": "fraud"}, {"Authorization": bearer(TOKEN)})
        assert other.status in (403, 404)
        ok = post(app, body, {"Authorization": bearer(TOKEN)})
        assert ok.status == 200
    finally:
        service.close()


def test_unknown_auth_mode_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"serving\.auth\.mode"):
        project_settings(tmp_path, {"auth": {"mode": "oauth"}})
