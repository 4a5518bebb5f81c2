"""Inbound messages: stored once, counted against the limits; the session
history replayed to a gateway that lost it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from yourclaw_common.db import Connection

from yourclaw_messaging.repository.conversations import (
    ConversationState,
    Recipient,
    recipient_of,
)


@dataclass(frozen=True)
class LimitCheck:
    """The limits an inbound message counts against (0: off), the windows it
    falls in, and the notice for each limit."""

    per_minute: int
    per_day: int
    tokens_per_day: int
    minute: datetime
    day: datetime
    minute_notice: str
    day_notice: str
    tokens_notice: str


@dataclass(frozen=True)
class Received:
    """An inbound message as recorded: who sent it, whether it is new, and (new,
    from a user) their conversation with the window just opened."""

    recipient: Recipient | None
    is_new: bool
    state: ConversationState | None
    # The limit this message is over ("minute", "day", "tokens"), if any; its
    # reply (the notice, or a SKIPPED row when one went out already) is stored.
    limited: str | None = None
    notified: bool = False


@dataclass(frozen=True)
class Inbound:
    sid: str
    channel: str
    # A phone number, or a Telegram chat id.
    address: str
    body: str
    num_media: int
    # A keyword the channel must always act on (SMS STOP, START, HELP): stored
    # once like any message, but neither counted against the limits nor
    # refused by them.
    exempt: bool = False


async def receive(
    conn: Connection,
    batch: Sequence[Inbound],
    *,
    limits: LimitCheck | None = None,
) -> list[Received]:
    """Store inbound messages once and, the first time, count each in its
    sender's usage, open their 24-hour window and count it against `limits`
    (not an `exempt` one: it is never counted nor limited).

    One statement for the batch: a message over a limit gets its reply stored
    with it (the notice for the first message over, a SKIPPED row for the
    rest), so neither a redelivery nor another replica counts twice or lets
    one through. A batch holds at most one message per sender (Postgres
    cannot upsert a row twice in one statement).
    """
    rows = await conn.fetch(
        """
        WITH input AS (
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[],
                                 $13::text[], $14::bool[])
                WITH ORDINALITY AS i(address, body, sid, num_media, channel,
                                     exempt, n)
        ), r AS (
            -- Each message's sender looked up by its index (a plain join
            -- would hash the whole view).
            SELECT i.n, rc.* FROM input i CROSS JOIN LATERAL (
                SELECT * FROM channel_recipients c
                WHERE c.channel = i.channel AND c.address = i.address
                OFFSET 0
            ) AS rc
        ), ins AS (
            INSERT INTO messages (user_id, phone_e164, direction, body, twilio_sid,
                                  status, num_media, channel)
            SELECT r.user_id, i.address, 'INBOUND', i.body, i.sid, 'RECEIVED',
                   i.num_media, i.channel
            FROM input i LEFT JOIN r ON r.n = i.n
            ON CONFLICT (twilio_sid) DO NOTHING
            RETURNING user_id, twilio_sid
        ), usage AS (
            INSERT INTO usage_daily (user_id, day, inbound_count)
            SELECT user_id, (now() AT TIME ZONE 'utc')::date, 1
            FROM ins WHERE user_id IS NOT NULL ORDER BY user_id
            ON CONFLICT (user_id, day) DO UPDATE
                SET inbound_count = usage_daily.inbound_count + 1
            RETURNING user_id, tokens_in + tokens_out AS tokens
        ), checked AS (
            -- The new messages the limits apply to: a user's, not exempt.
            SELECT ins.user_id, ins.twilio_sid
            FROM ins JOIN input i ON i.sid = ins.twilio_sid
            WHERE ins.user_id IS NOT NULL AND NOT i.exempt
        ), counted AS (
            INSERT INTO rate_windows (user_id, scope, window_start, count)
            SELECT checked.user_id, w.scope, w.start, 1
            FROM checked, (VALUES ('minute', $5::timestamptz, $7::int),
                                  ('day', $6::timestamptz, $8::int))
                AS w(scope, start, lim)
            WHERE w.lim > 0
            ORDER BY checked.user_id
            ON CONFLICT (user_id, scope, window_start)
                DO UPDATE SET count = rate_windows.count + 1
            RETURNING user_id, scope, count
        ), hit AS (
            -- The day's limit first, then the minute's, then the tokens'. A
            -- count goes up one at a time, so exactly one message is the first
            -- over a limit: that one carries the notice.
            SELECT checked.user_id, checked.twilio_sid, h.scope, h.notice, h.first
            FROM checked CROSS JOIN LATERAL (
                SELECT 'day' AS scope, $11::text AS notice, c.count = $8 + 1 AS first,
                       1 AS rank
                FROM counted c
                WHERE c.user_id = checked.user_id AND c.scope = 'day'
                  AND c.count > $8
                UNION ALL
                SELECT 'minute', $10::text, c.count = $7 + 1, 2
                FROM counted c
                WHERE c.user_id = checked.user_id AND c.scope = 'minute'
                  AND c.count > $7
                UNION ALL
                SELECT 'tokens', $12::text, NULL, 3
                FROM usage u
                WHERE u.user_id = checked.user_id AND $9::bigint > 0
                  AND u.tokens >= $9::bigint
                ORDER BY rank LIMIT 1
            ) AS h
        ), tokens_claim AS (
            -- Tokens are not counted per message: the notice is claimed once a day.
            INSERT INTO rate_windows (user_id, scope, window_start, count, notified)
            SELECT user_id, 'tokens', $6::timestamptz, 0, true
            FROM hit WHERE scope = 'tokens' ORDER BY user_id
            ON CONFLICT (user_id, scope, window_start) DO UPDATE SET notified = true
                WHERE NOT rate_windows.notified
            RETURNING user_id
        ), notice AS (
            INSERT INTO messages (user_id, phone_e164, direction, body, in_reply_to,
                                  part, status, kind, send_attempted_at, channel)
            SELECT hit.user_id, i.address, 'OUTBOUND',
                   CASE WHEN s.send THEN hit.notice ELSE '' END, hit.twilio_sid, 0,
                   CASE WHEN s.send THEN 'SENDING' ELSE 'SKIPPED' END, 'notice',
                   CASE WHEN s.send THEN now() END, i.channel
            FROM hit JOIN input i ON i.sid = hit.twilio_sid, LATERAL (
                SELECT COALESCE(
                    hit.first,
                    EXISTS (SELECT 1 FROM tokens_claim t WHERE t.user_id = hit.user_id)
                ) AS send
            ) AS s
            ON CONFLICT (in_reply_to, part) WHERE in_reply_to IS NOT NULL DO NOTHING
            RETURNING in_reply_to, status
        ), conv AS (
            INSERT INTO conversations (user_id, last_inbound_at)
            SELECT user_id, now() FROM ins WHERE user_id IS NOT NULL ORDER BY user_id
            ON CONFLICT (user_id) DO UPDATE
                SET last_inbound_at = now(), updated_at = now()
            RETURNING user_id, session_epoch, last_inbound_at,
                      session_base_url, session_started_at, ready_skipped_for
        )
        SELECT r.user_id, r.channel, r.address, r.preferred_channel, r.assistant_id, r.assistant_status, r.base_url,
               r.gateway_token_encrypted, r.model, r.subscription_status,
               ins.twilio_sid IS NOT NULL AS is_new,
               conv.session_epoch, conv.last_inbound_at,
               conv.session_base_url, conv.session_started_at, conv.ready_skipped_for,
               hit.scope AS limited,
               EXISTS (
                   SELECT 1 FROM notice
                   WHERE notice.in_reply_to = i.sid AND notice.status = 'SENDING'
               ) AS notified
        FROM input i
        LEFT JOIN r ON r.n = i.n
        LEFT JOIN ins ON ins.twilio_sid = i.sid
        LEFT JOIN conv ON conv.user_id = ins.user_id
        LEFT JOIN hit ON hit.twilio_sid = i.sid
        ORDER BY i.n
        """,
        [m.address for m in batch],
        [m.body for m in batch],
        [m.sid for m in batch],
        [m.num_media for m in batch],
        limits.minute if limits else None,
        limits.day if limits else None,
        limits.per_minute if limits else 0,
        limits.per_day if limits else 0,
        limits.tokens_per_day if limits else 0,
        limits.minute_notice if limits else "",
        limits.day_notice if limits else "",
        limits.tokens_notice if limits else "",
        [m.channel for m in batch],
        [m.exempt for m in batch],
    )
    return [_received(dict(row)) for row in rows]


def _received(found: dict[str, Any]) -> Received:
    recipient = recipient_of(found) if found["user_id"] is not None else None
    state = (
        ConversationState(
            **{f: found[f] for f in ConversationState.__dataclass_fields__}
        )
        if found["session_epoch"] is not None
        else None
    )
    return Received(
        recipient,
        bool(found["is_new"]),
        state,
        limited=found["limited"],
        notified=bool(found["notified"]),
    )


async def stranger_reply_sent_recently(
    conn: Connection, channel: str, address: str, text: str
) -> bool:
    """Whether an address with no account already got this reply in the last
    24 hours: a stranger gets each of our replies once a day, not once a message."""
    found = await conn.fetchval(
        """
        SELECT 1 FROM messages
        WHERE phone_e164 = $1 AND channel = $3 AND user_id IS NULL
          AND direction = 'OUTBOUND'
          AND body = $2 AND status IN ('SENT', 'SENDING', 'PENDING')
          AND created_at > now() - interval '24 hours'
        LIMIT 1
        """,
        address,
        text,
        channel,
    )
    return found is not None


async def phone_claimed(conn: Connection, phone: str) -> bool:
    """Whether someone claimed this number on the dashboard and has not proven it
    yet (gateway-api's `phone_claims`, read only)."""
    found = await conn.fetchval(
        """
        SELECT 1 FROM phone_claims
        WHERE phone_e164 = $1 AND expires_at > now()
        LIMIT 1
        """,
        phone,
    )
    return found is not None


async def history(
    conn: Connection,
    user_id: UUID,
    *,
    since: datetime | None,
    before_sid: str,
    limit: int,
) -> list[tuple[str, str]]:
    """The latest turns of the session, oldest first, as (role, text): what the
    user wrote and the assistant's replies, not our notices or templates."""
    rows = await conn.fetch(
        """
        SELECT direction, body FROM messages
        WHERE user_id = $1
          AND created_at >= COALESCE($2, '-infinity'::timestamptz)
          AND created_at < (SELECT created_at FROM messages WHERE twilio_sid = $3)
          AND body <> ''
          AND (direction = 'INBOUND'
               OR (kind = 'reply' AND status IN ('SENT', 'SENDING', 'PENDING')))
        ORDER BY created_at DESC, part DESC NULLS LAST
        LIMIT $4
        """,
        user_id,
        since,
        before_sid,
        limit,
    )
    return [
        ("user" if r["direction"] == "INBOUND" else "assistant", r["body"])
        for r in reversed(rows)
    ]
