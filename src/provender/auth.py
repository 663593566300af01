"""Who may do what in which project: static bearer tokens or JWTs (``serving.auth``, ``core.auth``).

Shared by the serving service (which only reads: any role grants it a project) and the core
service (roles ``read`` < ``write`` < ``admin``, each implying the ones before).

* ``mode: none`` (the default): every request may do everything, as ``anonymous``.
* ``mode: token``: ``Authorization: Bearer <token>`` must be one of ``tokens``, each mapped to its
  grants (``"fraud"``, ``"fraud:write"``, ``"*:admin"``) and optionally a subject. Tokens are
  compared by their SHA-256 digests, so a lookup takes the same time whatever the token's prefix.
* ``mode: jwt``: the bearer token is a JWT signed with HS256 (``jwt_secret``) or RS256
  (``jwt_public_key``); its ``projects_claim`` (default ``projects``: a list, or a
  comma-separated string, of grants; or a mapping project -> role) grants projects, and its
  ``sub`` is the subject; ``exp``/``nbf``, and ``aud``/``iss`` when configured, are checked. A
  verified token is cached until it expires (at most a minute), so a client reusing its token
  costs one dictionary lookup per request.

No token (nor any part of one) ever appears in an error message or a log line.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType

import jwt

from provender.config import AuthSection
from provender.errors import AuthenticationError, PermissionDeniedError

ALL_PROJECTS = "*"
ANONYMOUS = "anonymous"
_CACHE_SECONDS = 60.0
_MAX_CACHED_TOKENS = 4096
_ALGORITHMS = {"HS256", "RS256"}


class Role(IntEnum):
    """What a grant allows in a project; each role implies the ones below it."""

    READ = 1
    WRITE = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        """The role's name as written in grants (``read``, ``write``, ``admin``)."""
        return self.name.lower()


_ROLES = {role.label: role for role in Role}


@dataclass(frozen=True, slots=True)
class Grant:
    """Who a token is and the role it holds in each project.

    Attributes:
        subject: who acts (the JWT's ``sub``, the token's configured subject, or ``anonymous``).
        roles: project (or ``"*"``: every project) -> role.
    """

    subject: str
    roles: Mapping[str, Role]

    def role_in(self, project: str) -> Role | None:
        """Return the highest role held in ``project``, or None."""
        held = [role for role in (self.roles.get(project), self.roles.get(ALL_PROJECTS)) if role is not None]
        return max(held) if held else None

    def allows(self, project: str, role: Role = Role.READ) -> bool:
        """Whether ``role`` (or a higher one) is held in ``project``."""
        held = self.role_in(project)
        return held is not None and held >= role


EVERYTHING = Grant(ANONYMOUS, MappingProxyType({ALL_PROJECTS: Role.ADMIN}))


