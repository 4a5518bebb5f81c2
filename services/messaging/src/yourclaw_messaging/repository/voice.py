"""Voice replies: the user's switch (`users.voice_replies`, which messaging
may update) and the spoken replies kept for Twilio to fetch
(`voice_reply_media`, messaging's)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

from yourclaw_common.db import Connection

__all__ = ["add_media", "set_voice_replies", "voice_replies"]

# Expired rows deleted per new one: the table stays small without a sweeper.
_SWEEP_BATCH = 100


async def voice_replies(conn: Connection, user_id: UUID) -> bool:
    """Whether the user wants their voice notes answered aloud."""
    return bool(
        await conn.fetchval("SELECT voice_replies FROM users WHERE id = $1", user_id)
    )


async def set_voice_replies(conn: Connection, user_id: UUID, enabled: bool) -> None:
    await conn.execute(
        "UPDATE users SET voice_replies = $2, updated_at = now() WHERE id = $1",
        user_id,
        enabled,
    )


async def add_media(
    conn: Connection,
    user_id: UUID,
    content: bytes,
    content_type: str,
    *,
    expires_at: datetime,
) -> UUID:
    """Keep a spoken reply until `expires_at`; its id. Deletes a batch of
    expired ones first."""
    await conn.execute(
        """
        DELETE FROM voice_reply_media WHERE id IN (
            SELECT id FROM voice_reply_media WHERE expires_at < now()
            ORDER BY expires_at LIMIT $1
        )
        """,
        _SWEEP_BATCH,
    )
    media_id = uuid4()
    await conn.execute(
        "INSERT INTO voice_reply_media (id, user_id, content, content_type, "
        "expires_at) VALUES ($1, $2, $3, $4, $5)",
        media_id,
        user_id,
        content,
        content_type,
        expires_at,
    )
    return media_id
