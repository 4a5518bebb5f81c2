"""Outbound messages: stored before they are sent, then their send and
delivery status; the shared send-rate bucket."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
from yourclaw_common.db import Connection


async def replies_to(conn: Connection, inbound_sid: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT id, user_id, channel, phone_e164, body, part, status, twilio_sid,
               send_attempted_at, kind, content_sid, content_variables
        FROM messages WHERE in_reply_to = $1 ORDER BY part
        """,
        inbound_sid,
    )


@dataclass(frozen=True)
class Turn:
    """What an assistant's answer leaves besides the reply: the address its
    session now lives at and the tokens it spent."""

    base_url: str | None
    tokens_in: int
    tokens_out: int


@dataclass(frozen=True)
class Replies:
    """What to store in answer to `inbound_sid` (a MessageSid, or a key such as
    `ready:<assistant_id>` for messages we send first)."""

    inbound_sid: str
    user_id: UUID | None
    channel: str
    # The channel's address: a phone number, or a Telegram chat id.
    address: str
    parts: list[str]
    kind: str = "reply"
    content_sid: str | None = None
    content_variables: dict[str, str] | None = None
    error_code: str | None = None
    # Recorded with them, once (needs `user_id`).
    turn: Turn | None = None

    def statuses(self) -> list[str]:
        """Sent right after the commit, so stored as SENDING (a redelivery asks
        Twilio before sending one again); empty or refused parts as SKIPPED."""
        return [
            "SENDING"
            if (body or self.content_sid) and not self.error_code
            else "SKIPPED"
            for body in self.parts
        ]


async def add_many_replies(
    conn: Connection, batch: Sequence[Replies]
) -> list[list[asyncpg.Record] | None]:
    """Store reply parts before any is sent, so a redelivery sends the same ones:
    one statement for the whole batch.

    An empty part (or an `error_code`) is stored as SKIPPED: recorded, never sent.
    For each `Replies`, in order: its rows by part, or None when some part was
    stored before (by an earlier attempt or another replica): read them with
    `replies_to`.
    """
    parts = [
        (r, i, body, status)
        for r in batch
        for i, (body, status) in enumerate(zip(r.parts, r.statuses(), strict=True))
    ]
    turns = [r for r in batch if r.turn is not None and r.user_id is not None]
    rows = await conn.fetch(
        """
        WITH ins AS (
            INSERT INTO messages (user_id, phone_e164, direction, body, in_reply_to,
                                  part, status, kind, content_sid, content_variables,
                                  error_code, send_attempted_at, channel)
            SELECT i.user_id, i.address, 'OUTBOUND', i.body, i.inbound_sid, i.part,
                   i.status, i.kind, i.content_sid, i.variables::jsonb, i.error_code,
                   CASE WHEN i.status = 'SENDING' THEN now() END, i.channel
            FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::int[],
                        $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                        $16::text[])
                AS i(inbound_sid, user_id, address, body, part, status, kind,
                     content_sid, variables, error_code, channel)
            ON CONFLICT (in_reply_to, part) WHERE in_reply_to IS NOT NULL DO NOTHING
            RETURNING id, user_id, channel, phone_e164, body, part, status, twilio_sid,
                      send_attempted_at, kind, content_sid, content_variables,
                      in_reply_to
        ), turns AS (
            SELECT * FROM unnest($11::text[], $12::uuid[], $13::text[], $14::bigint[],
                                 $15::bigint[])
                AS t(inbound_sid, user_id, base_url, tokens_in, tokens_out)
            WHERE EXISTS (SELECT 1 FROM ins WHERE ins.in_reply_to = t.inbound_sid)
        ), session AS (
            UPDATE conversations c SET session_base_url = t.base_url, updated_at = now()
            FROM turns t
            WHERE c.user_id = t.user_id AND t.base_url IS NOT NULL
              AND c.session_base_url IS DISTINCT FROM t.base_url
        ), usage AS (
            INSERT INTO usage_daily (user_id, day, tokens_in, tokens_out)
            SELECT user_id, (now() AT TIME ZONE 'utc')::date, sum(tokens_in),
                   sum(tokens_out)
            FROM turns WHERE tokens_in > 0 OR tokens_out > 0
            GROUP BY user_id ORDER BY user_id
            ON CONFLICT (user_id, day) DO UPDATE SET
                tokens_in = usage_daily.tokens_in + EXCLUDED.tokens_in,
                tokens_out = usage_daily.tokens_out + EXCLUDED.tokens_out
        )
        SELECT * FROM ins
        """,
        [r.inbound_sid for r, *_ in parts],
        [r.user_id for r, *_ in parts],
        [r.address for r, *_ in parts],
        [body for _, _, body, _ in parts],
        [i for _, i, _, _ in parts],
        [status for *_, status in parts],
        [r.kind for r, *_ in parts],
        [r.content_sid for r, *_ in parts],
        [
            json.dumps(r.content_variables) if r.content_variables else None
            for r, *_ in parts
        ],
        [r.error_code for r, *_ in parts],
        [r.inbound_sid for r in turns],
        [r.user_id for r in turns],
        [r.turn.base_url for r in turns if r.turn],
        [r.turn.tokens_in for r in turns if r.turn],
        [r.turn.tokens_out for r in turns if r.turn],
        [r.channel for r, *_ in parts],
    )
    stored: dict[str, list[asyncpg.Record]] = {}
    for row in rows:
        stored.setdefault(row["in_reply_to"], []).append(row)
    result: list[list[asyncpg.Record] | None] = []
    for r in batch:
        mine = stored.get(r.inbound_sid, [])
        result.append(
            sorted(mine, key=lambda row: int(row["part"]))
            if len(mine) == len(r.parts)
            else None
        )
    return result


