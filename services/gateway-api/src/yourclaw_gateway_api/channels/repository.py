"""SQL of the channels view: reads `users`, `user_phones`, `phone_claims`,
`telegram_links`, `sms_opt_outs` and `messages`; writes only
`users.preferred_channel` and `users.voice_replies`."""

from __future__ import annotations

from uuid import UUID

import asyncpg
from yourclaw_common.db import Connection

__all__ = ["channel_state", "set_preferred_channel", "set_voice_replies"]


async def channel_state(conn: Connection, user_id: UUID) -> asyncpg.Record | None:
    """The user's addresses on every channel, their choice and the channel of
    their last message; None when the user does not exist."""
    return await conn.fetchrow(
        """
        SELECT u.preferred_channel,
               u.voice_replies,
               p.phone_e164 AS phone,
               c.phone_e164 AS claimed_phone,
               t.user_id IS NOT NULL AS telegram_linked,
               t.username AS telegram_username,
               EXISTS (
                   SELECT 1 FROM sms_opt_outs o WHERE o.phone_e164 = p.phone_e164
               ) AS sms_opted_out,
               (
                   SELECT m.channel FROM messages m
                   WHERE m.user_id = u.id AND m.direction = 'INBOUND'
                   ORDER BY m.created_at DESC
                   LIMIT 1
               ) AS last_channel
        FROM users u
        LEFT JOIN user_phones p ON p.user_id = u.id
        LEFT JOIN phone_claims c ON c.user_id = u.id
        LEFT JOIN telegram_links t ON t.user_id = u.id
        WHERE u.id = $1
        """,
        user_id,
    )


async def set_preferred_channel(
    conn: Connection, user_id: UUID, channel: str | None
) -> None:
    await conn.execute(
        "UPDATE users SET preferred_channel = $2, updated_at = now() WHERE id = $1",
        user_id,
        channel,
    )


async def set_voice_replies(conn: Connection, user_id: UUID, enabled: bool) -> None:
    await conn.execute(
        "UPDATE users SET voice_replies = $2, updated_at = now() WHERE id = $1",
        user_id,
        enabled,
    )
