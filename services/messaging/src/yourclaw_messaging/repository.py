"""Every SQL statement of the messaging service."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg
from yourclaw_common.db import Connection


@dataclass(frozen=True)
class Recipient:
    """A signed-up user as messaging sees them."""

    user_id: UUID
    assistant_status: str | None
    base_url: str | None
    gateway_token_encrypted: str | None
    model: str | None
    subscription_status: str | None


async def find_recipient(conn: Connection, phone: str) -> Recipient | None:
    row = await conn.fetchrow(
        """
        SELECT p.user_id, a.status AS assistant_status, a.base_url,
               a.gateway_token_encrypted, a.model, s.status AS subscription_status
        FROM user_phones p
        LEFT JOIN assistants a ON a.user_id = p.user_id
        LEFT JOIN subscriptions s ON s.user_id = p.user_id
        WHERE p.phone_e164 = $1
        """,
        phone,
    )
    return Recipient(**dict(row)) if row else None


async def record_inbound(
    conn: Connection,
    *,
    sid: str,
    user_id: UUID | None,
    phone: str,
    body: str,
    num_media: int,
) -> bool:
    """Store an inbound message once; False if this MessageSid was stored before."""
    inserted = await conn.fetchval(
        """
        INSERT INTO messages (user_id, phone_e164, direction, body, twilio_sid, status, num_media)
        VALUES ($1, $2, 'INBOUND', $3, $4, 'RECEIVED', $5)
        ON CONFLICT (twilio_sid) DO NOTHING
        RETURNING 1
        """,
        user_id,
        phone,
        body,
        sid,
        num_media,
    )
    return inserted is not None


async def bump_usage(
    conn: Connection,
    user_id: UUID,
    *,
    inbound: int = 0,
    outbound: int = 0,
    tokens_in: int = 0,
    tokens_out: int = 0,
) -> None:
    await conn.execute(
        """
        INSERT INTO usage_daily (user_id, day, inbound_count, outbound_count, tokens_in, tokens_out)
        VALUES ($1, (now() AT TIME ZONE 'utc')::date, $2, $3, $4, $5)
        ON CONFLICT (user_id, day) DO UPDATE SET
            inbound_count = usage_daily.inbound_count + EXCLUDED.inbound_count,
            outbound_count = usage_daily.outbound_count + EXCLUDED.outbound_count,
            tokens_in = usage_daily.tokens_in + EXCLUDED.tokens_in,
            tokens_out = usage_daily.tokens_out + EXCLUDED.tokens_out
        """,
        user_id,
        inbound,
        outbound,
        tokens_in,
        tokens_out,
    )


async def replies_to(conn: Connection, inbound_sid: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT id, user_id, phone_e164, body, part, status, twilio_sid, send_attempted_at
        FROM messages WHERE in_reply_to = $1 ORDER BY part
        """,
        inbound_sid,
    )


async def add_replies(
    conn: Connection,
    *,
    inbound_sid: str,
    user_id: UUID | None,
    phone: str,
    parts: list[str],
) -> None:
    """Store the reply parts before any is sent, so a redelivery sends the same ones."""
    await conn.executemany(
        """
        INSERT INTO messages (user_id, phone_e164, direction, body, in_reply_to, part, status)
        VALUES ($1, $2, 'OUTBOUND', $3, $4, $5, $6)
        ON CONFLICT (in_reply_to, part) WHERE in_reply_to IS NOT NULL DO NOTHING
        """,
        [
            (user_id, phone, body, inbound_sid, i, "PENDING" if body else "SKIPPED")
            for i, body in enumerate(parts)
        ],
    )


async def mark_sending(conn: Connection, message_id: UUID) -> None:
    await conn.execute(
        "UPDATE messages SET status = 'SENDING', send_attempted_at = now(), updated_at = now() "
        "WHERE id = $1",
        message_id,
    )


async def mark_sent(conn: Connection, message_id: UUID, twilio_sid: str) -> None:
    await conn.execute(
        "UPDATE messages SET status = 'SENT', twilio_sid = $2, updated_at = now() WHERE id = $1",
        message_id,
        twilio_sid,
    )


async def mark_failed(conn: Connection, message_id: UUID, error_code: str) -> None:
    await conn.execute(
        "UPDATE messages SET status = 'FAILED', error_code = $2, updated_at = now() WHERE id = $1",
        message_id,
        error_code,
    )


async def signup_reply_sent_recently(conn: Connection, phone: str) -> bool:
    """Whether a stranger already got the sign-up reply in the last 24 hours."""
    found = await conn.fetchval(
        """
        SELECT 1 FROM messages
        WHERE phone_e164 = $1 AND user_id IS NULL AND direction = 'OUTBOUND'
          AND status IN ('SENT', 'SENDING', 'PENDING')
          AND created_at > now() - interval '24 hours'
        LIMIT 1
        """,
        phone,
    )
    return found is not None