async def mark_sending(conn: Connection, message_id: UUID) -> None:
    await conn.execute(
        "UPDATE messages SET status = 'SENDING', send_attempted_at = now(), updated_at = now() "
        "WHERE id = $1",
        message_id,
    )


async def mark_pending(conn: Connection, message_id: UUID) -> None:
    """Twilio answered a send with an error: it surely was not taken."""
    await conn.execute(
        "UPDATE messages SET status = 'PENDING', updated_at = now() "
        "WHERE id = $1 AND status = 'SENDING' AND twilio_sid IS NULL",
        message_id,
    )


async def is_recorded_sent(conn: Connection, message_id: UUID) -> bool:
    """Whether Twilio's sid is recorded for the message (by its send or by a
    status callback that named it)."""
    found = await conn.fetchval(
        "SELECT twilio_sid IS NOT NULL OR status IN ('SENT', 'FAILED', 'SKIPPED') "
        "FROM messages WHERE id = $1",
        message_id,
    )
    return bool(found)


async def mark_sent(
    conn: Connection, sends: Sequence[tuple[UUID, str]]
) -> list[asyncpg.Record | None]:
    """Record Twilio's sid of each (message id, sid), count the messages in their
    users' usage and apply status callbacks that beat us here: one statement.

    A message that already has a sid is left alone, so the send and a status
    callback that names the message (whichever comes first) count it once.

    For each send, in order: the message when such an early status changed it
    (as `apply_twilio_status` does), else None.
    """
    rows = await conn.fetch(
        """
        WITH input AS (
            SELECT * FROM unnest($1::uuid[], $2::text[]) AS i(id, sid)
        ), sent AS (
            UPDATE messages m
            SET twilio_sid = i.sid,
                delivery_status = CASE
                    WHEN twilio_status_rank(t.status) > twilio_status_rank('queued')
                    THEN t.status ELSE 'queued' END,
                status = CASE WHEN t.status IN ('failed', 'undelivered') THEN 'FAILED'
                              ELSE 'SENT' END,
                error_code = COALESCE(t.error_code, m.error_code),
                updated_at = now()
            FROM input i
            LEFT JOIN twilio_statuses t ON t.twilio_sid = i.sid
            WHERE m.id = i.id AND m.twilio_sid IS NULL
              -- A sid is one message's: never copied onto another (unique key).
              AND NOT EXISTS (SELECT 1 FROM messages o WHERE o.twilio_sid = i.sid)
            RETURNING m.id, m.user_id, m.phone_e164, m.body, m.kind,
                      m.delivery_status, m.error_code,
                      twilio_status_rank(t.status) > twilio_status_rank('queued')
                          AS early
        ), usage AS (
            INSERT INTO usage_daily (user_id, day, outbound_count)
            SELECT user_id, (now() AT TIME ZONE 'utc')::date, count(*)
            FROM sent WHERE user_id IS NOT NULL
            GROUP BY user_id ORDER BY user_id
            ON CONFLICT (user_id, day) DO UPDATE
                SET outbound_count = usage_daily.outbound_count + EXCLUDED.outbound_count
        )
        SELECT * FROM sent WHERE early
        """,
        [message_id for message_id, _ in sends],
        [sid for _, sid in sends],
    )
    early = {row["id"]: row for row in rows}
    return [early.get(message_id) for message_id, _ in sends]


