"""Who messaging talks to (the `channel_recipients` view: every address a
user has on each channel) and the state of their conversation: session,
window, the ready notice."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from yourclaw_common.db import Connection


@dataclass(frozen=True)
class Recipient:
    """A signed-up user as messaging sees them, at one of their addresses."""

    user_id: UUID
    channel: str
    # A phone number (E.164) for WhatsApp and SMS, a chat id for Telegram.
    address: str
    # Where messages we send first go (None: where the user last wrote).
    preferred_channel: str | None
    assistant_id: UUID | None
    assistant_status: str | None
    base_url: str | None
    gateway_token_encrypted: str | None
    model: str | None
    subscription_status: str | None


def recipient_of(row: Mapping[str, Any]) -> Recipient:
    return Recipient(**{f: row[f] for f in Recipient.__dataclass_fields__})


async def addresses_of(conn: Connection, user_id: UUID) -> list[Recipient]:
    """Every address the user has, the best for a message we send first
    leading: their preferred channel, else the one they last wrote on, else
    WhatsApp, Telegram, SMS in that order."""
    rows = await conn.fetch(
        """
        SELECT cr.* FROM channel_recipients cr
        LEFT JOIN LATERAL (
            SELECT m.channel FROM messages m
            WHERE m.user_id = $1 AND m.direction = 'INBOUND'
            ORDER BY m.created_at DESC LIMIT 1
        ) AS last ON true
        WHERE cr.user_id = $1
        ORDER BY COALESCE(cr.channel = cr.preferred_channel, false) DESC,
                 COALESCE(cr.channel = last.channel, false) DESC,
                 array_position(ARRAY['whatsapp', 'telegram', 'sms'], cr.channel)
        """,
        user_id,
    )
    return [recipient_of(dict(row)) for row in rows]


async def set_preferred_channel(conn: Connection, user_id: UUID, channel: str) -> bool:
    """Make `channel` the user's preferred one, if they have an address there
    (checked in the same statement, so a link removed meanwhile is not
    chosen); whether it was."""
    chosen = await conn.fetchval(
        """
        UPDATE users SET preferred_channel = $2, updated_at = now()
        WHERE id = $1 AND EXISTS (
            SELECT 1 FROM channel_recipients WHERE user_id = $1 AND channel = $2
        )
        RETURNING true
        """,
        user_id,
        channel,
    )
    return bool(chosen)


@dataclass(frozen=True)
class ConversationState:
    session_epoch: int
    last_inbound_at: datetime | None
    session_base_url: str | None = None
    session_started_at: datetime | None = None
    # The assistant whose "ready" notice was left out (the user was chatting).
    ready_skipped_for: UUID | None = None


async def conversation(conn: Connection, user_id: UUID) -> ConversationState:
    row = await conn.fetchrow(
        "SELECT session_epoch, last_inbound_at, session_base_url, "
        "session_started_at, ready_skipped_for FROM conversations WHERE user_id = $1",
        user_id,
    )
    return ConversationState(**dict(row)) if row else ConversationState(0, None)


async def skip_ready_notice(
    conn: Connection, user_id: UUID, assistant_id: UUID
) -> None:
    """Remember that this assistant's "ready" notice was left out, for good."""
    await conn.execute(
        "UPDATE conversations SET ready_skipped_for = $2, updated_at = now() "
        "WHERE user_id = $1",
        user_id,
        assistant_id,
    )


async def in_window(
    conn: Connection, user_id: UUID, *, hours: float, channel: str | None = None
) -> bool:
    """Whether the user wrote within the last `hours`, on `channel` if given
    (WhatsApp allows free-form replies for 24 hours after the user's last
    message there; a Telegram message does not open that window)."""
    if channel is None:
        found = await conn.fetchval(
            "SELECT 1 FROM conversations WHERE user_id = $1 "
            "AND last_inbound_at > now() - make_interval(secs => $2)",
            user_id,
            hours * 3600,
        )
    else:
        found = await conn.fetchval(
            "SELECT 1 FROM messages WHERE user_id = $1 AND direction = 'INBOUND' "
            "AND channel = $3 AND created_at > now() - make_interval(secs => $2) "
            "LIMIT 1",
            user_id,
            hours * 3600,
            channel,
        )
    return found is not None


async def reset_session(conn: Connection, user_id: UUID) -> int:
    epoch: int = await conn.fetchval(
        """
        INSERT INTO conversations (user_id, session_epoch, session_started_at)
        VALUES ($1, 1, now())
        ON CONFLICT (user_id) DO UPDATE
            SET session_epoch = conversations.session_epoch + 1,
                session_started_at = now(), session_base_url = NULL, updated_at = now()
        RETURNING session_epoch
        """,
        user_id,
    )
    return epoch
