"""Messages we send first: an automation's result (`outbound.whatsapp`), the
ready notice, the restart notice and the monthly usage notices. Each goes to
the user's preferred channel (else the one they last wrote on).

Each is sent once, whichever copy of its event arrives first (a redelivery,
two emitting replicas, two messaging replicas). The claim is the insert of its
parts under its key: the handler whose insert wins sends them. A handler that
finds nothing stored and then loses the insert leaves the sending to the
winner; one that finds the parts already stored while another handler may
still be sending them comes back later (a nak), and resumes them only once
that send has had its time (the sender died in between).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from uuid import UUID

import asyncpg
from yourclaw_common.db import Connection
from yourclaw_common.events import (
    AssistantReady,
    AssistantRestarted,
    OutboundWhatsApp,
    UsageAllowanceWarning,
    UsageCapReached,
)
from yourclaw_common.logging import get_logger

from yourclaw_messaging import outgoing, replies, repository
from yourclaw_messaging.channels.base import Channel
from yourclaw_messaging.errors import SendUnconfirmed
from yourclaw_messaging.limits import Limits
from yourclaw_messaging.outgoing import Planned
from yourclaw_messaging.repository.conversations import Recipient

log = get_logger(__name__)

_READY_TEXT = "Your YourClaw assistant is ready! Say hi here to get started."
# "Chatting recently": who hears of a restart (their last message may be lost).
_RECENT_HOURS = 24.0

# What to store for a recipient (on the channel given), or None to send nothing.
_Plan = Callable[[Connection, Recipient, Channel], Awaitable[Planned | None]]


@dataclass
class Proactive:
    pool: asyncpg.Pool
    # Every channel messaging serves, by name.
    channels: Mapping[str, Channel]
    limits: Limits
    app_url: str
    # What llm-proxy lets a user spend on platform keys a month (USD).
    llm_allowance_usd: float = 8.0

    async def handle_outbound(self, event: OutboundWhatsApp) -> None:
        """A proactive message (an automation's result, a system notice)."""
        await self._notify(event.user_id, f"out:{event.event_id}", event.body)

    async def handle_usage(
        self, event: UsageCapReached | UsageAllowanceWarning
    ) -> None:
        """Tell the user, once a month each, that their assistant used 80 % of
        the allowance or all of it (llm-proxy emits each event once)."""
        which = "allowance" if event.allowance_usd >= self.llm_allowance_usd else "cap"
        renews = f"{event.resets_at:%Y-%m-%d}"
        if isinstance(event, UsageCapReached):
            kind = "cap"
            text = replies.CAP_REACHED.format(
                which=which,
                limit=event.allowance_usd,
                renews=renews,
                app_url=self.app_url,
            )
        else:
            kind = "warn"
            text = replies.ALLOWANCE_WARNING.format(
                share=100 * event.spent_usd / (event.allowance_usd or 1),
                which=which,
                spent=event.spent_usd,
                limit=event.allowance_usd,
                renews=renews,
            )
        log.info("messaging.usage.notice", user_id=str(event.user_id), kind=kind)
        await self._notify(
            event.user_id, f"usage:{kind}:{event.user_id}:{event.month}", text
        )

    async def handle_ready(self, event: AssistantReady) -> None:
        """Tell the user their assistant is ready: the approved template.

        Once per assistant: the provisioner also emits `assistant.ready` after a
        model change or a re-create, which the user need not hear about.
        """

        async def plan(
            conn: Connection, recipient: Recipient, channel: Channel
        ) -> Planned | None:
            state = await repository.conversations.conversation(conn, recipient.user_id)
            if state.ready_skipped_for == event.assistant_id:
                return None  # left out the first time; a later ready is no news either
            if (
                state.last_inbound_at is not None
                and state.last_inbound_at >= event.occurred_at
            ):
                # They are already talking to it: "it's ready" would only interrupt.
                log.info("messaging.ready.already_chatting", user_id=str(event.user_id))
                await repository.conversations.skip_ready_notice(
                    conn, recipient.user_id, event.assistant_id
                )
                return None
            return await channel.plan_ready(conn, recipient.user_id, _READY_TEXT)

        await self._send_once(event.user_id, f"ready:{event.assistant_id}", plan)

    async def handle_restarted(self, event: AssistantRestarted) -> None:
        """The assistant was killed for memory and restarted: one notice, to a
        user who wrote recently (their last message may have gone unanswered);
        nobody else lost anything."""

        async def plan(
            conn: Connection, recipient: Recipient, channel: Channel
        ) -> Planned | None:
            if not await repository.conversations.in_window(
                conn, recipient.user_id, hours=_RECENT_HOURS
            ):
                log.info("messaging.restarted.not_chatting", user_id=str(event.user_id))
                return None
            return Planned([replies.RESTARTED], "proactive")

        await self._send_once(event.user_id, f"restart:{event.event_id}", plan)

    async def _notify(self, user_id: UUID, key: str, text: str) -> None:
        async def plan(
            conn: Connection, recipient: Recipient, channel: Channel
        ) -> Planned:
            if recipient.subscription_status not in ("ACTIVE", "PAST_DUE"):
                return Planned([text], "proactive", error_code="INACTIVE")
            if await self.limits.proactive_limited(conn, recipient.user_id):
                return Planned([text], "proactive", error_code="RATE_LIMITED")
            return await channel.plan_notice(conn, recipient.user_id, text)

        await self._send_once(user_id, key, plan)

    def _reachable(self, addresses: list[Recipient]) -> Recipient | None:
        """The first of the user's addresses (best first) on a channel we serve."""
        return next(
            (
                r
                for r in addresses
                if r.channel in self.channels
                and self.channels[r.channel].serves(r.address)
            ),
            None,
        )

    async def _send_once(self, user_id: UUID, key: str, plan: _Plan) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            stored = await repository.outbound.replies_to(conn, key)
            found = bool(stored)
            fresh = False
            if found:  # on the channel they were stored for
                channel_name, address = stored[0]["channel"], stored[0]["phone_e164"]
            else:
                recipient = self._reachable(
                    await repository.conversations.addresses_of(conn, user_id)
                )
                if recipient is None:
                    log.info(
                        "messaging.proactive.no_address", user_id=str(user_id), key=key
                    )
                    return
                channel_name, address = recipient.channel, recipient.address
                planned = await plan(conn, recipient, self.channels[channel_name])
                if planned is None:
                    return
                stored, fresh = await outgoing.store(
                    conn, key, recipient.user_id, channel_name, address, planned
                )
        channel = self.channels.get(channel_name)
        if channel is None:
            log.error("messaging.proactive.channel_off", key=key, channel=channel_name)
            return
        if not found and not fresh:
            # Another handler stored them between our look and our insert: the
            # claim is its, and so is the sending.
            log.info("messaging.proactive.claimed_elsewhere", key=key)
            return
        if found and channel.in_flight(stored):
            raise SendUnconfirmed(
                f"{key} is being sent by another handler; checking again later",
                key=key,
            )
        await channel.deliver(stored, address, fresh=fresh)
