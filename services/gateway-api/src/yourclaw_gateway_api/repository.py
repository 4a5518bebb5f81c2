"""Every SQL statement of gateway-api.

It writes `users`, `user_phones`, `phone_claims`, `api_keys` (and its own outbox rows) and only
reads `assistants`, `subscriptions`, `messages`, `usage_daily`, llm-proxy's
`llm_calls` and messaging's `voice_reply_media`; of llm-proxy's `llm_usage_monthly` it clears the month's notices
when the user changes their own cap. Every query of a
user's data is filtered by the id of the token's user, never by a client's id.
"""

from __future__ import annotations

import datetime as dt
from uuid import UUID

import asyncpg
from yourclaw_common.db import Connection

__all__ = [
    "assistant",
    "count_phone_claim_attempt",
    "delete_api_key",
    "delete_phone_claim",
    "delete_phone_claims",
    "link_phone",
    "list_api_keys",
    "live_phone_claims",
    "llm_cap",
    "llm_days_since",
    "messages_before",
    "phone_may_be_proven",
    "phone_owner",
    "phone_proven_by",
    "set_llm_cap",
    "subscription",
    "upsert_api_key",
    "upsert_phone_claim",
    "upsert_user",
    "usage_since",
    "user_overview",
    "voice_reply_media",
]


async def upsert_user(conn: Connection, user_id: UUID, email: str | None) -> None:
    # A token without an email (phone or anonymous sign-in) keeps the one we have.
    await conn.execute(
        """
        INSERT INTO users (id, email) VALUES ($1, $2)
        ON CONFLICT (id) DO UPDATE
            SET email = COALESCE(EXCLUDED.email, users.email), updated_at = now()
            WHERE users.email IS DISTINCT FROM COALESCE(EXCLUDED.email, users.email)
        """,
        user_id,
        email,
    )


async def user_overview(
    conn: Connection, user_id: UUID, *, max_claim_attempts: int
) -> asyncpg.Record | None:
    """The user as `UserOut` shows them. The number shown is the one last
    entered: a live claim's, else the proven one."""
    return await conn.fetchrow(
        """
        SELECT u.id, u.email, u.created_at,
               COALESCE(c.phone_e164, p.phone_e164) AS phone,
               coalesce(
                   p.phone_e164 = COALESCE(c.phone_e164, p.phone_e164), false
               ) AS phone_verified,
               coalesce(s.status, 'NONE') AS subscription_status,
               coalesce(a.status, 'NONE') AS assistant_status
        FROM users u
        LEFT JOIN user_phones p ON p.user_id = u.id
        LEFT JOIN phone_claims c
            ON c.user_id = u.id AND c.expires_at > now() AND c.attempts < $2
        LEFT JOIN subscriptions s ON s.user_id = u.id
        LEFT JOIN assistants a ON a.user_id = u.id
        WHERE u.id = $1
        """,
        user_id,
        max_claim_attempts,
    )


async def phone_owner(conn: Connection, phone: str) -> UUID | None:
    """The user who proved `phone`, if anyone has."""
    owner: UUID | None = await conn.fetchval(
        "SELECT user_id FROM user_phones WHERE phone_e164 = $1", phone
    )
    return owner


async def phone_proven_by(conn: Connection, phone: str, message_sid: str) -> bool:
    """Whether the message `message_sid` is the one that proved `phone` (Twilio
    retries a webhook it saw fail)."""
    found = await conn.fetchval(
        "SELECT 1 FROM user_phones WHERE phone_e164 = $1 AND verified_by = $2",
        phone,
        message_sid,
    )
    return found is not None


async def phone_may_be_proven(
    pool: asyncpg.Pool, phone: str, message_sid: str, *, max_attempts: int
) -> bool:
    found = await pool.fetchval(
        """
        SELECT EXISTS (
            SELECT 1 FROM phone_claims
            WHERE phone_e164 = $1 AND expires_at > now() AND attempts < $3
        ) OR EXISTS (
            SELECT 1 FROM user_phones WHERE phone_e164 = $1 AND verified_by = $2
        )
        """,
        phone,
        message_sid,
        max_attempts,
    )
    return bool(found)