async def mark_failed(conn: Connection, message_id: UUID, error_code: str) -> None:
    await conn.execute(
        "UPDATE messages SET status = 'FAILED', error_code = $2, updated_at = now() WHERE id = $1",
        message_id,
        error_code,
    )


async def record_twilio_status(
    conn: Connection, sid: str, status: str, error_code: str | None
) -> bool:
    """Keep the furthest status Twilio reported for `sid`; False if this one is late."""
    applied = await conn.fetchval(
        """
        INSERT INTO twilio_statuses (twilio_sid, status, error_code) VALUES ($1, $2, $3)
        ON CONFLICT (twilio_sid) DO UPDATE
            SET status = EXCLUDED.status,
                error_code = COALESCE(EXCLUDED.error_code, twilio_statuses.error_code),
                updated_at = now()
            WHERE twilio_status_rank(EXCLUDED.status)
                > twilio_status_rank(twilio_statuses.status)
        RETURNING 1
        """,
        sid,
        status,
        error_code,
    )
    return applied is not None


async def apply_twilio_status(conn: Connection, sid: str) -> asyncpg.Record | None:
    """Copy the stored Twilio status onto the message with `sid`, never backwards.

    Returns the message when its status changed.
    """
    return await conn.fetchrow(
        """
        UPDATE messages m
        SET delivery_status = t.status,
            error_code = COALESCE(t.error_code, m.error_code),
            status = CASE WHEN t.status IN ('failed', 'undelivered') THEN 'FAILED'
                          ELSE m.status END,
            updated_at = now()
        FROM twilio_statuses t
        WHERE t.twilio_sid = $1 AND m.twilio_sid = $1
          AND twilio_status_rank(t.status)
              > twilio_status_rank(COALESCE(m.delivery_status, ''))
        RETURNING m.id, m.user_id, m.phone_e164, m.body, m.kind, m.delivery_status,
                  m.error_code
        """,
        sid,
    )


def row_variables(row: asyncpg.Record) -> dict[str, Any] | None:
    raw = row["content_variables"]
    if raw is None:
        return None
    value = json.loads(raw) if isinstance(raw, str) else raw
    return value if isinstance(value, dict) else None


async def lease_send_tokens(
    conn: Connection, sender: str, *, want: int, rate: float, capacity: float
) -> int:
    """Take up to `want` tokens from the sender's shared bucket (refilled at
    `rate` per second, up to `capacity`); returns how many it got."""
    granted: int = await conn.fetchval(
        """
        INSERT INTO send_tokens AS b (sender, tokens, refilled_at, last_grant)
        VALUES ($1, $4 - LEAST($2, floor($4)), now(), LEAST($2, floor($4)))
        ON CONFLICT (sender) DO UPDATE SET
            tokens = send_tokens_at(b.tokens, b.refilled_at, now(), $3, $4)
                     - LEAST($2, floor(send_tokens_at(b.tokens, b.refilled_at, now(), $3, $4))),
            last_grant = LEAST($2, floor(send_tokens_at(b.tokens, b.refilled_at, now(), $3, $4))),
            refilled_at = GREATEST(b.refilled_at, now())
        RETURNING last_grant
        """,
        sender,
        want,
        rate,
        capacity,
    )
    return granted