def parse_grants(value: object) -> dict[str, Role]:
    """Return project -> role from grants: ``["fraud:write", "*"]``, ``"a,b:admin"`` or ``{"a": "write"}``.

    Unknown roles grant nothing (a typo never widens access).
    """
    pairs: list[tuple[object, object]] = []
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, list | tuple | set | frozenset):
        for entry in value:
            if isinstance(entry, str):
                name, _, label = entry.partition(":")
                pairs.append((name.strip(), label.strip() or "read"))
    roles: dict[str, Role] = {}
    for project, held in pairs:
        role = _ROLES.get(held.lower()) if isinstance(held, str) else None
        if isinstance(project, str) and project and role is not None:
            roles[project] = max(role, roles.get(project, role))
    return roles


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class Authenticator:
    """Check requests' bearer tokens against an ``auth`` section (``serving.auth``, ``core.auth``).

    Args:
        section: the auth settings.
        clock: wall clock in seconds since the epoch (JWT expiry is wall-clock time).
    """

    def __init__(self, section: AuthSection, *, clock: Callable[[], float] = time.time) -> None:
        self.mode = section.mode
        self._section = section
        self._clock = clock
        self._static = {
            _digest(token): Grant(spec.subject or f"token-{_digest(token).hex()[:8]}", parse_grants(spec.grants))
            for token, spec in section.tokens.items()
        }
        # Keyed by the token's digest, so the cache's size is bounded in bytes (a token may be 16 KiB).
        self._cache: dict[bytes, tuple[Grant, float]] = {}

    @property
    def is_enabled(self) -> bool:
        """Whether requests need a token."""
        return self.mode != "none"

    def check(self, authorization: str | None, project: str, role: Role = Role.READ) -> Grant:
        """Allow the request and return the token's grant, or raise.

        Args:
            authorization: the ``Authorization`` header (or gRPC metadata) value, if any.
            project: the project the request works in.
            role: the role the request needs in ``project``.

        Raises:
            AuthenticationError: no bearer token, or an invalid or expired one.
            PermissionDeniedError: the token does not hold ``role`` in ``project``.
        """
        grant = self.grant(authorization)
        require(grant, project, role)
        return grant

    def grant(self, authorization: str | None) -> Grant:
        """Return what the bearer token in ``authorization`` grants.

        Raises:
            AuthenticationError: no bearer token, or an invalid or expired one.
        """
        if self.mode == "none":
            return EVERYTHING
        token = _bearer(authorization)
        if self.mode == "token":
            grant = self._static.get(_digest(token))
            if grant is None:
                raise AuthenticationError("Invalid bearer token.")
            return grant
        key = _digest(token)
        cached = self._cache.get(key)
        now = self._clock()
        if cached is not None and cached[1] > now:
            return cached[0]
        grant, expires_at = self._verify_jwt(token, now)
        if len(self._cache) >= _MAX_CACHED_TOKENS:
            self._cache.clear()
        self._cache[key] = (grant, expires_at)
        return grant

    def _verify_jwt(self, token: str, now: float) -> tuple[Grant, float]:
        """Verify a JWT; an error names what failed but echoes nothing of the token."""
        section = self._section
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
            if algorithm == "HS256" and section.jwt_secret is not None:
                key = section.jwt_secret.get_secret_value()
            elif algorithm == "RS256" and section.jwt_public_key is not None:
                key = section.jwt_public_key.get_secret_value()
            else:
                allowed = [
                    name
                    for name, configured in (("HS256", section.jwt_secret), ("RS256", section.jwt_public_key))
                    if configured is not None
                ]
                raise AuthenticationError(
                    f"Invalid bearer token: the JWT's algorithm is not accepted; use {' or '.join(allowed)}."
                )
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=section.jwt_audience,
                issuer=section.jwt_issuer,
                options={
                    "verify_aud": section.jwt_audience is not None,
                    "require": ["exp"] if section.jwt_require_exp else [],
                },
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("Invalid bearer token: the JWT has expired.") from None
        except jwt.MissingRequiredClaimError as exc:
            claim = exc.claim if exc.claim in ("exp", "aud", "iss") else "a required claim"
            raise AuthenticationError(f"Invalid bearer token: the JWT has no {claim!r} claim.") from None
        except jwt.PyJWTError as exc:
            reason = _JWT_REASONS.get(type(exc), "it cannot be verified")
            raise AuthenticationError(f"Invalid bearer token: {reason} ({type(exc).__name__}).") from None
        expires_at = now + _CACHE_SECONDS
        exp = claims.get("exp")
        if isinstance(exp, int | float):
            expires_at = min(expires_at, float(exp))
        subject = claims.get("sub")
        roles = parse_grants(claims.get(section.projects_claim))
        return Grant(subject if isinstance(subject, str) and subject else "jwt", roles), expires_at


# Fixed reasons: PyJWT's own messages may quote parts of the token (its header or claims).
_JWT_REASONS: dict[type[Exception], str] = {
    jwt.InvalidSignatureError: "the JWT's signature does not match",
    jwt.InvalidAudienceError: "the JWT's audience does not match",
    jwt.InvalidIssuerError: "the JWT's issuer does not match",
    jwt.ImmatureSignatureError: "the JWT is not valid yet",
    jwt.InvalidAlgorithmError: "the JWT's algorithm is not accepted",
    jwt.DecodeError: "it is not a well-formed JWT",
}


def require(grant: Grant, project: str, role: Role = Role.READ) -> None:
    """Raise PermissionDeniedError unless ``grant`` holds ``role`` in ``project``."""
    if not grant.allows(project, role):
        held = grant.role_in(project)
        raise PermissionDeniedError(
            project, needed=role.label if role > Role.READ else None, held=None if held is None else held.label
        )


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise AuthenticationError("Missing bearer token: send the header 'Authorization: Bearer <token>'.")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError("Malformed Authorization header: expected 'Bearer <token>'.")
    return token