async def upsert_phone_claim(
    conn: Connection,
    user_id: UUID,
    phone: str,
    code_sha256: bytes,
    salt: bytes,
    *,
    expires_in: dt.timedelta,
) -> None:
    """The user's one claim: a new one replaces the old code and its attempts."""
    await conn.execute(
        """
        INSERT INTO phone_claims (user_id, phone_e164, code_sha256, salt, expires_at)
        VALUES ($1, $2, $3, $4, now() + $5)
        ON CONFLICT (user_id) DO UPDATE
            SET phone_e164 = EXCLUDED.phone_e164,
                code_sha256 = EXCLUDED.code_sha256, salt = EXCLUDED.salt,
                expires_at = EXCLUDED.expires_at, attempts = 0, created_at = now()
        """,
        user_id,
        phone,
        code_sha256,
        salt,
        expires_in,
    )


async def delete_phone_claim(conn: Connection, user_id: UUID) -> None:
    await conn.execute("DELETE FROM phone_claims WHERE user_id = $1", user_id)


async def live_phone_claims(
    conn: Connection, phone: str, *, max_attempts: int
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT user_id, code_sha256, salt FROM phone_claims
        WHERE phone_e164 = $1 AND expires_at > now() AND attempts < $2
        ORDER BY created_at
        FOR UPDATE
        """,
        phone,
        max_attempts,
    )


async def count_phone_claim_attempt(conn: Connection, phone: str) -> None:
    await conn.execute(
        """
        UPDATE phone_claims SET attempts = attempts + 1
        WHERE phone_e164 = $1 AND expires_at > now()
        """,
        phone,
    )


async def link_phone(
    conn: Connection, user_id: UUID, phone: str, *, verified_by: str
) -> None:
    """Raises asyncpg.UniqueViolationError when another user has the number."""
    await conn.execute(
        """
        INSERT INTO user_phones (user_id, phone_e164, verified_by) VALUES ($1, $2, $3)
        ON CONFLICT (user_id) DO UPDATE
            SET phone_e164 = EXCLUDED.phone_e164,
                verified_by = EXCLUDED.verified_by, updated_at = now()
        """,
        user_id,
        phone,
        verified_by,
    )


async def delete_phone_claims(conn: Connection, phone: str, user_id: UUID) -> None:
    """Claims a proof settles: the prover's, and every claim on the number."""
    await conn.execute(
        "DELETE FROM phone_claims WHERE phone_e164 = $1 OR user_id = $2",
        phone,
        user_id,
    )


async def subscription(conn: Connection, user_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT status, current_period_end FROM subscriptions WHERE user_id = $1",
        user_id,
    )


async def assistant(conn: Connection, user_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """
        SELECT a.status, a.model, a.created_at, a.updated_at, a.last_error,
               (SELECT max(m.created_at) FROM messages m WHERE m.user_id = a.user_id)
                   AS last_message_at
        FROM assistants a WHERE a.user_id = $1
        """,
        user_id,
    )


async def list_api_keys(conn: Connection, user_id: UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT provider, key_last4, created_at FROM api_keys "
        "WHERE user_id = $1 ORDER BY provider",
        user_id,
    )


async def upsert_api_key(
    conn: Connection, user_id: UUID, provider: str, encrypted_key: str, last4: str
) -> asyncpg.Record:
    row = await conn.fetchrow(
        """
        INSERT INTO api_keys (user_id, provider, encrypted_key, key_last4)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (user_id, provider) DO UPDATE
            SET encrypted_key = EXCLUDED.encrypted_key,
                key_last4 = EXCLUDED.key_last4,
                created_at = now()
        RETURNING provider, key_last4, created_at
        """,
        user_id,
        provider,
        encrypted_key,
        last4,
    )
    assert row is not None
    return row


async def delete_api_key(conn: Connection, user_id: UUID, provider: str) -> bool:
    deleted = await conn.fetchval(
        "DELETE FROM api_keys WHERE user_id = $1 AND provider = $2 RETURNING 1",
        user_id,
        provider,
    )
    return deleted is not None


async def llm_days_since(
    conn: Connection, user_id: UUID, since: dt.datetime
) -> list[asyncpg.Record]:
    """The user's metered model calls per UTC day since `since`, oldest first
    (named as `LlmSpendDay`'s fields, costs in micro-dollars)."""
    return await conn.fetch(
        """
        SELECT (created_at AT TIME ZONE 'UTC')::date AS date,
            count(*) AS calls,
            sum(input_tokens)::bigint AS input_tokens,
            sum(output_tokens)::bigint AS output_tokens,
            sum(cache_read_tokens)::bigint AS cache_read_tokens,
            sum(cache_write_tokens)::bigint AS cache_write_tokens,
            sum(cost_microusd)::bigint AS cost_microusd,
            (sum(cost_microusd) FILTER (WHERE key_source = 'PLATFORM'))::bigint
                AS platform_cost_microusd
        FROM llm_calls WHERE user_id = $1 AND created_at >= $2
        GROUP BY 1 ORDER BY 1
        """,
        user_id,
        since,
    )


async def llm_cap(conn: Connection, user_id: UUID) -> float | None:
    cap = await conn.fetchval(
        "SELECT llm_monthly_cap_usd FROM users WHERE id = $1", user_id
    )
    return None if cap is None else float(cap)


async def set_llm_cap(
    conn: Connection, user_id: UUID, cap_usd: float | None, *, month: dt.date
) -> None:
    """Set the user's own cap. This month's notices were about the old limit:
    llm-proxy sends them again when the new one is reached."""
    await conn.execute(
        "UPDATE users SET llm_monthly_cap_usd = $2 WHERE id = $1", user_id, cap_usd
    )
    await conn.execute(
        "UPDATE llm_usage_monthly SET cap_notified_at = NULL, warned_at = NULL "
        "WHERE user_id = $1 AND month = $2",
        user_id,
        month,
    )


async def usage_since(
    conn: Connection, user_id: UUID, since: dt.date
) -> list[asyncpg.Record]:
    """Message counts and tokens per day, newest first, as `UsageDay`'s fields."""
    return await conn.fetch(
        """
        SELECT day AS date, inbound_count AS inbound, outbound_count AS outbound,
            tokens_in, tokens_out
        FROM usage_daily WHERE user_id = $1 AND day >= $2 ORDER BY day DESC
        """,
        user_id,
        since,
    )


async def messages_before(
    conn: Connection, user_id: UUID, *, limit: int, before: UUID | None
) -> list[asyncpg.Record]:
    """Newest first; `before` is a message id of this user (another user's, or an
    unknown id, gives an empty page: nothing about it is revealed)."""
    if before is None:
        return await conn.fetch(
            """
            SELECT id, direction, body, status, delivery_status, num_media, created_at
            FROM messages
            WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2
            """,
            user_id,
            limit,
        )
    return await conn.fetch(
        """
        SELECT m.id, m.direction, m.body, m.status, m.delivery_status, m.num_media,
               m.created_at
        FROM messages m,
             (SELECT created_at, id FROM messages WHERE id = $3 AND user_id = $1) c
        WHERE m.user_id = $1 AND (m.created_at, m.id) < (c.created_at, c.id)
        ORDER BY m.created_at DESC, m.id DESC LIMIT $2
        """,
        user_id,
        limit,
        before,
    )


async def voice_reply_media(conn: Connection, media_id: UUID) -> asyncpg.Record | None:
    """A spoken reply messaging keeps for Twilio (`content`, `content_type`),
    unless it has expired."""
    return await conn.fetchrow(
        "SELECT content, content_type FROM voice_reply_media "
        "WHERE id = $1 AND expires_at > now()",
        media_id,
    )
