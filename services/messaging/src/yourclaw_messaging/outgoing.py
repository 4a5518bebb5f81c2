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

from dataclasses import dataclass
from uuid import UUID

import asyncpg
from yourclaw_common.db import Connection

from yourclaw_messaging import metrics, repository
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
