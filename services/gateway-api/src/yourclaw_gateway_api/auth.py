"""Who is calling: Supabase access tokens, and dev-issuer tokens for local runs.

Supabase signs user access tokens either with the project's asymmetric keys
(ES256/RS256, published with their `kid` at `<SUPABASE_URL>/auth/v1/.well-known/
jwks.json`) or, on projects still using it, the legacy HS256 secret. Each accepted issuer has its own pinned keys and
algorithms; `iss`, `aud == "authenticated"`, `exp`, `iat`, `sub` and
`role == "authenticated"` are checked on every token. The anon and service-role
keys are JWTs too: they fail the issuer, audience and role checks.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from yourclaw_common.errors import ServiceUnavailable, Unauthorized
from yourclaw_common.logging import get_logger

from yourclaw_gateway_api.metrics import AUTH_FAILURES

__all__ = [
    "AUDIENCE",
    "DEV_ISSUER",
    "DevIssuer",
    "Jwks",
    "KnownUsers",
    "TokenUser",
    "TokenVerifier",
    "auth_required",
]

log = get_logger(__name__)

AUDIENCE = "authenticated"
DEV_ISSUER = "urn:yourclaw:dev-login"
_ROLE = "authenticated"
_ASYMMETRIC = frozenset({"ES256", "RS256"})
_REQUIRED_CLAIMS = ["exp", "iat", "sub", "iss", "aud"]
# Clock skew between Supabase and us.
_LEEWAY_SECONDS = 30
_MAX_EMAIL_LENGTH = 320
# Dev users get a stable id per email: the same person signs in as the same user.
_DEV_USER_NAMESPACE = uuid.UUID("3e0d1a55-7a8e-4c8b-9b3c-5d0f0b8f6c21")


@dataclass(frozen=True)
class TokenUser:
    """The user a verified token names."""

    id: uuid.UUID
    email: str | None


def auth_required(detail: str = "a bearer token is required") -> Unauthorized:
    AUTH_FAILURES.labels("AUTH_REQUIRED").inc()
    return Unauthorized(
        detail, code="AUTH_REQUIRED", headers={"WWW-Authenticate": "Bearer"}
    )


def _rejected(detail: str, code: str = "INVALID_TOKEN") -> Unauthorized:
    AUTH_FAILURES.labels(code).inc()
    return Unauthorized(
        detail,
        code=code,
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


class Jwks:
    """A project's public signing keys by `kid`.

    Cached for `ttl` seconds; a `kid` we do not know (a rotated-in key) triggers a
    re-fetch, but at most one every `min_refetch` seconds, so a flood of tokens
    with made-up `kid`s cannot make us hammer the JWKS endpoint.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        url: str,
        *,
        ttl: float = 600.0,
        min_refetch: float = 30.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.url = url
        self._http = http
        self._ttl = ttl
        self._min_refetch = min_refetch
        self._timeout = timeout
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._last_fetch_failed = False
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The key with this `kid`, or None when the project has no such key.

        Raises ServiceUnavailable when the key is unknown and the JWKS cannot be
        fetched: the token may well be valid, we just cannot tell yet.
        """
        if self._fresh() and kid in self._keys:
            return self._keys[kid]
        async with self._lock:
            # Another request may have refreshed the keys while we waited.
            if not (self._fresh() and kid in self._keys) and self._may_fetch():
                await self._fetch()
        found = self._keys.get(kid)
        if found is None and self._last_fetch_failed:
            raise ServiceUnavailable(
                "cannot check the token right now, retry later",
                code="AUTH_UNAVAILABLE",
                headers={"Retry-After": "5"},
            )
        return found

    def _fresh(self) -> bool:
        return (
            self._fetched_at is not None
            and self._clock() - self._fetched_at < self._ttl
        )

    def _may_fetch(self) -> bool:
        return (
            self._attempted_at is None
            or self._clock() - self._attempted_at >= self._min_refetch
        )

    async def _fetch(self) -> None:
        self._attempted_at = self._clock()
        self.fetches += 1
        try:
            response = await self._http.get(self.url, timeout=self._timeout)
            response.raise_for_status()
            document = response.json()
            entries = document["keys"] if isinstance(document, dict) else None
            if not isinstance(entries, list):
                raise ValueError("no `keys` list")
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            self._last_fetch_failed = True
            # Keep the keys we had: a JWKS outage must not lock everyone out.
            log.warning("gateway.auth.jwks_fetch_failed", url=self.url, error=str(exc))
            return
        keys: dict[str, jwt.PyJWK] = {}
        for entry in entries:
            parsed = _signing_key(entry)
            if parsed is not None:
                keys[parsed.key_id or ""] = parsed
        self._keys = keys
        self._fetched_at = self._clock()
        self._last_fetch_failed = False
        log.info("gateway.auth.jwks_fetched", url=self.url, kids=sorted(keys))


def _signing_key(entry: Any) -> jwt.PyJWK | None:
    """An ES256/RS256 signing key with a `kid`, or None for anything else."""
    if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
        return None
    if entry.get("use", "sig") != "sig" or entry.get("kty") not in ("EC", "RSA"):
        return None
    try:
        key = jwt.PyJWK(entry)
    except jwt.PyJWTError as exc:
        log.warning("gateway.auth.jwk_unusable", kid=entry.get("kid"), error=str(exc))
        return None
    return key if key.algorithm_name in _ASYMMETRIC else None


class DevIssuer:
    """Mints and names the tokens of `POST /api/v1/dev/login` (local runs only)."""

    def __init__(self, secret: str, *, ttl_seconds: int = 24 * 3600):
        self.issuer = DEV_ISSUER
        self.secret = secret
        self.ttl_seconds = ttl_seconds

    def mint(self, email: str) -> tuple[str, TokenUser]:
        email = email.lower()
        user = TokenUser(uuid.uuid5(_DEV_USER_NAMESPACE, email), email)
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": str(user.id),
            "email": email,
            "role": _ROLE,
            "iat": now,
            "exp": now + self.ttl_seconds,
        }
        token = jwt.encode(claims, self.secret, algorithm="HS256")
        return token, user


@dataclass(frozen=True)
class _Trust:
    """How tokens of one issuer are checked: these algorithms, this key."""

    issuer: str
    algorithms: list[str]
    key: Any


class TokenVerifier:
    """Turns a bearer token into the user it names, or raises 401."""

    def __init__(
        self,
        *,
        supabase_url: str = "",
        jwks: Jwks | None = None,
        hs256_secret: str = "",
        dev: DevIssuer | None = None,
    ):
        self.supabase_issuer = f"{supabase_url}/auth/v1" if supabase_url else None
        self._jwks = jwks
        self._hs256_secret = hs256_secret
        self._dev = dev

    async def verify(self, token: str) -> TokenUser:
        try:
            header = jwt.get_unverified_header(token)
            # Read unverified only to pick the issuer's keys; verified below.
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise _rejected("the token is malformed") from None
        trust = await self._trust(header, unverified.get("iss"))
        try:
            claims = jwt.decode(
                token,
                trust.key,
                algorithms=trust.algorithms,
                audience=AUDIENCE,
                issuer=trust.issuer,
                leeway=_LEEWAY_SECONDS,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise _rejected("the token has expired", "TOKEN_EXPIRED") from None
        except jwt.InvalidAudienceError:
            raise _rejected("the token is not for authenticated users") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _rejected(f"the token has no `{exc.claim}` claim") from None
        except jwt.InvalidSignatureError:
            raise _rejected("the token signature is invalid") from None
        except jwt.PyJWTError as exc:
            raise _rejected(f"the token is invalid: {type(exc).__name__}") from None
        if claims.get("role") != _ROLE:
            raise _rejected("the token is not a user access token")
        try:
            user_id = uuid.UUID(str(claims["sub"]))
        except ValueError:
            raise _rejected("the token subject is not a user id") from None
        email = claims.get("email")
        if not isinstance(email, str) or not email or len(email) > _MAX_EMAIL_LENGTH:
            email = None
        return TokenUser(user_id, email)

    async def _trust(self, header: dict[str, Any], issuer: Any) -> _Trust:
        alg = header.get("alg")
        if self._dev is not None and issuer == self._dev.issuer:
            if alg != "HS256":
                raise _rejected("the token algorithm is not accepted")
            return _Trust(self._dev.issuer, ["HS256"], self._dev.secret)
        if self.supabase_issuer is None or issuer != self.supabase_issuer:
            raise _rejected("the token issuer is not accepted")
        if alg in _ASYMMETRIC and self._jwks is not None:
            kid = header.get("kid")
            if not isinstance(kid, str):
                raise _rejected("the token names no signing key")
            key = await self._jwks.key(kid)
            if key is None:
                raise _rejected("the token signing key is unknown")
            # The key decides the algorithm, never the token alone.
            if key.algorithm_name != alg:
                raise _rejected("the token algorithm does not match its key")
            return _Trust(self.supabase_issuer, [alg], key.key)
        if alg == "HS256" and self._hs256_secret:
            return _Trust(self.supabase_issuer, ["HS256"], self._hs256_secret)
        raise _rejected("the token algorithm is not accepted")


class KnownUsers:
    """Users whose `users` row we wrote recently, so a request costs no write.

    Bounded (LRU) and short-lived: a row changed elsewhere is re-written soon.
    """

    def __init__(
        self,
        *,
        max_size: int = 10_000,
        ttl: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._entries: OrderedDict[uuid.UUID, tuple[str | None, float]] = OrderedDict()
        self._max_size = max_size
        self._ttl = ttl
        self._clock = clock

    def __contains__(self, user: object) -> bool:
        if not isinstance(user, TokenUser):
            return False
        entry = self._entries.get(user.id)
        if entry is None:
            return False
        email, seen_at = entry
        if email != user.email or self._clock() - seen_at >= self._ttl:
            return False
        self._entries.move_to_end(user.id)
        return True

    def add(self, user: TokenUser) -> None:
        self._entries[user.id] = (user.email, self._clock())
        self._entries.move_to_end(user.id)
        while len(self._entries) > self._max_size:
            self._entries.popitem(last=False)
