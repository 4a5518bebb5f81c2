"""Linking a Telegram chat to an account.

`POST /api/v1/channels/telegram/link` mints a code, shown as the deep link
`https://t.me/<bot>?start=<code>`; opening it makes Telegram send `/start
<code>` from the user's chat, and the webhook redeems the code for that chat.
A code is 192 random bits (URL-safe, as Telegram's start parameter wants), kept
only as its SHA-256, single use, valid 15 minutes. A chat linked to one account
is never taken by another's code; a user who links a second chat moves their
link there. Telegram's retry of the update that linked a chat is recognised by
its update_id (`linked_by`) and answered "linked" again.

Its SQL is here, next to the rules it serves, rather than in `repository.py`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from typing import Literal
from uuid import UUID

import asyncpg
from yourclaw_common.db import Connection

__all__ = ["CODE_TTL", "LinkResult", "create_code", "redeem", "start_payload"]

CODE_TTL = dt.timedelta(minutes=15)
LinkResult = Literal["linked", "expired", "invalid"]
# What `create_code` makes (32 characters); a longer or odd payload is no code.
_CODE = re.compile(r"[A-Za-z0-9_-]{16,64}")


def _digest(code: str) -> bytes:
    return hashlib.sha256(code.encode()).digest()


def start_payload(text: str) -> str | None:
    """The parameter of a `/start <parameter>` message ("" for a bare
    `/start`); None for any other text."""
    command, _, rest = text.strip().partition(" ")
    if command != "/start" and not command.startswith("/start@"):
        return None
    return rest.strip()


async def create_code(conn: Connection, user_id: UUID) -> tuple[str, dt.datetime]:
    """A new link code for the user and when it expires. Their earlier codes
    stay valid until used or expired (another tab may be showing one)."""
    code = secrets.token_urlsafe(24)
    await conn.execute(
        """
        DELETE FROM telegram_link_codes
        WHERE user_id = $1 AND (used_at IS NOT NULL OR expires_at <= now())
        """,
        user_id,
    )
    expires_at: dt.datetime = await conn.fetchval(
        """
        INSERT INTO telegram_link_codes (code_sha256, user_id, expires_at)
        VALUES ($1, $2, now() + $3)
        RETURNING expires_at
        """,
        _digest(code),
        user_id,
        CODE_TTL,
    )
    return code, expires_at


async def redeem(
    conn: Connection,
    code: str,
    *,
    chat_id: int,
    username: str | None,
    update_id: int,
) -> LinkResult:
    """What `/start <code>` from `chat_id` (in update `update_id`) makes of the
    code, linking the chat when it is good. Runs inside the caller's transaction."""
    if await conn.fetchval(
        "SELECT 1 FROM telegram_links WHERE chat_id = $1 AND linked_by = $2",
        chat_id,
        update_id,
    ):
        return "linked"  # Telegram's retry of the update that linked it
    if not _CODE.fullmatch(code):
        return "invalid"
    digest = _digest(code)
    row = await conn.fetchrow(
        """
        SELECT user_id, used_at IS NOT NULL AS used, expires_at <= now() AS expired
        FROM telegram_link_codes WHERE code_sha256 = $1
        FOR UPDATE
        """,
        digest,
    )
    if row is None:
        return "invalid"
    owner = await conn.fetchval(
        "SELECT user_id FROM telegram_links WHERE chat_id = $1", chat_id
    )
    if row["used"]:
        # The same link opened again from the chat it linked: still linked.
        return "linked" if owner == row["user_id"] else "expired"
    if row["expired"]:
        return "expired"
    if owner not in (None, row["user_id"]):
        return "invalid"  # another account's chat: it keeps it
    try:
        async with conn.transaction():  # a savepoint
            await conn.execute(
                """
                INSERT INTO telegram_links (user_id, chat_id, username, linked_by)
                VALUES ($1, $2, $3, $4)
                ON CONFLICT (user_id) DO UPDATE
                    SET chat_id = EXCLUDED.chat_id, username = EXCLUDED.username,
                        linked_by = EXCLUDED.linked_by, linked_at = now()
                """,
                row["user_id"],
                chat_id,
                username,
                update_id,
            )
    except asyncpg.UniqueViolationError:
        return "invalid"  # another account linked this chat a moment ago
    await conn.execute(
        "UPDATE telegram_link_codes SET used_at = now() WHERE code_sha256 = $1",
        digest,
    )
    return "linked"
