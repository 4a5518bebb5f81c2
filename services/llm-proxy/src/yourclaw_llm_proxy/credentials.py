"""Who is calling: an assistant's proxy credential, checked against its hash.

The provisioner mints each assistant's credential, renders it into the
assistant's config and stores only its sha256 in `proxy_credentials`; this
module reads that table (and the user's own provider keys, which only this
process decrypts). A checked credential is trusted for
LLM_PROXY_CREDENTIAL_CACHE_SECONDS, so a call costs no query most of the time.

A platform service (messaging, transcribing a voice note) calls with
LLM_PROXY_SERVICE_TOKEN instead and names the user: `on_behalf_of` gives that
user's tenant, so the call is limited and metered like their assistant's own.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from uuid import UUID

import asyncpg
from yourclaw_common.crypto import SecretBox, SecretBoxError
from yourclaw_common.logging import get_logger

from yourclaw_llm_proxy.prices import Provider

__all__ = ["CredentialStore", "Tenant", "hash_token"]

log = get_logger(__name__)

# api_keys.provider → the upstream it unlocks.
_BYOK_PROVIDERS = {
    "ANTHROPIC": Provider.ANTHROPIC,
    "OPENAI": Provider.OPENAI,
    "GOOGLE": Provider.GOOGLE,
}
_MAX_CACHED = 100_000
# Which credential rows a lookup reads: by the token's hash, or by the user.
_BY_HASH = "(c.token_sha256 = $1 OR c.previous_token_sha256 = $1)"
_BY_USER = "c.user_id = $1"


def hash_token(token: str) -> str:
    """The sha256 (hex) stored for a credential."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Tenant:
    """The assistant a credential belongs to, and its user's own keys."""

    assistant_id: UUID
    user_id: UUID
    byok: dict[Provider, str] = field(default_factory=dict, repr=False)


class CredentialStore:
    def __init__(
        self, pool: asyncpg.Pool, box: SecretBox | None, *, ttl_seconds: float
    ):
        self._pool = pool
        self._box = box
        self._ttl = ttl_seconds
        self._cache: dict[str, tuple[float, Tenant]] = {}

    async def tenant(self, token: str) -> Tenant | None:
        """The tenant of a live credential; None for a wrong or revoked one."""
        if not token:
            return None
        digest = hash_token(token)
        return await self._cached(digest, _BY_HASH, digest)

    async def on_behalf_of(self, user_id: UUID) -> Tenant | None:
        """The tenant of the user's live assistant (for a service's call made
        for them); None when they have none. Cached like a credential."""
        return await self._cached(f"user:{user_id}", _BY_USER, user_id)

    def forget(self) -> None:
        """Drop every cached credential (tests, key rotation)."""
        self._cache.clear()

    async def _cached(self, key: str, match: str, value: object) -> Tenant | None:
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        tenant = await self._load(match, value)
        if tenant is None:
            self._cache.pop(key, None)
            return None
        if self._ttl > 0:
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            self._cache[key] = (now + self._ttl, tenant)
        return tenant

    async def _load(self, match: str, value: object) -> Tenant | None:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                f"""
                SELECT c.assistant_id, c.user_id, k.provider, k.encrypted_key
                FROM proxy_credentials c
                LEFT JOIN api_keys k ON k.user_id = c.user_id
                WHERE {match} AND c.revoked_at IS NULL
                ORDER BY c.rotated_at DESC
                """,  # noqa: S608 (`match` is _BY_HASH or _BY_USER)
                value,
            )
        if not rows:
            return None
        user_id: UUID = rows[0]["user_id"]
        byok: dict[Provider, str] = {}
        for row in rows:
            provider = _BYOK_PROVIDERS.get(row["provider"] or "")
            if provider is None or self._box is None:
                continue
            try:
                byok[provider] = self._box.decrypt(
                    row["encrypted_key"], owner=str(user_id)
                )
            except SecretBoxError as exc:
                # Unreadable: the platform key serves the call instead.
                log.error(
                    "llm_proxy.byok_unreadable", user_id=str(user_id), error=exc.detail
                )
        return Tenant(rows[0]["assistant_id"], user_id, byok)
