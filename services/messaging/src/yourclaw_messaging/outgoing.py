"""What we send, stored before it is sent.

Every outbound message (replies, notices, proactive messages, templates) is a
`messages` row keyed by `(in_reply_to, part)`: the inbound MessageSid for
replies, `out:<event_id>` / `ready:<assistant_id>` / `restart:<event_id>` /
`usage:<cap|warn>:<user>:<month>` for messages we send first and
`fallback:<message id>` for a template that replaces a refused free-form
message. The key makes the insert a claim: whichever attempt (a redelivery,
another replica) stores the parts first is the one that sends them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
from yourclaw_common.db import Connection

from yourclaw_messaging import metrics, repository
from yourclaw_messaging.batching import Batcher
from yourclaw_messaging.errors import is_unstorable, unstorable_as_permanent
from yourclaw_messaging.repository.outbound import Replies, Turn


@dataclass(frozen=True)
class Planned:
    """What to store for one outgoing message before sending it."""

    parts: list[str]
    kind: str
    content_sid: str | None = None
    content_variables: dict[str, str] | None = None
    error_code: str | None = None

    def replies(
        self,
        key: str,
        user_id: UUID | None,
        channel: str,
        address: str,
        *,
        turn: Turn | None = None,
    ) -> Replies:
        return Replies(
            inbound_sid=key,
            user_id=user_id,
            channel=channel,
            address=address,
            parts=self.parts,
            kind=self.kind,
            content_sid=self.content_sid,
            content_variables=self.content_variables,
            error_code=self.error_code,
            turn=turn,
        )


async def store(
    conn: Connection,
    key: str,
    user_id: UUID | None,
    channel: str,
    address: str,
    planned: Planned,
) -> tuple[list[asyncpg.Record], bool]:
    """Store what to send to `address` on `channel`, to be sent right after the
    commit. Returns the stored parts and whether this call stored them (else
    an earlier attempt or another replica did, and they are as it left them)."""
    outgoing = planned.replies(key, user_id, channel, address)
    (stored,) = await repository.outbound.add_many_replies(conn, [outgoing])
    return await settle(conn, outgoing, stored)


async def settle(
    db: Connection | asyncpg.Pool,
    outgoing: Replies,
    stored: list[asyncpg.Record] | None,
) -> tuple[list[asyncpg.Record], bool]:
    """The parts of `outgoing` as stored, and whether this attempt stored them
    (`stored`: what its insert returned, None when it lost to an earlier one)."""
    if stored is None:  # stored before: as the earlier attempt left them
        if isinstance(db, asyncpg.Pool):
            async with db.acquire() as conn:
                return await repository.outbound.replies_to(
                    conn, outgoing.inbound_sid
                ), False
        return await repository.outbound.replies_to(db, outgoing.inbound_sid), False
    if not outgoing.error_code:
        sendable = sum(1 for p in outgoing.parts if p or outgoing.content_sid)
        if sendable:
            metrics.OUTBOUND.labels(outgoing.kind).inc(sendable)
    return stored, True


def sent_recorder(
    pool: asyncpg.Pool,
) -> Batcher[tuple[UUID, str], asyncpg.Record | None]:
    """Records the provider's id of each (message id, provider id) sent, batched
    with the other turns' (one statement, one commit); each call's result is
    the message when a status callback that beat us here changed it
    (`repository.outbound.mark_sent`). A batch PostgreSQL refuses for one
    item's value is stored item by item."""

    async def record(sends: list[tuple[UUID, str]]) -> list[asyncpg.Record | None]:
        async with pool.acquire() as conn:
            with unstorable_as_permanent():
                return await repository.outbound.mark_sent(conn, sends)

    return Batcher(record, isolate=is_unstorable)


def in_flight(stored: Sequence[asyncpg.Record], *, within: float) -> bool:
    """Whether a part was handed to the provider less than `within` seconds ago
    and its id is not recorded yet: another attempt may be sending it now."""
    since = datetime.now(UTC) - timedelta(seconds=within)
    return any(
        row["status"] == "SENDING"
        and row["twilio_sid"] is None
        and (row["send_attempted_at"] or since) > since
        for row in stored
    )
