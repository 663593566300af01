"""Roles per project (read < write < admin) from static tokens and JWTs, and who the subject is."""

from __future__ import annotations

import time

import jwt
import pytest
from pydantic import SecretStr

from provender.auth import ALL_PROJECTS, Authenticator, Role, parse_grants, require
from provender.config import AuthSection
from provender.errors import PermissionDeniedError

SECRET = "core-secret-of-at-least-32-bytes-long!"


def bearer(token: str) -> str:
    return f"Bearer {token}"


def test_grants_parse_roles_and_never_widen_on_typos() -> None:
    assert parse_grants(["fraud:write", "*", "ops:admin"]) == {"fraud": Role.WRITE, "*": Role.READ, "ops": Role.ADMIN}
    assert parse_grants("a, b:admin") == {"a": Role.READ, "b": Role.ADMIN}
    assert parse_grants({"a": "write", "b": "owner"}) == {"a": Role.WRITE}  # unknown role: nothing
    assert parse_grants(["a:read", "a:write"]) == {"a": Role.WRITE}
    assert parse_grants(None) == {}


def test_static_tokens_carry_roles_and_subjects() -> None:
    section = AuthSection.model_validate(
        {"mode": "token", "tokens": {"t-alice": {"subject": "alice", "grants": ["fraud:write", "*:read"]}, "t-x": "b"}}
    )
    auth = Authenticator(section)
    alice = auth.check(bearer("t-alice"), "fraud", Role.WRITE)
    assert alice.subject == "alice"
    assert alice.allows("other") and not alice.allows("other", Role.WRITE)
    with pytest.raises(PermissionDeniedError) as denied:
        auth.check(bearer("t-alice"), "fraud", Role.ADMIN)
    assert (denied.value.project, denied.value.needed, denied.value.held) == ("fraud", "admin", "write")
    anonymous_token = auth.grant(bearer("t-x"))
    assert anonymous_token.subject.startswith("token-") and "t-x" not in anonymous_token.subject
    with pytest.raises(PermissionDeniedError, match="does not grant project 'a'"):
        require(anonymous_token, "a")


def test_jwt_roles_from_a_mapping_claim_and_sub() -> None:
    auth = Authenticator(AuthSection(mode="jwt", jwt_secret=SecretStr(SECRET)))
    claims = {"sub": "ci-bot", "projects": {"fraud": "admin"}, "exp": int(time.time()) + 60}
    grant = auth.check(bearer(jwt.encode(claims, SECRET, algorithm="HS256")), "fraud", Role.ADMIN)
    assert grant.subject == "ci-bot" and grant.role_in("fraud") is Role.ADMIN and grant.role_in("x") is None
    everything = {"projects": ["*:write"], "exp": int(time.time()) + 60}
    grant = auth.grant(bearer(jwt.encode(everything, SECRET, algorithm="HS256")))
    assert grant.allows("any", Role.WRITE) and not grant.allows(ALL_PROJECTS, Role.ADMIN)


def test_auth_off_is_anonymous_admin_everywhere() -> None:
    grant = Authenticator(AuthSection()).check(None, "anything", Role.ADMIN)
    assert grant.subject == "anonymous"


@pytest.mark.parametrize("pad", [100, 10_000])
def test_the_token_cache_is_bounded_in_bytes_whatever_the_tokens_size(pad: int) -> None:
    auth = Authenticator(AuthSection(mode="jwt", jwt_secret=SecretStr(SECRET)))
    claims = {"projects": ["default"], "exp": int(time.time()) + 3600, "pad": "p" * pad}
    tokens = [jwt.encode({**claims, "sub": f"user-{i}"}, SECRET, algorithm="HS256") for i in range(40)]
    for token in tokens * 2:  # the second round is answered from the cache
        auth.check(bearer(token), "default")
    keys = list(auth._cache)
    assert len(keys) == 40 and all(len(key) == 32 for key in keys)  # digests, not the tokens
    assert auth.grant(bearer(tokens[7])).subject == "user-7"
