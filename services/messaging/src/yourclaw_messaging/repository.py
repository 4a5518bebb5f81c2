"""Every SQL statement of the messaging service."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
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


def _recipient(row: Mapping[str, Any]) -> Recipient:
    return Recipient(**{f: row[f] for f in Recipient.__dataclass_fields__})


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
    phone: str
    body: str
    num_media: int


async def receive(
    conn: Connection,
    batch: Sequence[Inbound],
    *,
    limits: LimitCheck | None = None,
) -> list[Received]:
    """Store inbound messages once and, the first time, count each in its
    sender's usage, open their 24-hour window and count it against `limits`.

    One statement for the batch: a message over a limit gets its reply stored
    with it (the notice for the first message over, a SKIPPED row for the
    rest), so neither a redelivery nor another replica counts twice or lets
    one through. A batch holds at most one message per sender (Postgres
    cannot upsert a row twice in one statement).
    """
    rows = await conn.fetch(
        """
        WITH input AS (
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[])
                WITH ORDINALITY AS i(phone, body, sid, num_media, n)
        ), r AS (
            SELECT i.n, rc.* FROM input i JOIN recipients rc ON rc.phone = i.phone
        ), ins AS (
            INSERT INTO messages (user_id, phone_e164, direction, body, twilio_sid,
                                  status, num_media)
            SELECT r.user_id, i.phone, 'INBOUND', i.body, i.sid, 'RECEIVED', i.num_media
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
        ), counted AS (
            INSERT INTO rate_windows (user_id, scope, window_start, count)
            SELECT ins.user_id, w.scope, w.start, 1
            FROM ins, (VALUES ('minute', $5::timestamptz, $7::int),
                              ('day', $6::timestamptz, $8::int)) AS w(scope, start, lim)
            WHERE ins.user_id IS NOT NULL AND w.lim > 0
            ORDER BY ins.user_id
            ON CONFLICT (user_id, scope, window_start)
                DO UPDATE SET count = rate_windows.count + 1
            RETURNING user_id, scope, count
        ), hit AS (
            -- The day's limit first, then the minute's, then the tokens'. A
            -- count goes up one at a time, so exactly one message is the first
            -- over a limit: that one carries the notice.
            SELECT ins.user_id, ins.twilio_sid, h.scope, h.notice, h.first
            FROM ins CROSS JOIN LATERAL (
                SELECT 'day' AS scope, $11::text AS notice, c.count = $8 + 1 AS first,
                       1 AS rank
                FROM counted c
                WHERE c.user_id = ins.user_id AND c.scope = 'day' AND c.count > $8
                UNION ALL
                SELECT 'minute', $10::text, c.count = $7 + 1, 2
                FROM counted c
                WHERE c.user_id = ins.user_id AND c.scope = 'minute' AND c.count > $7
                UNION ALL
                SELECT 'tokens', $12::text, NULL, 3
                FROM usage u
                WHERE u.user_id = ins.user_id AND $9::bigint > 0
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
                                  part, status, kind, send_attempted_at)
            SELECT hit.user_id, i.phone, 'OUTBOUND',
                   CASE WHEN s.send THEN hit.notice ELSE '' END, hit.twilio_sid, 0,
                   CASE WHEN s.send THEN 'SENDING' ELSE 'SKIPPED' END, 'notice',
                   CASE WHEN s.send THEN now() END
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
        SELECT r.user_id, r.phone, r.assistant_id, r.assistant_status, r.base_url,
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
        [m.phone for m in batch],
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
    )
    return [_received(dict(row)) for row in rows]


def _received(found: dict[str, Any]) -> Received:
    recipient = _recipient(found) if found["user_id"] is not None else None
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


