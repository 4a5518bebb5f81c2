"""Who messaging talks to (the `recipients` view) and the state of their
conversation: session, window, the ready notice."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from yourclaw_common.db import Connection


@dataclass(frozen=True)
class Recipient:
    """A signed-up user as messaging sees them."""

    user_id: UUID
    phone: str
    assistant_id: UUID | None
    assistant_status: str | None
    base_url: str | None
    gateway_token_encrypted: str | None
    model: str | None
    subscription_status: str | None


def recipient_of(row: Mapping[str, Any]) -> Recipient:
    return Recipient(**{f: row[f] for f in Recipient.__dataclass_fields__})


async def find_recipient_by_user(conn: Connection, user_id: UUID) -> Recipient | None:
    row = await conn.fetchrow(
        """
        SELECT * FROM recipients WHERE user_id = $1
        """,
        user_id,
    )
    return recipient_of(dict(row)) if row else None


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


async def in_window(conn: Connection, user_id: UUID, *, hours: float) -> bool:
    """Whether the user wrote within the last `hours` (free-form replies allowed)."""
    found = await conn.fetchval(
        "SELECT 1 FROM conversations WHERE user_id = $1 "
        "AND last_inbound_at > now() - make_interval(secs => $2)",
        user_id,
        hours * 3600,
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
