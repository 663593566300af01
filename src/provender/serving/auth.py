"""Who may read which project: static bearer tokens or JWTs (``serving.auth``).

* ``mode: none`` (the default): every request may read every served project.
* ``mode: token``: ``Authorization: Bearer <token>`` must be one of ``tokens``, each mapped to
  the projects it grants (``"*"``: all). Tokens are compared by their SHA-256 digests, so a
  lookup takes the same time whatever the token's prefix.
* ``mode: jwt``: the bearer token is a JWT signed with HS256 (``jwt_secret``) or RS256
  (``jwt_public_key``); its ``projects_claim`` (default ``projects``: a list, or a
  comma-separated string, ``"*"`` for all) grants projects; ``exp``/``nbf``, and ``aud``/``iss``
  when configured, are checked. A verified token is cached until it expires (at most a minute),
  so a client reusing its token costs one dictionary lookup per request.

No token (nor any part of one) ever appears in an error message or a log line.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import jwt

from provender.config import AuthSection
from provender.serving.errors import AuthenticationError, PermissionDeniedError

ALL_PROJECTS = "*"
_CACHE_SECONDS = 60.0
_MAX_CACHED_TOKENS = 4096
_ALGORITHMS = {"HS256", "RS256"}


@dataclass(frozen=True, slots=True)
class Grant:
    """The projects a token may read.

    Attributes:
        projects: the granted project names.
        is_all: every project is granted.
    """

    projects: frozenset[str]
    is_all: bool = False

    def allows(self, project: str) -> bool:
        """Whether ``project`` may be read."""
        return self.is_all or project in self.projects


def _grant_of(names: object) -> Grant:
    if isinstance(names, str):
        names = [part.strip() for part in names.split(",")]
    if not isinstance(names, list | tuple | set | frozenset):
        return Grant(frozenset())
    projects = frozenset(name for name in names if isinstance(name, str) and name)
    return Grant(projects, is_all=ALL_PROJECTS in projects)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class Authenticator:
    """Check requests' bearer tokens against ``serving.auth``.

    Args:
        section: the auth settings.
        clock: wall clock in seconds since the epoch (JWT expiry is wall-clock time).
    """

    def __init__(self, section: AuthSection, *, clock: Callable[[], float] = time.time) -> None:
        self.mode = section.mode
        self._section = section
        self._clock = clock
        self._static = {_digest(token): _grant_of(list(projects)) for token, projects in section.tokens.items()}
        self._cache: dict[str, tuple[Grant, float]] = {}

    @property
    def is_enabled(self) -> bool:
        """Whether requests need a token."""
        return self.mode != "none"

    def check(self, authorization: str | None, project: str) -> None:
        """Allow the request, or raise.

        Args:
            authorization: the ``Authorization`` header (or gRPC metadata) value, if any.
            project: the project the request reads.

        Raises:
            AuthenticationError: no bearer token, or an invalid or expired one.
            PermissionDeniedError: the token does not grant ``project``.
        """
        if self.mode == "none":
            return
        if not self.grant(authorization).allows(project):
            raise PermissionDeniedError(project)

    def grant(self, authorization: str | None) -> Grant:
        """Return what the bearer token in ``authorization`` grants.

        Raises:
            AuthenticationError: no bearer token, or an invalid or expired one.
        """
        if self.mode == "none":
            return Grant(frozenset(), is_all=True)
        token = _bearer(authorization)
        if self.mode == "token":
            grant = self._static.get(_digest(token))
            if grant is None:
                raise AuthenticationError("Invalid bearer token.")
            return grant
        cached = self._cache.get(token)
        now = self._clock()
        if cached is not None and cached[1] > now:
            return cached[0]
        grant, expires_at = self._verify_jwt(token, now)
        if len(self._cache) >= _MAX_CACHED_TOKENS:
            self._cache.clear()
        self._cache[token] = (grant, expires_at)
        return grant

    def _verify_jwt(self, token: str, now: float) -> tuple[Grant, float]:
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
                    f"Invalid bearer token: JWT algorithm {algorithm!r} is not accepted; use {' or '.join(allowed)}."
                )
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=section.jwt_audience,
                issuer=section.jwt_issuer,
                options={"verify_aud": section.jwt_audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("Invalid bearer token: the JWT has expired.") from None
        except jwt.PyJWTError as exc:
            raise AuthenticationError(f"Invalid bearer token: {type(exc).__name__}: {exc}") from None
        expires_at = now + _CACHE_SECONDS
        exp = claims.get("exp")
        if isinstance(exp, int | float):
            expires_at = min(expires_at, float(exp))
        return _grant_of(claims.get(section.projects_claim)), expires_at


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise AuthenticationError("Missing bearer token: send the header 'Authorization: Bearer <token>'.")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError("Malformed Authorization header: expected 'Bearer <token>'.")
    return token