async def replies_to(conn: Connection, inbound_sid: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT id, user_id, phone_e164, body, part, status, twilio_sid, send_attempted_at,
               kind, content_sid, content_variables
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
    phone: str
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
                                  error_code, send_attempted_at)
            SELECT i.user_id, i.phone, 'OUTBOUND', i.body, i.inbound_sid, i.part,
                   i.status, i.kind, i.content_sid, i.variables::jsonb, i.error_code,
                   CASE WHEN i.status = 'SENDING' THEN now() END
            FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::int[],
                        $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])
                AS i(inbound_sid, user_id, phone, body, part, status, kind,
                     content_sid, variables, error_code)
            ON CONFLICT (in_reply_to, part) WHERE in_reply_to IS NOT NULL DO NOTHING
            RETURNING id, user_id, phone_e164, body, part, status, twilio_sid,
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
        [r.phone for r, *_ in parts],
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


async def find_recipient_by_user(conn: Connection, user_id: UUID) -> Recipient | None:
    row = await conn.fetchrow(
        """
        SELECT * FROM recipients WHERE user_id = $1
        """,
        user_id,
    )
    return _recipient(dict(row)) if row else None


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


async def count_in_window(
    conn: Connection, user_id: UUID, scope: str, window_start: datetime
) -> int:
    """Add one to a shared window counter and return the new count (atomic)."""
    count: int = await conn.fetchval(
        """
        INSERT INTO rate_windows (user_id, scope, window_start, count)
        VALUES ($1, $2, $3, 1)
        ON CONFLICT (user_id, scope, window_start)
            DO UPDATE SET count = rate_windows.count + 1
        RETURNING count
        """,
        user_id,
        scope,
        window_start,
    )
    return count


async def usage_today(conn: Connection, user_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT inbound_count, outbound_count, tokens_in, tokens_out FROM usage_daily "
        "WHERE user_id = $1 AND day = (now() AT TIME ZONE 'utc')::date",
        user_id,
    )


@dataclass(frozen=True)
class ModelSpend:
    """This UTC month's model spend (llm-proxy's totals) and the user's own cap."""

    calls: int
    tokens: int
    cache_read_tokens: int
    cost_usd: float
    platform_usd: float
    cap_usd: float | None


async def model_spend(conn: Connection, user_id: UUID) -> ModelSpend:
    row = await conn.fetchrow(
        """
        SELECT coalesce(m.calls, 0) AS calls,
               coalesce(m.input_tokens + m.output_tokens + m.cache_read_tokens
                        + m.cache_write_tokens, 0) AS tokens,
               coalesce(m.cache_read_tokens, 0) AS cache_read_tokens,
               coalesce(m.cost_microusd, 0) AS cost,
               coalesce(m.platform_cost_microusd, 0) AS platform,
               u.llm_monthly_cap_usd AS cap
        FROM users u
        LEFT JOIN llm_usage_monthly m ON m.user_id = u.id
            AND m.month = date_trunc('month', now() AT TIME ZONE 'utc')::date
        WHERE u.id = $1
        """,
        user_id,
    )
    if row is None:
        return ModelSpend(0, 0, 0, 0.0, 0.0, None)
    return ModelSpend(
        calls=row["calls"],
        tokens=row["tokens"],
        cache_read_tokens=row["cache_read_tokens"],
        cost_usd=row["cost"] / 1_000_000,
        platform_usd=row["platform"] / 1_000_000,
        cap_usd=None if row["cap"] is None else float(row["cap"]),
    )


async def model_calls_refused(conn: Connection, user_id: UUID, model: str) -> bool:
    """Whether llm-proxy refuses this user's calls to `model` this month: it
    told them so once (usage.cap_reached), and neither their own key for the
    model's provider nor the absence of their own cap lets the call through."""
    provider = model.partition("/")[0].upper()
    refused: bool = await conn.fetchval(
        """
        SELECT EXISTS (
            SELECT 1 FROM llm_usage_monthly m JOIN users u ON u.id = m.user_id
            WHERE m.user_id = $1
              AND m.month = date_trunc('month', now() AT TIME ZONE 'utc')::date
              AND m.cap_notified_at IS NOT NULL
              AND (u.llm_monthly_cap_usd IS NOT NULL OR NOT EXISTS (
                  SELECT 1 FROM api_keys k
                  WHERE k.user_id = $1 AND k.provider = $2))
        )
        """,
        user_id,
        provider,
    )
    return refused


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
